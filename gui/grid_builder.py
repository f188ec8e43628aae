"""The grid builder: a form generated from the zoo's typed hyperparameters.

Each parameter row edits one grid value form (default, fixed, list, linear or
log range, random distribution).  The form builds the same document
``blueno.grid.to_toml`` writes and ``blueno.grid.parse_grid`` validates and
expands, off the GUI thread, after every change: the count of trainings, an
estimate of their time, and each problem next to the field it names.  What
is enqueued is that TOML, exactly as the CLI would take it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from blueno import actions, datasets
from blueno.estimate import Estimate, estimate, plan_grid
from blueno.grid import SPLIT_AXES, Grid, GridError, load_grid, parse_grid, to_toml, zoo_models
from blueno.grid_data import check_data_fits
from blueno.grid_toml import save_toml
from blueno.store import Store
from blueno.workspace import Workspace
from blueno.zoo.base import TRAINING_PARAMS, Hyperparam
from gui.formatting import format_duration
from gui.transform_params import TransformParamsForm, workspace_transforms
from gui.workers import Fetcher, submit

VALIDATE_DELAY_MS = 150
ERROR_STYLE = "color: #c62828"

# Mode label → (grid form, what the text field holds).
MODES: dict[str, tuple[str, str]] = {
    "default": ("", ""),
    "fixed": ("value", "a value"),
    "list": ("list", "values separated by commas"),
    "range (linear)": ("range", "low, high, number of points"),
    "range (log)": ("log", "low, high, number of points"),
    "random uniform": ("uniform", "low, high"),
    "random log-uniform": ("loguniform", "low, high"),
    "random integer": ("randint", "low, high"),
    "random choice": ("choice", "values separated by commas"),
}
FORM_TO_MODE = {form: mode for mode, (form, _) in MODES.items() if form}


def modes_for(hp: Hyperparam) -> list[str]:
    """The modes that make sense for a parameter's type."""
    if hp in SPLIT_AXES:  # [split] takes a fraction or a list of them
        return ["default", "fixed", "list"]
    if hp.type in (bool, str) or hp.choices is not None:
        return ["default", "fixed", "list", "random choice"]
    modes = [
        "default",
        "fixed",
        "list",
        "range (linear)",
        "range (log)",
        "random uniform",
        "random log-uniform",
        "random choice",
    ]
    return modes + ["random integer"] if hp.type is int else modes


def parse_scalar(text: str, hp: Hyperparam) -> Any:
    """One value typed in a field, read as the parameter's type (the grid checks ranges)."""
    text = text.strip().strip('"').strip("'")
    if hp.type is bool:
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    if hp.type is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError(f"{text!r} is not a whole number")
        return int(number)
    if hp.type is float:
        return float(text)
    return text


def format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


class ParamRow:
    """One parameter's mode, value text and problem; converts to and from a grid value form."""

    def __init__(self, hp: Hyperparam, key: str, on_change: Callable[[], None], parent: QWidget) -> None:
        self.hp, self.key = hp, key
        self.label = QLabel(hp.name, parent)
        self.label.setToolTip(f"{hp.help}\n{hp.describe()}; default {format_scalar(hp.default)}".strip())
        self.mode = QComboBox(parent)
        self.mode.addItems(modes_for(hp))
        self.text = QLineEdit(parent)
        self.problem = QLabel(parent)
        self.problem.setStyleSheet(ERROR_STYLE)
        self.problem.setWordWrap(True)
        self.mode.currentTextChanged.connect(self._on_mode)
        self.mode.currentTextChanged.connect(lambda _: on_change())
        self.text.textChanged.connect(lambda _: on_change())
        self._on_mode(self.mode.currentText())

    def widgets(self) -> list[QWidget]:
        return [self.label, self.mode, self.text, self.problem]

    def _on_mode(self, mode: str) -> None:
        self.text.setEnabled(mode != "default")
        self.text.setPlaceholderText(MODES[mode][1] or f"default: {format_scalar(self.hp.default)}")

    def value(self) -> Any:
        """The grid value form, or None for the default; raises ValueError for unreadable text."""
        form = MODES[self.mode.currentText()][0]
        if not form:
            return None
        parts = [p for p in self.text.text().split(",") if p.strip()]
        if not parts:
            raise ValueError(f"enter {MODES[self.mode.currentText()][1]}")
        if form == "value":
            return parse_scalar(self.text.text(), self.hp)
        if form in ("list", "choice"):
            values = [parse_scalar(p, self.hp) for p in parts]
            return values if form == "list" else {"choice": values}
        numbers = [float(p) for p in parts]
        if form in ("range", "log"):
            if len(numbers) != 3:
                raise ValueError("enter low, high, number of points")
            low, high, num = numbers
            whole = self.hp.type is int
            return {form: [int(low) if whole else low, int(high) if whole else high], "num": int(num)}
        if len(numbers) != 2:
            raise ValueError("enter low, high")
        return {form: [int(n) for n in numbers] if form == "randint" else numbers}

    def set_value(self, value: Any) -> None:
        """Show a grid value form (from a loaded TOML file); None is the default."""
        if value is None:
            self.mode.setCurrentText("default")
            self.text.clear()
            return
        if isinstance(value, list):
            mode, text = "list", ", ".join(format_scalar(v) for v in value)
        elif isinstance(value, dict):
            form = next(iter(value))
            mode = FORM_TO_MODE.get(form, "fixed")
            items = list(value[form])
            if "num" in value:
                items.append(value["num"])
            elif "step" in value:  # shown as points: the form edits ranges by count
                low, high = value[form]
                items.append(int(round((high - low) / value["step"])) + 1)
            text = ", ".join(format_scalar(v) for v in items)
        else:
            mode, text = "fixed", format_scalar(value)
        self.mode.setCurrentText(mode)
        self.text.setText(text)

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.text.setStyleSheet("border: 1px solid #c62828" if text else "")


