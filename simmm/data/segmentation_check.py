"""The data check of a segmentation dataset tree (the work behind ``simmm data check``).

:func:`scan_groups` opens every image of the given :class:`~simmm.data.tree.TreeGroup` folders, reads every
label, and counts per group the images present, images whose label is missing, labels of the wrong size, label
values outside the Cityscapes table and unreadable files; it never raises for data and returns a
:class:`~simmm.data.check.DataReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .check import DataReport, capped, listing
from .images import _Unreadable, image_size, verify_image
from .labels import _decode_label, _invalid_values
from .tree import PathLike, TreeGroup, find_images, find_label
from .synthetic import dataset_root

__all__ = ["GroupScan", "scan_groups"]


@dataclass
class GroupScan:
    """What :func:`scan_groups` found in one group (split / condition folder)."""

    name: str
    path: str  # image folder
    exists: bool
    labels_required: bool = False
    label_path: Optional[str] = None  # label folder (None: the group has no labels)
    label_dir_exists: bool = False
    images: int = 0  # images found (readable or not)
    labelled: int = 0  # images whose label exists
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # (image or label file, reason)
    missing_labels: List[Tuple[str, str]] = field(default_factory=list)  # (image, expected label path)
    wrong_size: List[str] = field(default_factory=list)  # messages naming label, image and both sizes
    bad_values: List[Tuple[str, Dict[int, int]]] = field(default_factory=list)  # (label, {value: pixels})
    orphan_labels: List[str] = field(default_factory=list)  # labels without an image (warning)
    references: int = 0
    references_checked: bool = False
    missing_references: List[Tuple[str, str]] = field(default_factory=list)  # (image, expected reference)

    @property
    def ok(self) -> bool:
        return (self.exists and self.images > 0 and not self.unreadable and not self.wrong_size
                and not self.bad_values and not (self.labels_required and self.missing_labels)
                and not self.missing_references)

    def report_to(self, report: DataReport, layout: str, max_listed: int) -> None:
        """Add this group's lines, problems and warnings to ``report``.

        Problems: a missing image folder, a folder without images, unreadable images or labels, labels of the
        wrong size, label values outside the Cityscapes table, missing labels where labels are required,
        missing reference images (when checked). Warnings: labels without an image, missing labels where
        they are optional.
        """
        if not self.exists:
            report.lines.append(f"MISSING  {self.name}: folder {self.path}")
            report.problems.append(f"missing image folder {self.path} ({self.name}); expected the tree {layout}")
            return
        status = "OK     " if self.ok else "ERROR  "
        lab = ""
        if self.label_path is not None:
            lab = f", {self.labelled} labelled, {len(self.missing_labels)} without label"
        ref = f", {self.references} references" if self.references_checked else ""
        report.lines.append(f"{status}  {self.name}: {self.images} images{lab}{ref} ({self.path})")
        if self.images == 0:
            report.lines.append(f"ERROR    no images found in {self.path}")
            report.problems.append(f"no images in {self.path} ({self.name}); expected the tree {layout}")
        self._report_missing_labels(report, layout, max_listed)
        unreadable = [f"unreadable file {path}: {reason}" for path, reason in self.unreadable]
        values = [(path, ", ".join(f"{v} ({n} px)" for v, n in bad.items())) for path, bad in self.bad_values]
        errors = capped(unreadable, max_listed, "unreadable files")
        errors += capped(self.wrong_size, max_listed, "labels of the wrong size")
        errors += capped([f"label {path}: value(s) {v} not in the table" for path, v in values], max_listed,
                         "labels with bad values")
        report.lines += [f"ERROR    {line}" for line in errors]
        report.problems += capped(unreadable, max_listed, f"unreadable files in {self.name}")
        report.problems += capped(self.wrong_size, max_listed, "labels of the wrong size")
        report.problems += capped([f"label {path} contains value(s) {v} not in the Cityscapes table"
                                   for path, v in values],
                                  max_listed, f"labels with values outside the table in {self.name}")
        if self.missing_references:
            report.lines.append("MISSING  reference images: "
                                + listing([r for _, r in self.missing_references], max_listed))
            report.problems += capped([f"missing reference image {ref} for image {img}"
                                       for img, ref in self.missing_references],
                                      max_listed, "missing references")
        if self.orphan_labels:
            report.lines.append(f"WARN     labels without image: {listing(self.orphan_labels, max_listed)}")
            report.warnings.append(f"label files without an image (ignored): "
                                   f"{listing(self.orphan_labels, max_listed)}")
        if self.missing_labels and not self.labels_required and self.label_dir_exists:
            report.warnings.append(f"{len(self.missing_labels)} images of {self.name} have no label")

    def _report_missing_labels(self, report: DataReport, layout: str, max_listed: int) -> None:
        if not self.missing_labels or not (self.labels_required or self.label_dir_exists):
            return
        tag = "MISSING" if self.labels_required else "WARN   "
        if not self.label_dir_exists:
            report.lines.append(f"{tag}  label folder {self.label_path}")
        else:
            missing = [lab for _, lab in self.missing_labels]
            report.lines.append(f"{tag}  labels: " + listing(missing, max_listed))
        if not self.labels_required:
            return  # a warning (see report_to)
        if not self.label_dir_exists:
            report.problems.append(f"missing label folder {self.label_path} ({self.name}: "
                                   f"{len(self.missing_labels)} images without label); "
                                   f"expected the tree {layout}")
        else:
            missing = [f"missing label {lab} for image {img}" for img, lab in self.missing_labels]
            report.problems += capped(missing, max_listed, f"images without label in {self.path}")


def scan_groups(
    dataset: str,
    root: PathLike,
    layout: str,
    groups: Sequence[TreeGroup],
    verify: bool = True,
    references: bool = False,
    samples: Optional[Sequence[Path]] = None,
    check_labels: bool = True,
    max_listed: int = 10,
) -> DataReport:
    """Check ``groups`` without raising: every image is opened (decoded with ``verify``), every label read.

    Args:
        dataset: name shown in the report.
        root: dataset root (a missing root gives a report with one problem).
        layout: the expected tree as text.
        groups: the folders to check.
        verify: decode images completely (finds truncated files).
        references: also look for each image's reference image (groups with a reference folder).
        samples: check only these image files (a dataset's own list) instead of searching the groups.
        check_labels: read labels (False: count images only).
    """
    root_p = dataset_root(root)
    report = DataReport.for_root(dataset, root_p, layout)
    if not report.ok:
        return report
    if not groups:
        report.problems.append(f"no folders were checked under {root_p}")
    by_group: Dict[int, List[Path]] = {}
    if samples is not None:
        for image in samples:
            for i, g in enumerate(groups):
                try:
                    image.relative_to(g.image_dir)
                except ValueError:
                    continue
                by_group.setdefault(i, []).append(image)
                break
    for i, g in enumerate(groups):
        # optional labels whose folder is absent (Dark Zurich train, ACDC test) are simply not reported
        has_labels = (g.label_dir is not None and check_labels
                      and (g.labels_required or g.label_dir.is_dir()))
        scan = GroupScan(name=g.name, path=str(g.image_dir), exists=g.image_dir.is_dir(),
                         labels_required=g.labels_required and check_labels,
                         label_path=str(g.label_dir) if has_labels else None,
                         label_dir_exists=bool(has_labels and g.label_dir.is_dir()),
                         references_checked=references and g.reference_dir is not None)
        if not scan.exists:
            scan.report_to(report, layout, max_listed)
            continue
        images = by_group.get(i, []) if samples is not None else find_images(g.image_dir, g.image_suffix)
        scan.images = len(images)
        seen_labels = set()
        for img in images:
            size, reason = image_size(img, verify)
            if reason is not None:
                scan.unreadable.append((str(img), reason))
            if scan.references_checked:
                ref = g.reference_path(img)
                if ref is not None and ref.is_file():
                    scan.references += 1
                    if verify:
                        rreason = verify_image(ref)
                        if rreason is not None:
                            scan.unreadable.append((str(ref), rreason))
                else:
                    scan.missing_references.append((str(img), str(ref)))
            if not has_labels:
                continue
            label, kind, expected = find_label(g, img)
            if label is None:
                scan.missing_labels.append((str(img), str(expected)))
                continue
            scan.labelled += 1
            seen_labels.add(label)
            try:
                arr = _decode_label(label)
            except _Unreadable as e:
                scan.unreadable.append((str(label), str(e)))
                continue
            if size is not None and arr.shape != (size[1], size[0]):
                scan.wrong_size.append(
                    f"label {label} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image {img} is "
                    f"{size[0]}x{size[1]}")
            bad = _invalid_values(arr, kind)
            if bad:
                scan.bad_values.append((str(label), bad))
        if has_labels and scan.label_dir_exists and samples is None and g.label_suffixes:
            main_suffix = g.label_suffixes[0][0]
            for lab in find_images(g.label_dir, main_suffix):
                if lab in seen_labels:
                    continue
                rel = lab.parent.relative_to(g.label_dir)
                prefix = lab.name[: -len(main_suffix)]
                if not (g.image_dir / rel / (prefix + g.image_suffix)).is_file():
                    scan.orphan_labels.append(str(lab))
        scan.report_to(report, layout, max_listed)
    return report
