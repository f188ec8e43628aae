"""Fields for a preprocessing transform's parameters, generated from what the transform declares.

``etl`` transforms declare keyword-only parameters with type hints and
defaults (``clip(batch, *, low: float, high: float, rescale: bool = False)``);
this form gives each one a field: a check box for a ``bool``, a line edit for
the rest, its placeholder saying the type and the default.  ``values()``
returns what was typed, read as the declared types by the transform's own
check (:meth:`etl.Transform.check`), so the form, the grid and the CLI agree
on what is valid.  Used by the grid builder (a form per checked transform)
and by the datasets view's Derive… dialog.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from blueno.workspace import Workspace
    from etl import Registry

ERROR_STYLE = "color: #c62828"


def workspace_transforms(workspace: Workspace) -> Registry:
    """The built-in transforms and the workspace's own; the built-ins alone while one of its files
    fails to load (checking the grid or deriving names that file and its error)."""
    import etl

    try:
        return etl.registry(workspace.transforms_dir)
    except etl.TransformError:
        return etl.registry()


def _hint_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "").replace("NoneType", "None")


def _is_bool(hint: Any) -> bool:
    return hint is bool


def read_text(text: str, hint: Any) -> Any:
    """A typed value read as its declared type: numbers as numbers, ``a, b`` as a list; the check coerces."""
    text = text.strip()
    origin = typing.get_origin(hint)
    if origin in (list, tuple) or "," in text:
        return [read_text(part, typing.get_args(hint)[0] if typing.get_args(hint) else Any)
                for part in text.split(",") if part.strip()]
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text.strip("'\"")


class TransformParamsForm(QWidget):
    """One field per declared parameter of one transform; ``problem`` says what is wrong, in words."""

    changed = Signal()

    def __init__(self, name: str, parent: QWidget | None = None, transforms: Registry | None = None) -> None:
        import etl

        super().__init__(parent)
        self.transform = (transforms or etl.registry()).get(name)
        self.fields: dict[str, QLineEdit | QCheckBox] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for param in self.transform.params.values():
            if _is_bool(param.hint):
                box = QCheckBox(self)
                box.setChecked(bool(param.default) if not param.required else False)
                box.toggled.connect(lambda _: self.changed.emit())
                self.fields[param.name] = box
            else:
                edit = QLineEdit(self)
                kind = _hint_text(param.hint)
                edit.setPlaceholderText(f"{kind}, required" if param.required else f"{kind}, default {param.default!r}")
                edit.textChanged.connect(lambda _: self.changed.emit())
                self.fields[param.name] = edit
            form.addRow(param.name, self.fields[param.name])
        if not self.transform.params:
            form.addRow(QLabel("no parameters", self))

    def typed(self) -> dict[str, Any]:
        """What the user gave (empty fields left out, so defaults apply)."""
        values: dict[str, Any] = {}
        for name, field in self.fields.items():
            param = self.transform.params[name]
            if isinstance(field, QCheckBox):
                if param.required or field.isChecked() != bool(param.default):
                    values[name] = field.isChecked()
            elif field.text().strip():
                values[name] = read_text(field.text(), param.hint)
        return values

    def values(self) -> dict[str, Any]:
        """The typed parameters, checked by the transform; raises ValueError with the transform's words."""
        import etl

        typed = self.typed()
        try:
            self.transform.check(typed)
        except etl.TransformError as exc:
            raise ValueError(str(exc)) from None
        return typed

    def problem(self) -> str:
        try:
            self.values()
        except ValueError as exc:
            return str(exc)
        return ""

    def set_values(self, params: dict[str, Any]) -> None:
        for name, field in self.fields.items():
            value = params.get(name)
            if isinstance(field, QCheckBox):
                field.setChecked(bool(value) if name in params else bool(self.transform.params[name].default))
            else:
                field.setText("" if name not in params else (
                    ", ".join(map(str, value)) if isinstance(value, list) else str(value)))


class QtDeriveDialog(QDialog):
    """Choose a transform and fill in its parameters (Derive… in the datasets view)."""

    def __init__(self, ref: str, parent: QWidget | None = None, transforms: Registry | None = None) -> None:
        """``transforms``: the workspace's (``etl.registry(workspace.transforms_dir)``); default the built-ins."""
        import etl

        super().__init__(parent)
        self._transforms = transforms or etl.registry()
        self.setWindowTitle(f"Derive a dataset from {ref}")
        self.setMinimumWidth(440)
        self.transform = QComboBox(self)
        self.transform.addItems(self._transforms.names())
        self.doc = QLabel(self)
        self.doc.setWordWrap(True)
        self.holder = QVBoxLayout()
        self.form: TransformParamsForm | None = None
        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Derive")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        top = QFormLayout()
        top.addRow("Transform", self.transform)
        layout.addLayout(top)
        layout.addWidget(self.doc)
        layout.addLayout(self.holder)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.transform.currentTextChanged.connect(self._choose)
        self._choose(self.transform.currentText())

    def _choose(self, name: str) -> None:
        if self.form is not None:
            self.form.setParent(None)
            self.form.deleteLater()
        self.form = TransformParamsForm(name, self, self._transforms)
        self.form.changed.connect(self._check)
        self.holder.addWidget(self.form)
        self.doc.setText(self.form.transform.doc or name)
        self._check()

    def _check(self) -> None:
        problem = self.form.problem() if self.form else ""
        self.error.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)

    def chosen(self) -> tuple[str, dict[str, Any]]:
        """The transform and its parameters (valid: Derive is grey otherwise)."""
        assert self.form is not None
        return self.transform.currentText(), self.form.values()
