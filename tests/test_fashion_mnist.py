"""Fashion-MNIST's idx files (simmm.data.fashion_mnist) and the classification task's ``fashion_mnist`` kind, on tiny
idx files written here byte by byte as the release (and Debian's gzipped copy) has them."""
import gzip
import struct

import numpy as np
import pytest
import torch

from simmm.data.fashion_mnist import CLASSES, FILES, FashionMNISTDataset, load_fashion_mnist, read_idx
from simmm.errors import DataError, RecipeError
from simmm.recipe import load_recipe
from simmm.task import get_task

PER_CLASS = {"train": 6, "test": 3}


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The idx encoding, written independently of the reader: 0x00 0x00, type code, ndim, big-endian uint32 dims,
    big-endian values."""
    dtype = {0x08: ">u1", 0x0C: ">i4"}[type_code]
    return (struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(dtype).tobytes())


def pixel(label: int, k: int) -> int:
    """Image k of class ``label`` is filled with this value: each image says which label it carries."""
    return 20 * label + k


@pytest.fixture
def fmnist_root(tmp_path):
    """The four files in Debian's form (gzipped), classes interleaved as in the release; 6 / 3 images per class."""
    for split, (images_name, labels_name) in FILES.items():
        n = PER_CLASS[split]
        labels = np.array([c for k in range(n) for c in range(10)], dtype=np.uint8)
        images = np.stack([np.full((28, 28), pixel(c, k), dtype=np.uint8) for k in range(n) for c in range(10)])
        images[:, 0, 1] = 255  # one bright pixel: not a constant image
        (tmp_path / f"{images_name}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (tmp_path / f"{labels_name}.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return tmp_path


def test_read_idx_reads_the_release_format_gzipped_or_not(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "a").write_bytes(idx_bytes(images))
    for name in ("a.gz", "a"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4) and np.array_equal(got, images)
    assert (tmp_path / "a").read_bytes()[:8] == bytes.fromhex("00000803" "00000002")  # magic 2051, dim 0 big-endian
    wide = np.array([258, -1, 70000], dtype=np.int64)  # int32 values: big-endian on disk, native once read
    (tmp_path / "w").write_bytes(idx_bytes(wide, 0x0C))
    got = read_idx(tmp_path / "w")
    assert got.tolist() == [258, -1, 70000] and got.dtype.isnative  # torch.from_numpy refuses big-endian arrays


def test_read_idx_names_a_wrong_magic_and_a_wrong_size(tmp_path):
    labels = np.arange(5, dtype=np.uint8)
    little = struct.pack("<I", 0x0801) + struct.pack("<I", 5) + labels.tobytes()  # written little-endian
    (tmp_path / "little").write_bytes(little)
    with pytest.raises(DataError, match=r"little: not an idx file \(magic 01080000\); expected two zero bytes"):
        read_idx(tmp_path / "little")
    (tmp_path / "short").write_bytes(idx_bytes(labels)[:-1])
    with pytest.raises(DataError, match=r"short: idx dimensions \(5,\) need 5 bytes of data, the file has 4"):
        read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(idx_bytes(labels) + b"\x00")  # one byte more than the dimensions say
    with pytest.raises(DataError, match=r"long: idx dimensions \(5,\) need 5 bytes of data, the file has 6"):
        read_idx(tmp_path / "long")
    (tmp_path / "plain.gz").write_bytes(idx_bytes(labels))  # named .gz, not gzipped
    with pytest.raises(DataError, match=r"cannot read idx file .*plain\.gz"):
        read_idx(tmp_path / "plain.gz")


def test_missing_folder_and_missing_file_are_named(tmp_path, fmnist_root):
    with pytest.raises(DataError, match=r"Fashion-MNIST folder .*nowhere does not exist; .*apt-get install "
                                        r"dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")
    (fmnist_root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\.gz \(or t10k-labels-idx1-ubyte\)"):
        load_fashion_mnist(fmnist_root, "test")


def test_labels_that_do_not_fit_the_images_are_named(fmnist_root):
    (fmnist_root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: expected \(30,\) labels"):
        load_fashion_mnist(fmnist_root, "test")
    (fmnist_root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(30, 10, np.uint8))))
    with pytest.raises(DataError, match=r"label 10 out of range; expected 0–9"):
        load_fashion_mnist(fmnist_root, "test")


def test_whole_split_and_class_balanced_seeded_subsets(fmnist_root):
    images, labels = load_fashion_mnist(fmnist_root, "train")
    assert images.shape == (60, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert labels[:10].tolist() == list(range(10))  # file order
    sub, sub_labels = load_fashion_mnist(fmnist_root, "train", per_class=2, seed=0)
    assert sub.shape == (20, 28, 28) and torch.bincount(sub_labels).tolist() == [2] * 10
    for image, label in zip(sub, sub_labels):  # each image still carries its own label
        assert int(image[5, 5]) // 20 == int(label)
    again = load_fashion_mnist(fmnist_root, "train", per_class=2, seed=0)[0]
    assert torch.equal(sub, again)
    others = [load_fashion_mnist(fmnist_root, "train", per_class=2, seed=s)[0] for s in (1, 2, 3)]
    assert any(not torch.equal(sub, o) for o in others)
    with pytest.raises(DataError, match=r"class 0 \(T-shirt/top\) has 3 images, fewer than per_class=4"):
        load_fashion_mnist(fmnist_root, "test", per_class=4)


def test_dataset_items_are_three_equal_channels_in_0_1_at_the_size_asked(fmnist_root):
    images, labels = load_fashion_mnist(fmnist_root, "test")
    item, label = FashionMNISTDataset(images, labels, size=28)[13]
    assert item.shape == (3, 28, 28) and label == 3
    assert torch.equal(item[0], images[13].float() / 255) and torch.equal(item[0], item[2])
    big, _ = FashionMNISTDataset(images, labels, size=40)[13]
    assert big.shape == (3, 40, 40) and torch.equal(big[0], big[1]) and 0 <= float(big.min()) <= float(big.max()) <= 1
    assert float(big[0, 20, 20]) == pytest.approx(pixel(3, 1) / 255)  # the flat part keeps its value
    assert float(big[0, 0, :4].max()) > 0.5  # the bright pixel is kept, smoothed


def smoke(root, *extra):
    return load_recipe("cls_smoke", ["data.kind=fashion_mnist", f"data.root={root}", "data.eval_splits={}",
                                     "data.image_size=32", "data.resize=40", "data.night_sim.presets=[street]",
                                     "data.night_sim.mixed=false", *extra])


def test_classification_task_reads_fashion_mnist(fmnist_root, tmp_path):
    recipe = smoke(fmnist_root, "data.fashion_mnist.per_class_train=4", "data.fashion_mnist.per_class_test=2",
                   f"data.cache_dir={tmp_path / 'cache'}")
    task = get_task(recipe.task)(recipe)
    assert task.classes == list(CLASSES) and task.num_classes == 10
    train = task.train_dataset()
    assert len(train) == 40 and train[0]["image"].shape == (3, 40, 40)
    sets = {s.name: s.dataset for s in task.eval_sets()}
    assert list(sets) == ["day_test", "night_street"] and len(sets["day_test"]) == 20
    assert sets["day_test"][0]["image"].shape == (3, 32, 32)
    assert sorted(int(sets["night_street"][i]["target"]) for i in range(20)) == sorted([c for c in range(10)] * 2)
    report = task.check_data()
    assert report.ok and "train: 40 images of (28, 28) px (4 per class)" in "\n".join(report.lines)


def test_fashion_mnist_recipe_errors(fmnist_root, tmp_path):
    with pytest.raises(RecipeError, match=r"data\.classes: 2 names for Fashion-MNIST's 10 classes"):
        smoke(fmnist_root, "data.classes=[a,b]")
    with pytest.raises(RecipeError, match=r"data\.fashion_mnist: per_class_train/per_class_test must be >= 0"):
        smoke(fmnist_root, "data.fashion_mnist.per_class_test=-1")
    names = [f"c{i}" for i in range(10)]
    assert get_task("classification")(smoke(fmnist_root, f"data.classes=[{','.join(names)}]")).classes == names
    report = get_task("classification")(smoke(tmp_path / "missing")).check_data()
    assert not report.ok and "missing does not exist" in report.problems[0]