# Grid keys the form has no field for: saving over a file leaves them as they are.
FORM_LEAVES_ALONE = ("description", "max_failures", "priority", "split.seed", "command", "workdir")


def check_grid(store: Store, text: str, workspace: Workspace | None = None) -> dict[str, Any]:
    """Validate and expand the form's TOML, and estimate its wall-clock time on the slots (worker thread)."""
    try:
        grid = parse_grid(text, source="grid", workspace=workspace)
        if workspace is not None:
            check_data_fits(store, workspace, grid)
    except GridError as exc:
        return {"error": exc}
    slots = 1
    if workspace is not None:
        from blueno.scheduler import configured_slots

        try:
            slots = len(configured_slots(workspace))
        except Exception:  # a bad settings file is the settings dialog's to report, not the estimate's
            slots = 1
    return {"grid": grid, "estimate": estimate(store, plan_grid(store, grid.configs), slots)}


def form_problem(error: GridError) -> str:
    """A grid problem in the form's words: fields and buttons, not TOML keys."""
    if error.key.split(".")[0] == "dataset":
        return ((f"Dataset: {error.problem}. " if error.problem else "")
                + "Choose a dataset in the Dataset field: pick one from the list, or import one first "
                "(Datasets tab, or File → Import dataset…, Ctrl+I).")
    return f"{error.key + ': ' if error.key else ''}{error.problem}; {error.fix}"


