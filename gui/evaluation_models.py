"""Qt models over a run's evaluation JSON: the figure table, a confusion matrix, the gallery.

Plain adapters (ERT's snapshot model idea): each holds what
:mod:`blueno.evaluation` computed and says how to show it; nothing is
computed here but colours.  Test figures are marked: their column is titled
``TEST`` and tinted, so they are never read as validation figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPixmap

from gui.formatting import format_value

AnyIndex = QModelIndex | QPersistentModelIndex
TEST_TINT = QColor("#fff3e0")  # test figures' background everywhere in the GUI
TEST_TEXT = QColor("#e65100")
TEST_LABEL = "TEST (held out)"
FIGURES = (
    ("n", "samples"),
    ("accuracy", "accuracy"),
    ("loss", "loss (cross-entropy)"),
    ("auc", "AUC"),
    ("average_precision", "average precision"),
    ("f1", "F1"),
    ("kappa", "Cohen's kappa"),
    ("precision", "precision"),
    ("recall", "recall (sensitivity)"),
    ("specificity", "specificity"),
    ("n_wrong", "misclassified"),
)
VALUE_ROLE = Qt.ItemDataRole.UserRole + 10
IS_TEST_ROLE = Qt.ItemDataRole.UserRole + 11


class FiguresTableModel(QAbstractTableModel):
    """One row per figure, one column per evaluated split (validation, then TEST when evaluated)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._splits: list[tuple[str, dict[str, Any]]] = []
        self._rows: list[tuple[str, str]] = []

    def set_evaluation(self, evaluation: dict[str, Any] | None) -> None:
        evaluation = evaluation or {}
        self.beginResetModel()
        self._splits = [(s, evaluation[s]) for s in ("validation", "test") if isinstance(evaluation.get(s), dict)]
        self._rows = [(k, t) for k, t in FIGURES if any(k in part for _, part in self._splits)]
        youden = [part.get("youden") for _, part in self._splits]
        if any(youden):
            self._rows.append(("youden.threshold", "Youden's J threshold"))
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._splits)

    def value(self, row: int, column: int) -> Any:
        key = self._rows[row][0]
        part = self._splits[column][1]
        if key == "youden.threshold":
            return (part.get("youden") or {}).get("threshold")
        return part.get(key)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        is_test = self._splits[index.column()][0] == "test"
        if role == Qt.ItemDataRole.DisplayRole:
            return format_value(self.value(index.row(), index.column()))
        if role == VALUE_ROLE:
            return self.value(index.row(), index.column())
        if role == IS_TEST_ROLE:
            return is_test
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and is_test:
            return QBrush(TEST_TINT)
        if role == Qt.ItemDataRole.ForegroundRole and is_test:
            return QBrush(TEST_TEXT)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if not 0 <= section < len(self._splits):
                return None
            is_test = self._splits[section][0] == "test"
            if role == Qt.ItemDataRole.DisplayRole:
                return TEST_LABEL if is_test else "validation"
            if role == Qt.ItemDataRole.ForegroundRole and is_test:
                return QBrush(TEST_TEXT)
            if role == Qt.ItemDataRole.FontRole and is_test:
                font = QFont()
                font.setBold(True)
                return font
            return None
        if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self._rows):
            return self._rows[section][1]
        return None


class ConfusionModel(QAbstractTableModel):
    """A confusion matrix: rows are the true class, columns the predicted one.

    Cells are tinted by the share of their row (recall per class): the
    diagonal in blue, mistakes in red, so where a model errs shows at a glance.
    """

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._matrix = np.zeros((0, 0), dtype=np.int64)
        self._classes: list[str] = []
        self._shares = np.zeros((0, 0))

    def set_matrix(self, matrix: list[list[int]] | None, classes: list[str] | None) -> None:
        self.beginResetModel()
        self._classes = list(classes or [])
        n = len(self._classes)
        self._matrix = np.asarray(matrix, dtype=np.int64).reshape(n, n) if n else np.zeros((0, 0), dtype=np.int64)
        totals = self._matrix.sum(axis=1, keepdims=True)
        self._shares = np.divide(self._matrix, totals, out=np.zeros(self._matrix.shape), where=totals > 0)
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._classes)

    def cell_colour(self, row: int, column: int) -> QColor:
        share = float(self._shares[row, column])
        if share == 0:
            return QColor("#ffffff")
        base = (21, 101, 192) if row == column else (198, 40, 40)
        strength = 0.15 + 0.85 * share
        return QColor(*(round(255 - (255 - c) * strength) for c in base))

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return str(int(self._matrix[row, column]))
        if role == VALUE_ROLE:
            return int(self._matrix[row, column])
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.BackgroundRole:
            return QBrush(self.cell_colour(row, column))
        if role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(QColor("#ffffff") if self._shares[row, column] > 0.55 else QColor("#000000"))
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"true {self._classes[row]}, predicted {self._classes[column]}: "
                    f"{int(self._matrix[row, column])} ({self._shares[row, column]:.0%} of class {self._classes[row]})")
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not 0 <= section < len(self._classes):
            return None
        return self._classes[section]


def to_qimage(image: np.ndarray) -> QImage:
    """A uint8 picture ((H, W) grey or (H, W, 3) colour) as a QImage (safe off the GUI thread)."""
    picture = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = picture.shape[:2]
    if picture.ndim == 3:
        return QImage(picture.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QImage(picture.data, width, height, width, QImage.Format.Format_Grayscale8).copy()


def to_pixmap(image: np.ndarray | None, size: int = 64) -> QPixmap:
    """A uint8 picture ((H, W) grey or (H, W, 3) colour) scaled up without smoothing; grey when missing."""
    if image is None:
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor("#e0e0e0"))
        return pixmap
    return QPixmap.fromImage(to_qimage(image)).scaled(
        QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


class GalleryModel(QAbstractListModel):
    """Samples of a gallery (:class:`blueno.runs.GallerySample`): thumbnail, id, true and predicted class."""

    def __init__(self, parent: Any = None, thumbnail: int = 64) -> None:
        super().__init__(parent)
        self._samples: list[Any] = []
        self._pixmaps: list[QPixmap] = []
        self._thumbnail = thumbnail

    def set_samples(self, samples: list[Any]) -> None:
        self.beginResetModel()
        self._samples = list(samples)
        self._pixmaps = [to_pixmap(s.image, self._thumbnail) for s in self._samples]
        self.endResetModel()

    def sample(self, row: int) -> Any:
        return self._samples[row]

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._samples)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        sample = self._samples[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{sample.id}\n{sample.true} → {sample.predicted}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmaps[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"sample {sample.id} (row {sample.index}): true {sample.true}, "
                    f"predicted {sample.predicted} with p = {sample.p_predicted:.3f}")
        return None
