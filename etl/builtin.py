"""Built-in transforms: normalize, resize, crop, center_crop, clip, mip.

Each takes a batch ``(n, *sample_shape)`` and returns a batch; samples are
images ``(h, w)`` / ``(h, w, c)`` or volumes ``(d, h, w)``.  Spatial axes are
the two after the sample axis (height, width) except for ``mip``, which
projects a volume's depth.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from etl.registry import TransformError, transform

MAX_RESIZE_SIDE = 16384  # pixels per side of a resized sample
MAX_RESIZE_BATCH_BYTES = 2 << 30  # float32 output of one batch: a typo (width=100000) must not eat the RAM


def _channel_axes(batch: np.ndarray, per_channel: bool) -> tuple[int, ...]:
    """Axes reduced for statistics: all but the last (channels) when per channel on (h, w, c) samples."""
    if per_channel and batch.ndim >= 4:
        return tuple(range(batch.ndim - 1))
    return tuple(range(batch.ndim))


def _fit_normalize(batches: Iterable[np.ndarray], params: dict[str, Any]) -> dict[str, Any]:
    """Mean and standard deviation over the whole parent, streamed (sums in float64)."""
    if params["mean"] is not None and params["std"] is not None:
        return {}
    count, total, squares = 0, 0.0, 0.0
    for batch in batches:
        axes = _channel_axes(batch, params["per_channel"])
        values = batch.astype(np.float64)
        count += int(np.prod([batch.shape[a] for a in axes]))
        total = total + values.sum(axis=axes)
        squares = squares + (values**2).sum(axis=axes)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    fitted = {}
    if params["mean"] is None:
        fitted["mean"] = np.atleast_1d(mean).round(8).tolist()
    if params["std"] is None:
        fitted["std"] = np.atleast_1d(std).round(8).tolist()
    return fitted


@transform("normalize", fit=_fit_normalize)
def normalize(
    batch: np.ndarray,
    *,
    mean: float | list[float] | None = None,
    std: float | list[float] | None = None,
    per_channel: bool = True,
) -> np.ndarray:
    """(x - mean) / std; mean and std default to the dataset's own (per channel on (h, w, c) samples)."""
    if mean is None or std is None:
        raise TransformError("normalize: mean and std are computed by its fit pass; call it through derive")
    mean_a = np.asarray(mean, dtype=np.float32)
    std_a = np.asarray(std, dtype=np.float32)
    if mean_a.size not in (1, batch.shape[-1]) or std_a.size not in (1, batch.shape[-1]):
        raise TransformError(
            f"normalize: {mean_a.size} mean / {std_a.size} std values for samples with {batch.shape[-1]} "
            "channels: give one value, or one per channel"
        )
    if np.any(std_a <= 0):
        raise TransformError("normalize: std must be positive (is the data constant?)")
    return ((batch.astype(np.float32) - mean_a.reshape(-1)) / std_a.reshape(-1)).astype(np.float32)


def _spatial(batch: np.ndarray, name: str) -> tuple[int, int]:
    if batch.ndim < 3:
        raise TransformError(f"{name} needs images or volumes; samples here are shaped {batch.shape[1:]}")
    return batch.shape[1], batch.shape[2]


@transform("resize")
def resize(batch: np.ndarray, *, height: int, width: int, order: int = 1) -> np.ndarray:
    """Resize height and width by spline interpolation (order 1 = bilinear); other axes are kept."""
    from scipy import ndimage

    h, w = _spatial(batch, "resize")
    if height < 1 or width < 1 or not 0 <= order <= 5:
        raise TransformError("resize: height and width must be >= 1 and order between 0 and 5")
    if max(height, width) > MAX_RESIZE_SIDE:
        raise TransformError(f"resize: {height}x{width} is larger than {MAX_RESIZE_SIDE} pixels per side")
    per_sample = height * width * int(np.prod(batch.shape[3:], dtype=np.int64)) * 4
    if per_sample * len(batch) > MAX_RESIZE_BATCH_BYTES:
        raise TransformError(f"resize: {height}x{width} makes {per_sample * len(batch) / 2**30:.1f} GiB per batch of "
                             f"{len(batch)} samples, more than {MAX_RESIZE_BATCH_BYTES / 2**30:.0f} GiB; resize less")
    factors = [1.0, height / h, width / w] + [1.0] * (batch.ndim - 3)
    out = ndimage.zoom(batch.astype(np.float32), factors, order=order, grid_mode=True, mode="nearest")
    return out[:, :height, :width]


@transform("crop")
def crop(batch: np.ndarray, *, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Cut the window starting at (top, left) of the given size."""
    h, w = _spatial(batch, "crop")
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise TransformError(
            f"crop: window top={top}, left={left}, {height}x{width} does not fit samples of {h}x{w}"
        )
    return batch[:, top : top + height, left : left + width]


@transform("center_crop")
def center_crop(batch: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Cut a centred window of the given size."""
    h, w = _spatial(batch, "center_crop")
    if not (0 < height <= h and 0 < width <= w):
        raise TransformError(f"center_crop: {height}x{width} does not fit samples of {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return batch[:, top : top + height, left : left + width]


@transform("clip")
def clip(batch: np.ndarray, *, low: float, high: float, rescale: bool = False) -> np.ndarray:
    """Clip intensities to [low, high] (a CT window); ``rescale`` maps that range to [0, 1]."""
    if not low < high:
        raise TransformError(f"clip: low ({low}) must be below high ({high})")
    out = np.clip(batch.astype(np.float32), low, high)
    return (out - low) / (high - low) if rescale else out


@transform("mip")
def mip(batch: np.ndarray, *, slab: int, stride: int | None = None, channels_last: bool = True) -> np.ndarray:
    """Maximum-intensity projection of volumes (d, h, w) in slabs of ``slab`` slices along depth.

    Slabs start every ``stride`` slices (default: ``slab``, no overlap).  The
    result is one projection per slab, as channels (h, w, n) for a 2D CNN, or
    (n, h, w) with ``channels_last = false``.
    """
    if batch.ndim != 4:
        raise TransformError(
            f"mip needs volumes shaped (depth, height, width); samples are {batch.shape[1:]}"
        )
    depth = batch.shape[1]
    stride = stride or slab
    if not 0 < slab <= depth or stride < 1:
        raise TransformError(f"mip: slab must be between 1 and the depth {depth}, stride >= 1")
    starts = range(0, depth - slab + 1, stride)
    out = np.stack([batch[:, s : s + slab].max(axis=1) for s in starts], axis=1)
    return np.moveaxis(out, 1, -1) if channels_last else out
