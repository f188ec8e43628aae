"""Evaluation of a saved model from its predicted probabilities: no Keras, no Qt.

The trainer (the only place that loads Keras models) predicts class
probabilities on a split with the *saved* model file and hands the numpy
arrays to :func:`evaluate`; ensembles average such arrays.  Everything the
issue asks for is computed here from probabilities, never from thresholded
predictions: the AUC and the ROC and precision-recall curves rank the
probabilities themselves (scikit-learn), the Youden threshold is read off the
ROC curve, and the samples the model got wrong (and the surest right ones)
are kept with their ids for a gallery.

An evaluation is plain JSON (it is stored in ``runs.evaluation`` under the
name of its split, see ``docs/evaluation.md``); the per-sample probabilities
go to ``predictions-<split>.npz`` next to the model so ensembles need no
Keras.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EPSILON = 1e-7  # Keras' clip for cross-entropy of probabilities
CURVE_POINTS = 200  # ROC and PR curves are thinned to about this many points for storage
MAX_WRONG = 100  # misclassified samples kept for the gallery (surest mistakes first)
MAX_RIGHT = 24  # correctly classified samples kept (surest first)
SPLITS = ("validation", "test")

# Figures every evaluation has, in reading order: the headline of tables, repeats and reports.
HEADLINE = ("accuracy", "loss", "auc", "f1", "kappa", "precision", "recall", "specificity")


@dataclass
class Prediction:
    """A model's class probabilities on one split, with what is needed to score them."""

    split: str  # "validation" or "test"
    ids: np.ndarray  # sample ids (str)
    y: np.ndarray  # int64 true class indices
    probs: np.ndarray  # float (n, n_classes)
    indices: np.ndarray  # row of each sample in the dataset's arrays
    class_names: list[str]
    dataset: str  # name@version the indices refer to

    def save(self, path: Path) -> None:
        """Write atomically as ``.npz`` (the ensemble reads it back without Keras)."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp, split=self.split, ids=self.ids.astype(str), y=self.y, probs=self.probs.astype(np.float32),
            indices=self.indices, class_names=np.asarray(self.class_names, dtype=str), dataset=self.dataset,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Prediction:
        with np.load(path, allow_pickle=False) as data:
            return cls(str(data["split"]), data["ids"], data["y"].astype(np.int64), data["probs"],
                       data["indices"], [str(c) for c in data["class_names"]], str(data["dataset"]))


def predictions_path(run_dir: Path, split: str) -> Path:
    return run_dir / f"predictions-{split}.npz"


# -- scores ------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _thin(*arrays: np.ndarray, points: int = CURVE_POINTS) -> list[list[float]]:
    """Every k-th point of parallel arrays (first and last always kept), rounded for storage."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int)) if n else np.array([], int)
    return [[round(float(v), 6) if math.isfinite(v) else None for v in a[keep]] for a in arrays]


def cross_entropy(y: np.ndarray, probs: np.ndarray) -> float:
    p_true = np.clip(probs[np.arange(len(y)), y].astype(np.float64), EPSILON, 1.0 - EPSILON)
    return float(-np.log(p_true).mean())


