"""Reading, checking, converting and writing image files.

Every image simmm reads goes through :func:`read_image`, which decodes the whole file (so a truncated JPEG
fails here, naming the file, instead of deep inside a DataLoader worker) and raises
:class:`~simmm.errors.DataError` for missing, truncated or non-image files. PIL's
``LOAD_TRUNCATED_IMAGES`` is never switched on.

Tensors are ``float32`` in ``[0, 1]`` with shape ``(3, H, W)`` (one image) or ``(B, 3, H, W)`` (a batch);
normalisation with a backbone's mean/std is the model's job (:class:`simmm.backbones.Normalize`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_write
from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]
SizeLike = Union[int, Tuple[int, int]]

IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
"""File extensions treated as images (compared case-insensitively)."""

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "read_image",
    "verify_image",
    "image_size",
    "image_to_tensor",
    "tensor_to_image",
    "resize_short_center_crop",
    "load_image_tensor",
    "save_image",
    "save_grid",
    "verify_images",
]


def is_image_file(path: PathLike) -> bool:
    """True if ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive). Does not touch the file."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _decode(path: Path, mode: Optional[str]) -> Image.Image:
    """Open and fully decode ``path``; raises ``_Unreadable(reason)`` on any failure."""
    if not path.exists():
        raise _Unreadable("the file does not exist")
    if not path.is_file():
        raise _Unreadable("it is not a file")
    try:
        with Image.open(path) as img:
            img.load()  # full decode: a truncated file raises here ("image file is truncated ...")
            return img.convert(mode) if mode is not None and img.mode != mode else img.copy()
    except _READ_ERRORS as e:
        raise _Unreadable(_reason(e)) from e


class _Unreadable(Exception):
    pass


# what PIL raises for a file that is not a readable image (DecompressionBombError is not an OSError)
_READ_ERRORS = (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError)


def _reason(error: Exception) -> str:
    """A short reason for one of ``_READ_ERRORS``."""
    if isinstance(error, Image.DecompressionBombError):
        return f"decompression bomb check failed ({error})"
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image file PIL can identify"
    return str(error) or type(error).__name__


def image_size(path: PathLike, verify: bool = True) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
    """``((W, H), None)`` for a readable image, else ``(None, reason)``; with ``verify`` the file is decoded
    completely (finds truncated files), without it only the header is read."""
    try:
        with Image.open(path) as img:
            if verify:
                img.load()
            return img.size, None
    except _READ_ERRORS as e:
        return None, _reason(e)


def read_image(path: PathLike, mode: Optional[str] = "RGB") -> Image.Image:
    """Read and fully decode an image file.

    Args:
        path: image file.
        mode: PIL mode to convert to (``"RGB"`` by default; ``None`` keeps the file's mode).

    Returns:
        A loaded ``PIL.Image.Image`` (detached from the file).

    Raises:
        DataError: the file is missing, truncated, or not an image, naming the file and the reason.
    """
    p = Path(path)
    try:
        return _decode(p, mode)
    except _Unreadable as e:
        raise DataError(f"cannot read image {p}: {e}; expected a readable RGB image file") from e.__cause__


