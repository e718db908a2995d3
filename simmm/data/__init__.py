"""Data utilities: image I/O, class-folder datasets (CODaN), the data-check report, the resumable sampler."""

from .check import DataReport
from .folder import (
    CODAN_CLASSES,
    CODAN_SPLITS,
    ImageFolderDataset,
    InMemoryImageDataset,
    SplitScan,
    folder_layout,
    scan_folder_dataset,
    scan_splits,
)
from .images import (
    IMAGE_EXTENSIONS,
    image_to_tensor,
    is_image_file,
    load_image_tensor,
    read_image,
    resize_short_center_crop,
    save_grid,
    save_image,
    tensor_to_image,
    verify_image,
)
from .sampler import ResumableBatchSampler, epoch_permutation

__all__ = [
    "DataReport",
    "CODAN_CLASSES",
    "CODAN_SPLITS",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "SplitScan",
    "folder_layout",
    "scan_folder_dataset",
    "scan_splits",
    "IMAGE_EXTENSIONS",
    "image_to_tensor",
    "is_image_file",
    "load_image_tensor",
    "read_image",
    "resize_short_center_crop",
    "save_grid",
    "save_image",
    "tensor_to_image",
    "verify_image",
    "ResumableBatchSampler",
    "epoch_permutation",
]