def binary_figures(y: np.ndarray, p_positive: np.ndarray) -> dict[str, Any]:
    """ROC curve and AUC, precision-recall curve and average precision, Youden's J threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = np.asarray(y).astype(bool)
    p = np.asarray(p_positive, dtype=np.float64)
    if y.all() or not y.any():  # one class only: no curve is defined
        return {"auc": math.nan, "average_precision": math.nan, "roc": None, "pr": None, "youden": None}
    fpr, tpr, thresholds = roc_curve(y, p)
    j = tpr - fpr
    best = int(np.argmax(j))
    precision, recall, _ = precision_recall_curve(y, p)
    roc_fpr, roc_tpr, roc_thr = _thin(fpr, tpr, thresholds)
    pr_recall, pr_precision = _thin(recall, precision)
    return {
        "auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "roc": {"fpr": roc_fpr, "tpr": roc_tpr, "threshold": roc_thr},
        "pr": {"recall": pr_recall, "precision": pr_precision},
        "youden": {"threshold": float(min(thresholds[best], 1.0)), "j": float(j[best]),
                   "sensitivity": float(tpr[best]), "specificity": float(1 - fpr[best])},
    }


def _per_class(confusion: np.ndarray, y: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> list[dict]:
    """One-vs-rest figures of each class: precision, recall, specificity, F1, support, AUC."""
    from sklearn.metrics import roc_auc_score

    total = confusion.sum()
    rows = []
    for k, name in enumerate(names):
        tp = confusion[k, k]
        fn = confusion[k].sum() - tp
        fp = confusion[:, k].sum() - tp
        tn = total - tp - fn - fp
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        positives = y == k
        auc = math.nan
        if positives.any() and not positives.all():
            auc = float(roc_auc_score(positives, probs[:, k]))
        rows.append({
            "class": str(name), "support": int(tp + fn), "precision": precision, "recall": recall,
            "specificity": _ratio(tn, tn + fp), "f1": _ratio(2 * precision * recall, precision + recall)
            if math.isfinite(precision) and math.isfinite(recall) else math.nan, "auc": auc,
        })
    return rows


def _samples(ids: np.ndarray, indices: np.ndarray, y: np.ndarray, probs: np.ndarray, predicted: np.ndarray,
             wrong: bool, limit: int) -> list[dict[str, Any]]:
    """The gallery: misclassified (or correct) samples, the surest first."""
    confidence = probs[np.arange(len(y)), predicted]
    chosen = np.flatnonzero((predicted != y) if wrong else (predicted == y))
    chosen = chosen[np.argsort(-confidence[chosen], kind="stable")][:limit]
    return [
        {"id": str(ids[i]), "index": int(indices[i]), "true": int(y[i]), "predicted": int(predicted[i]),
         "p_predicted": round(float(confidence[i]), 6), "p_true": round(float(probs[i, y[i]]), 6)}
        for i in chosen
    ]


def evaluate(prediction: Prediction, *, max_wrong: int = MAX_WRONG, max_right: int = MAX_RIGHT) -> dict[str, Any]:
    """Every figure of one split, JSON-ready.

    Binary tasks: precision, recall (sensitivity), specificity and F1 are those
    of class 1 (the second class name) at the arg-max decision; ``auc``, the
    ROC and PR curves and the Youden threshold come from the probabilities of
    class 1.  Multi-class: macro averages of the per-class (one-vs-rest)
    figures, and ``auc`` is the macro one-vs-rest AUC over the classes present.
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    y, probs, names = np.asarray(prediction.y, dtype=np.int64), np.asarray(prediction.probs), prediction.class_names
    n_classes = len(names)
    if probs.ndim != 2 or probs.shape != (len(y), n_classes):
        raise ValueError(f"probabilities shaped {probs.shape}, expected ({len(y)}, {n_classes})")
    predicted = probs.argmax(axis=1)
    labels = list(range(n_classes))
    confusion = confusion_matrix(y, predicted, labels=labels)
    per_class = _per_class(confusion, y, probs, names)
    result: dict[str, Any] = {
        "split": prediction.split,
        "n": len(y),
        "accuracy": float((predicted == y).mean()) if len(y) else math.nan,
        "loss": cross_entropy(y, probs) if len(y) else math.nan,
        "kappa": float(cohen_kappa_score(y, predicted, labels=labels)) if len(y) else math.nan,
    }
    if n_classes == 2:
        positive = per_class[1]
        result.update({k: positive[k] for k in ("precision", "recall", "specificity", "f1")})
        result["sensitivity"] = positive["recall"]
        result.update(binary_figures(y == 1, probs[:, 1]))
    else:
        for key in ("precision", "recall", "specificity", "f1", "auc"):
            values = [row[key] for row in per_class if math.isfinite(row[key])]
            result[key] = float(np.mean(values)) if values else math.nan
    result["classes"] = list(names)
    result["confusion"] = confusion.tolist()
    result["per_class"] = per_class
    result["wrong"] = _samples(prediction.ids, prediction.indices, y, probs, predicted, True, max_wrong)
    result["right"] = _samples(prediction.ids, prediction.indices, y, probs, predicted, False, max_right)
    result["n_wrong"] = int((predicted != y).sum())
    return _finite(result)