def verify_image(path: PathLike) -> Optional[str]:
    """Decode ``path`` completely; ``None`` if it is a readable image, else the reason (a short string)."""
    try:
        _decode(Path(path), None)
    except _Unreadable as e:
        return str(e)
    return None


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image → ``float32`` tensor ``(3, H, W)`` in ``[0, 1]`` (non-RGB modes are converted to RGB)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Tensor → PIL RGB (or L) image.

    Accepts ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)``; float tensors are taken as ``[0, 1]`` (clamped),
    ``uint8`` tensors as ``[0, 255]``.
    """
    t = tensor.detach().cpu()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(
            f"expected an image tensor of shape (3,H,W), (1,H,W) or (H,W), got {tuple(tensor.shape)}"
        )
    if t.dtype != torch.uint8:
        t = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    arr = t.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB")


def _hw(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_short_center_crop(
    img: Image.Image,
    size: SizeLike,
    resize: Optional[int] = None,
    interpolation: int = Image.BILINEAR,
) -> Image.Image:
    """Deterministic evaluation-style preprocessing: scale the short side, then crop the centre.

    Args:
        img: PIL image.
        size: output size, ``int`` (square) or ``(H, W)``.
        resize: short side after scaling; ``None`` scales the short side to ``max(size)`` (no extra margin, a
            no-op for an image that already has that short side, e.g. CODaN's 224×224 images at ``size=224``).
        interpolation: PIL resampling filter (bilinear by default, with PIL's antialiasing when shrinking).

    Returns:
        A PIL image of exactly ``size``.
    """
    out_h, out_w = _hw(size)
    short = int(resize) if resize is not None else max(out_h, out_w)
    if short < max(out_h, out_w):
        raise ValueError(f"resize ({short}) must be at least the crop size {max(out_h, out_w)}")
    w, h = img.size
    if w <= h:
        new_w, new_h = short, int(round(short * h / w))
    else:
        new_w, new_h = int(round(short * w / h)), short
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample=interpolation)
    left = int(round((new_w - out_w) / 2.0))
    top = int(round((new_h - out_h) / 2.0))
    return img.crop((left, top, left + out_w, top + out_h))


def load_image_tensor(
    path: PathLike, size: Optional[SizeLike] = None, resize: Optional[int] = None
) -> torch.Tensor:
    """Read ``path`` as RGB and return a ``float32 (3, H, W)`` tensor in ``[0, 1]``.

    With ``size`` the image goes through :func:`resize_short_center_crop` (``size``, ``resize``); without
    it the image keeps its own size. Raises :class:`DataError` for unreadable files.
    """
    img = read_image(path)
    if size is not None:
        img = resize_short_center_crop(img, size, resize)
    return image_to_tensor(img)


def save_image(tensor: torch.Tensor, path: PathLike) -> Path:
    """Write one image tensor (``(3,H,W)``, ``(1,H,W)`` or ``(H,W)``, float in ``[0,1]`` or uint8) as PNG.

    Parent folders are created. Returns the path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensor_to_image(tensor).save(p, format="PNG")
    return p


def _font():
    try:
        return ImageFont.load_default()
    except Exception:  # pragma: no cover - very old PIL
        return None


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> Tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def save_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    path: PathLike,
    labels: Optional[Sequence[str]] = None,
    row_labels: Optional[Sequence[str]] = None,
    pad: int = 2,
    background: Tuple[int, int, int] = (255, 255, 255),
) -> Path:
    """Write a PNG grid of images: one list of image tensors per row.

    Args:
        rows: ``rows[i][j]`` is the image in row ``i``, column ``j`` (see :func:`save_image` for accepted
            tensors). Rows may have different lengths; images may differ in size (each cell is as large as the
            largest image, smaller images sit in its top-left corner).
        path: output PNG (parent folders are created).
        labels: optional column titles drawn above the first row.
        row_labels: optional row titles drawn left of each row.
        pad: pixels between cells.
        background: fill colour.

    Returns:
        The path written.
    """
    rows = [list(r) for r in rows]
    if not rows or not any(rows):
        raise ValueError("save_grid needs at least one image")
    pics = [[tensor_to_image(t).convert("RGB") for t in row] for row in rows]
    cell_w = max(im.size[0] for row in pics for im in row)
    cell_h = max(im.size[1] for row in pics for im in row)
    ncols = max(len(row) for row in pics)

    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_h = 0
    if labels:
        title_h = max(_text_size(probe, str(s), font)[1] for s in labels) + 2 * pad + 2
    label_w = 0
    if row_labels:
        label_w = max(_text_size(probe, str(s), font)[0] for s in row_labels) + 2 * pad + 2

    width = label_w + ncols * cell_w + (ncols + 1) * pad
    height = title_h + len(pics) * cell_h + (len(pics) + 1) * pad
    canvas = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    if labels:
        for j, text in enumerate(labels[:ncols]):
            x = label_w + pad + j * (cell_w + pad)
            draw.text((x + 1, pad), str(text), fill=(0, 0, 0), font=font)
    for i, row in enumerate(pics):
        y = title_h + pad + i * (cell_h + pad)
        if row_labels and i < len(row_labels):
            th = _text_size(draw, str(row_labels[i]), font)[1]
            draw.text((pad, y + max(0, (cell_h - th) // 2)), str(row_labels[i]), fill=(0, 0, 0), font=font)
        for j, im in enumerate(row):
            x = label_w + pad + j * (cell_w + pad)
            canvas.paste(im, (x, y))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(p, format="PNG")
    return p


def verify_images(paths: Sequence[PathLike], cache_dir: Optional[PathLike] = None,
                  workers: int = 4) -> list[Tuple[Path, str]]:
    """Decode every file once before training starts; return ``(path, reason)`` for each unreadable one.

    Files already verified with the same size and modification time are skipped when ``cache_dir`` is
    given (a JSON list of good files), so a large dataset is decoded in full only the first time.
    Decoding runs in a thread pool (PIL releases the GIL while decoding).
    """
    import hashlib
    import json
    from concurrent.futures import ThreadPoolExecutor

    paths = [Path(p) for p in paths]
    stamps = {}
    for p in paths:
        try:
            st = p.stat()
            stamps[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamps[str(p)] = "missing"
    cache_file = None
    known: dict = {}
    if cache_dir is not None:
        key = hashlib.sha1("\n".join(sorted(stamps)).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / "verified" / f"{key}.json"
        if cache_file.exists():
            try:
                known = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                known = {}
    todo = [p for p in paths if known.get(str(p)) != stamps[str(p)]]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(verify_image, todo))
    bad = [(p, r) for p, r in zip(todo, reasons) if r is not None]
    if cache_file is not None:
        bad_set = {str(p) for p, _ in bad}
        good = {**{k: v for k, v in known.items() if k in stamps},
                **{str(p): stamps[str(p)] for p in todo if str(p) not in bad_set}}
        atomic_write(cache_file, lambda handle: handle.write(json.dumps(good).encode()))
    return bad
