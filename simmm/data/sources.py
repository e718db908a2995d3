"""Where each dataset comes from: its download page and what to unpack (the expected trees are in each
loader's module and in METHOD.md §6).

``simmm data check`` prints this for every dataset whose root is missing; the recipes' headers say the same.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Tuple

from simmm.data.synthetic import SYNTHETIC, dataset_root


@dataclass(frozen=True)
class DatasetSource:
    title: str
    url: str
    unpack: str

    def describe(self, root: str) -> str:
        return (f"{self.title} is not at {root}: download it from {self.url} ({self.unpack}) and give the folder "
                "that holds the tree above as the root")


SOURCES = {
    "codan": DatasetSource("CODaN", "https://github.com/Attila94/CODaN",
                           "the data archives its README links, unpacked"),
    "cityscapes": DatasetSource("Cityscapes", "https://www.cityscapes-dataset.com/downloads/",
                                "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, free registration"),
    "darkzurich": DatasetSource("Dark Zurich", "https://www.trace.ethz.ch/publications/2019/GCMA_UIoU/",
                                "Dark_Zurich_train_anon.zip, Dark_Zurich_val_anon.zip and "
                                "Dark_Zurich_test_anon_withoutGt.zip, unpacked into one folder"),
    "nighttime_driving": DatasetSource("Nighttime Driving", "http://people.ee.ethz.ch/~daid/NightDriving/",
                                       "NighttimeDrivingTest.zip"),
    "acdc": DatasetSource("ACDC", "https://acdc.vision.ee.ethz.ch/",
                          "rgb_anon_trainvaltest.zip and gt_trainval.zip, registration"),
    "arid": DatasetSource("ARID", "https://xuyu0010.github.io/arid.html",
                          "the videos and the split lists (list_cvt/) of its release, from the links on that page"),
    "retrieval-SfM-120k": DatasetSource("retrieval-SfM-120k",
                                        "http://cmp.felk.cvut.cz/cnnimageretrieval/data/train/retrieval-SfM-120k/",
                                        "ims.tar.gz unpacked into ims/, and retrieval-SfM-120k.pkl"),
    "247tokyo1k": DatasetSource("Tokyo 24/7 (retrieval form)", "http://www.ok.ctrl.titech.ac.jp/~torii/project/247/",
                                "the query and database images as jpg/<name>.jpg, with gnd_247tokyo1k.pkl as the "
                                "SMM/CIConv place-recognition code distributes it"),
}


def dataset_roots(config) -> Iterator[Tuple[str, str]]:
    """``(dataset name, root)`` of every dataset a recipe's data section names: objects with a ``root`` and a
    ``dataset`` (segmentation and video sets) or ``kind`` (classification) field, found through dataclasses and
    dicts."""
    if isinstance(config, dict):
        for value in config.values():
            yield from dataset_roots(value)
    elif dataclasses.is_dataclass(config):
        name = getattr(config, "dataset", None) or getattr(config, "kind", None)
        if isinstance(getattr(config, "root", None), str) and isinstance(name, str):
            yield name, config.root
        for f in dataclasses.fields(config):
            yield from dataset_roots(getattr(config, f.name))


def missing_sources(config) -> list[str]:
    """One line per dataset of ``config`` whose root folder is missing, saying where to get it."""
    out = []
    for name, root in dict.fromkeys(dataset_roots(config)):
        if name in SOURCES and root and not root.startswith(SYNTHETIC) and not dataset_root(root).is_dir():
            out.append(SOURCES[name].describe(root))
    return out