def headline(evaluation: dict[str, Any] | None) -> dict[str, float | None]:
    """The headline figures of one split's evaluation (None where undefined)."""
    evaluation = evaluation or {}
    return {key: evaluation.get(key) for key in HEADLINE}


def average(predictions: Sequence[Prediction]) -> Prediction:
    """The mean of several models' probabilities on the same samples (an ensemble's prediction).

    The samples are matched by id; every member must have predicted the same
    set of samples (same dataset, same split seed), else this refuses.
    """
    first = predictions[0]
    order = np.argsort(first.ids, kind="stable")
    total = np.zeros(first.probs.shape, dtype=np.float64)
    for member in predictions:
        if member.class_names != first.class_names:
            raise ValueError("the models were trained on different classes")
        member_order = np.argsort(member.ids, kind="stable")
        if len(member.ids) != len(first.ids) or not (member.ids[member_order] == first.ids[order]).all():
            raise ValueError(f"the models' {first.split} splits hold different samples")
        aligned = np.empty_like(member.probs, dtype=np.float64)
        aligned[order] = member.probs[member_order]
        total += aligned
    return Prediction(first.split, first.ids, first.y, total / len(predictions), first.indices,
                      list(first.class_names), first.dataset)


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (ddof=1) of the defined values, and how many there were."""
    numbers = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not numbers:
        return None, None, 0
    std = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
    return float(np.mean(numbers)), std, len(numbers)


# -- pictures of samples ----------------------------------------------------------------


def sample_image(sample: np.ndarray) -> np.ndarray:
    """A displayable uint8 picture of one sample: (H, W) grey or (H, W, 3) colour.

    Images show as they are; 3-D volumes as their three maximum-intensity
    projections side by side; flat vectors as a square (or a strip).
    Values are stretched to 0-255 per sample.
    """
    x = np.asarray(sample, dtype=np.float64)
    volume = x.ndim == 4 or (x.ndim == 3 and x.shape[-1] not in (1, 3, 4))
    if x.ndim == 4:  # (D, H, W, C): average the channels
        x = x.mean(axis=-1)
    if volume:  # (D, H, W): three maximum-intensity projections, side by side
        views = [x.max(axis=0), x.max(axis=1), x.max(axis=2)]
        height = max(v.shape[0] for v in views)
        padded = [np.pad(v, ((0, height - v.shape[0]), (0, 1)), constant_values=np.nan) for v in views]
        x = np.concatenate(padded, axis=1)[:, :-1]
    elif x.ndim == 3:  # (H, W, C) image
        x = x[..., 0] if x.shape[-1] == 1 else x[..., :3]
    elif x.ndim == 1:
        side = math.isqrt(len(x))
        x = x.reshape(side, side) if side * side == len(x) else x.reshape(1, -1)
    elif x.ndim > 4:
        x = x.reshape(-1, x.shape[-1])
    finite = x[np.isfinite(x)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(x, nan=low) - low) / (high - low or 1.0)
    return (scaled * 255).round().clip(0, 255).astype(np.uint8)


def png(image: np.ndarray, size: int = 64) -> bytes:
    """A PNG of a uint8 picture, scaled up (nearest neighbour) so its longer side is about ``size``."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = max(1, round(size / max(picture.size)))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail_png(sample: np.ndarray, size: int = 64) -> bytes:
    """A PNG thumbnail of one sample (:func:`sample_image`)."""
    return png(sample_image(sample), size)
