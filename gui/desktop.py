"""Handing a folder to the desktop's file manager, and saying so when there is none."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication


def open_folder(folder: str | Path) -> str | None:
    """Open ``folder`` in the file manager; when nothing can, copy its path and return what to tell the user.

    ``QDesktopServices.openUrl`` returns False (and shows nothing) on a
    desktop without a file manager, in a container, or over SSH: silence there
    read as a broken button.
    """
    path = Path(folder)
    if not path.is_dir():
        return f"The folder {path} does not exist (yet)."
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
        return None
    QGuiApplication.clipboard().setText(str(path))
    return f"No file manager could open the folder; its path is copied to the clipboard: {path}"