class QtGridBuilder(QWidget):
    """The grid form, its live count and estimate, save/load and Enqueue."""

    status_message = Signal(str)
    enqueued = Signal()

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        on_written: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._workspace, self._store, self._on_written = workspace, store, on_written
        self._models = zoo_models(workspace)
        self._grid: Grid | None = None
        self._text = ""

        self.name = QLineEdit("grid", self)
        self.dataset = QComboBox(self)
        self.dataset.setEditable(True)
        self.dataset.setToolTip("a dataset name (its newest version) or name@version; several, separated by "
                                "commas, are an axis: the grid trains on each")
        self.search = QComboBox(self)
        self.search.addItems(["grid", "random"])
        self.samples = QSpinBox(self)
        self.samples.setRange(1, 100_000)
        self.samples.setValue(20)
        self.dataset_problem = QLabel(self)
        self.dataset_problem.setStyleSheet(ERROR_STYLE)
        self.dataset_problem.setWordWrap(True)
        self.dataset_problem.setVisible(False)
        self.preprocessing: dict[str, QCheckBox] = {}
        self.transform_forms: dict[str, tuple[QGroupBox, TransformParamsForm, QLabel]] = {}
        self.rows: dict[str, ParamRow] = {}

        general = QFormLayout()
        general.addRow("Name", self.name)
        general.addRow("Dataset", self.dataset)
        general.addRow("", self.dataset_problem)
        general.addRow("Search", self._pair(self.search, QLabel("samples"), self.samples))
        general.addRow("Split", self._param_group("", SPLIT_AXES, "split"))
        general.addRow("Preprocessing", self._preprocessing_boxes())
        self.model_boxes: dict[str, QCheckBox] = {}
        models_row = QHBoxLayout()
        for name, spec in self._models.items():
            box = QCheckBox(name, self)
            box.setToolTip(spec.description)
            box.toggled.connect(self._changed)
            self.model_boxes[name] = box
            models_row.addWidget(box)
        models_row.addStretch(1)
        general.addRow("Models", models_row)

        training = self._param_group("Training parameters (every model)", TRAINING_PARAMS, "params")
        self.model_groups: dict[str, QGroupBox] = {}
        form = QVBoxLayout()
        form.addLayout(general)
        form.addWidget(training)
        for name, spec in self._models.items():
            group = self._param_group(f"{name}: {spec.description}", spec.hyperparams, f"models.{name}")
            group.setVisible(False)
            self.model_groups[name] = group
            form.addWidget(group)
        form.addStretch(1)
        inner = QWidget(self)
        inner.setLayout(form)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)

        self.summary = QLabel(self)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem = QLabel(self)
        self.problem.setStyleSheet(ERROR_STYLE)
        self.problem.setWordWrap(True)
        self.load_button = QPushButton("Load…", self)
        self.save_button = QPushButton("Save…", self)
        self.enqueue_button = QPushButton("Enqueue", self)
        self.enqueue_button.setDefault(True)
        self.enqueue_button.setToolTip("Queue every training of this grid (Ctrl+Return)")
        self.load_button.clicked.connect(self.load_dialog)
        self.save_button.clicked.connect(self.save_dialog)
        self.enqueue_button.clicked.connect(self.enqueue)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.enqueue)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        for button in (self.load_button, self.save_button, self.enqueue_button):
            bottom.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.problem)
        layout.addLayout(bottom)

        for signal in (
            self.name.textChanged,
            self.dataset.currentTextChanged,
            self.search.currentTextChanged,
            self.samples.valueChanged,
        ):
            signal.connect(self._changed)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(VALIDATE_DELAY_MS)
        self._debounce.timeout.connect(self.validate)
        self._checker = Fetcher(lambda: lambda text=self._text: check_grid(store, text, workspace), self)
        self._checker.ready.connect(self._on_checked)
        self._datasets = Fetcher(
            lambda: lambda: sorted({v.name for v in datasets.versions(store, workspace)}), self
        )
        self._datasets.ready.connect(self._on_datasets)
        self._datasets.request()
        if self.model_boxes:
            next(iter(self.model_boxes.values())).setChecked(True)
        self._changed()

    # -- building the form -----------------------------------------------------

    def _pair(self, *widgets: QWidget) -> QWidget:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in widgets:
            row.addWidget(widget)
        row.addStretch(1)
        return holder

    def _preprocessing_boxes(self) -> QWidget:
        transforms = workspace_transforms(self._workspace)
        boxes = [QCheckBox("none", self)]
        boxes[0].setChecked(True)
        for name in transforms.names():
            boxes.append(QCheckBox(name, self))
            boxes[-1].setToolTip(transforms.get(name).doc or name)
        for box in boxes:
            self.preprocessing[box.text()] = box
            box.toggled.connect(self._changed)
        holder = self._pair(*boxes)
        holder.setToolTip("each checked entry is one preprocessing chain: the grid trains on each")
        column = QWidget(self)
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(holder)
        for name in transforms.names():  # each checked transform's parameters, from what it declares
            group = QGroupBox(f"{name} parameters", self)
            group_layout = QVBoxLayout(group)
            form = TransformParamsForm(name, group, transforms)
            form.changed.connect(self._changed)
            problem = QLabel(group)
            problem.setStyleSheet(ERROR_STYLE)
            problem.setWordWrap(True)
            group_layout.addWidget(form)
            group_layout.addWidget(problem)
            group.setVisible(False)
            self.transform_forms[name] = (group, form, problem)
            layout.addWidget(group)
        return column

    def _param_group(self, title: str, hyperparams: tuple[Hyperparam, ...], prefix: str) -> QGroupBox:
        group = QGroupBox(title, self)
        grid = QGridLayout(group)
        grid.setColumnStretch(2, 1)
        grid.setColumnStretch(3, 1)
        for number, hp in enumerate(hyperparams):
            row = ParamRow(hp, f"{prefix}.{hp.name}", self._changed, group)
            self.rows[row.key] = row
            for column, widget in enumerate(row.widgets()):
                grid.addWidget(widget, number, column)
        return group

    # -- form <-> grid document ---------------------------------------------------

    def chosen_models(self) -> list[str]:
        return [name for name, box in self.model_boxes.items() if box.isChecked()]

    def document(self) -> dict[str, Any]:
        """The grid document the form describes; unreadable fields are marked, not guessed."""
        names = [part.strip() for part in self.dataset.currentText().split(",") if part.strip()]
        doc: dict[str, Any] = {
            "name": self.name.text().strip() or "grid",
            "dataset": names if len(names) > 1 else self.dataset.currentText().strip(),
        }
        chains = [
            [] if name == "none" else [self._step(name)]
            for name, box in self.preprocessing.items()
            if box.isChecked()
        ]
        if chains and chains != [[]]:
            doc["preprocessing"] = chains
        doc["split"] = self._values("split")
        if self.search.currentText() == "random":
            doc["search"] = {"mode": "random", "samples": self.samples.value()}
        doc["params"] = self._values("params")
        doc["models"] = {name: self._values(f"models.{name}") for name in self.chosen_models()}
        return doc

    def _step(self, name: str) -> dict[str, Any]:
        """One transform step with the parameters typed in its fields; ValueError (shown beside them) if wrong."""
        _, form, problem = self.transform_forms[name]
        try:
            params = form.values()
        except ValueError as exc:
            problem.setText(str(exc))
            raise
        problem.setText("")
        return {"transform": name, "params": params} if params else {"transform": name}

    def _values(self, prefix: str) -> dict[str, Any]:
        values = {}
        for key, row in self.rows.items():
            if not key.startswith(prefix + "."):
                continue
            try:
                value = row.value()
            except ValueError as exc:
                row.show_problem(str(exc))
                raise
            row.show_problem("")
            if value is not None:
                values[row.hp.name] = value
        return values

    def set_document(self, doc: dict[str, Any]) -> None:
        """Fill the form from a grid document (a loaded file)."""
        self.name.setText(str(doc.get("name", "grid")))
        dataset = doc.get("dataset", "")
        self.dataset.setCurrentText(", ".join(dataset) if isinstance(dataset, list) else str(dataset))
        search = doc.get("search", {})
        self.search.setCurrentText(search.get("mode", "grid"))
        self.samples.setValue(int(search.get("samples") or 20))
        chains = doc.get("preprocessing", [[]])
        names = {"none" if not chain else chain[0]["transform"] for chain in chains}
        for name, box in self.preprocessing.items():
            box.setChecked(name in names)
        for chain in chains:
            if chain and chain[0]["transform"] in self.transform_forms:
                self.transform_forms[chain[0]["transform"]][1].set_values(chain[0].get("params") or {})
        models = doc.get("models", {})
        for name, box in self.model_boxes.items():
            box.setChecked(name in models)
        for key, row in self.rows.items():
            section, _, param = key.rpartition(".")
            table = doc.get(section, {}) if section in ("params", "split") else models.get(section.split(".", 1)[1], {})
            row.set_value(table.get(param))
        self.validate()

    # -- validation ------------------------------------------------------------------

    def _changed(self, *_: Any) -> None:
        for name, group in self.model_groups.items():
            group.setVisible(self.model_boxes[name].isChecked())
        for name, (group, _, _) in self.transform_forms.items():
            group.setVisible(self.preprocessing[name].isChecked() and bool(group.findChild(TransformParamsForm).fields))
        self.samples.setEnabled(self.search.currentText() == "random")
        self._debounce.start()

    def validate(self) -> None:
        """Rebuild the TOML from the form and check it off the GUI thread."""
        self._grid = None
        self.enqueue_button.setEnabled(False)
        if not self.dataset.currentText().strip():
            self._show_dataset_problem(True)
            self.summary.setText("")
            self.problem.setText(form_problem(GridError("grid", "dataset", "", "")))
            return
        self._show_dataset_problem(False)
        try:
            self._text = to_toml(self.document())
        except ValueError as exc:
            self.summary.setText("")
            self.problem.setText(f"fix the highlighted field: {exc}")
            return
        self._checker.request()

    def _on_checked(self, result: dict[str, Any]) -> None:
        for row in self.rows.values():
            row.show_problem("")
        error: GridError | None = result.get("error")
        if error is not None:
            self.summary.setText("")
            row = self.rows.get(error.key)
            if row is not None:
                row.show_problem(f"{error.problem}; {error.fix}")
            self._show_dataset_problem(error.key.split(".")[0] == "dataset", error)
            self._mark_model(error.key.split(".")[1] if error.key.startswith("models.") else None, error)
            self.problem.setText(form_problem(error))
            return
        self.problem.setText("")
        self._show_dataset_problem(False)
        self._mark_model(None)
        self._grid = result["grid"]
        found: Estimate | None = result["estimate"]
        count = self._grid.count
        text = f"{count} training{'s' if count != 1 else ''}"
        if found is not None:
            text += f" · {found.describe(format_duration)}"
            self.summary.setToolTip(f"Estimated from {found.basis}; it follows the runs as they finish.")
        else:
            self.summary.setToolTip("No training has finished in this workspace yet: the estimate starts with the "
                                    "first finished run.")
        self.summary.setText(text)
        self.enqueue_button.setEnabled(count > 0)

    def _mark_model(self, name: str | None, error: GridError | None = None) -> None:
        """Tint the model that cannot take the data (its check box says why); clear the others."""
        for model, box in self.model_boxes.items():
            bad = model == name and error is not None
            box.setStyleSheet(ERROR_STYLE if bad else "")
            box.setToolTip(error.fix if bad and error is not None else self._models[model].description)

    def _show_dataset_problem(self, shown: bool, error: GridError | None = None) -> None:
        if shown and error is not None and error.problem and self.dataset.currentText().strip():
            text = f"{error.problem}. Pick a dataset from the list, or import it on the Datasets tab (Ctrl+I)."
        else:
            text = "Choose a dataset: pick one from the list, or import one on the Datasets tab (Ctrl+I)."
        self.dataset_problem.setText(text if shown else "")
        self.dataset_problem.setVisible(shown)

    def refresh(self) -> None:
        """Re-read the dataset list (the database changed: an import here, in a terminal, F5)."""
        self._datasets.request()

    def _on_datasets(self, names: list[str]) -> None:
        if names == [self.dataset.itemText(i) for i in range(self.dataset.count())]:
            return
        current = self.dataset.currentText()
        self.dataset.blockSignals(True)
        self.dataset.clear()
        self.dataset.addItems(names)
        self.dataset.setCurrentText(current or (names[0] if names else ""))
        self.dataset.blockSignals(False)
        self._changed()

    # -- actions -------------------------------------------------------------------------

    def enqueue(self) -> None:
        grid = self._grid
        if grid is None or not self.enqueue_button.isEnabled():
            return
        self.enqueue_button.setEnabled(False)
        store, workspace = self._store, self._workspace
        submit(
            lambda: actions.submit_grid(workspace, store, grid)[1],
            on_done=self._on_enqueued,
            on_error=self._on_enqueue_failed,
        )

    def _on_enqueued(self, result: Any) -> None:
        self.enqueue_button.setEnabled(True)
        self._on_written()
        self.status_message.emit(
            f"queued {len(result.added)} new and {len(result.requeued)} earlier trainings; "
            f"{result.skipped} already done or queued"
        )
        self.enqueued.emit()

    def _on_enqueue_failed(self, exc: BaseException) -> None:
        self.enqueue_button.setEnabled(True)
        QMessageBox.warning(self, "Blueno", f"could not enqueue: {exc}")

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open grid", str(self._workspace.root), "Grids (*.toml)")
        if path:
            self.load(Path(path))

    def load(self, path: Path) -> None:
        submit(
            load_grid,
            path,
            on_done=lambda grid: self.set_document(grid.document()),
            on_error=lambda exc: QMessageBox.warning(self, "Blueno", str(exc)),
        )

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save grid", str(self._workspace.root / "grid.toml"), "Grids (*.toml)"
        )
        if path:
            self.save(Path(path))

    def save(self, path: Path) -> None:
        """Write the form's grid; over an existing file only what changed, its comments kept."""
        submit(
            save_toml,
            path,
            self.document(),
            keep=FORM_LEAVES_ALONE,
            on_done=lambda _: self.status_message.emit(f"saved {path}"),
            on_error=lambda exc: QMessageBox.warning(self, "Blueno", f"could not save {path}: {exc}"),
        )
