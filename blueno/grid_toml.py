"""TOML text for grid files: a writer (``tomllib`` only reads), an updater that keeps a
file's comments and layout (tomlkit), and a locator for error lines.

The writer covers what a grid holds: text, numbers, booleans, lists and
tables; no dates.  The updater rewrites only the values that changed, so a
grid saved from the app over a hand-written file keeps its comments, order
and number spellings (``1e-3`` stays ``1e-3`` while it is the same number).
The locator finds the line that sets a dotted key, so a message can say
``grid.toml:12`` even though ``tomllib`` reports lines only for syntax errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from blueno import BluenoError

_HEADER = re.compile(r"^\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_ASSIGN = re.compile(rf"^({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _key_parts(dotted: str) -> list[str]:
    """``a."b.c".d`` -> ``["a", "b.c", "d"]``."""
    return [part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", dotted)]


def line_of(text: str, key: str) -> int | None:
    """The line that sets ``key`` (``models.mlp.hidden_units``), best effort; None if not found."""
    if not key:
        return None
    path = _key_parts(key)
    table: list[str] = []
    best: tuple[int, int] | None = None  # (matched length, line)
    for number, line in enumerate(text.split("\n"), 1):  # as tomllib counts: not splitlines()
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header:
            table = _key_parts(header.group(1))
            full = table
        else:
            assign = _ASSIGN.match(stripped)
            if not assign:
                continue
            full = table + _key_parts(assign.group(1))
        if full == path[: len(full)] and (best is None or len(full) > best[0]):
            best = (len(full), number)
    return best[1] if best else None


def write_toml(document: Mapping[str, Any]) -> str:
    """A grid document as TOML text that ``tomllib`` reads back to the same document.

    Top-level tables and each ``models.NAME`` become ``[sections]``; deeper
    tables (value forms, step parameters) are written inline.
    """
    lines: list[str] = []
    _write_table(lines, [], document)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    sections_below = not path or path == ["models"]
    inline = {k: v for k, v in table.items() if not (sections_below and isinstance(v, Mapping))}
    sections = {k: v for k, v in table.items() if k not in inline}
    if path and (inline or not sections):
        lines += ["", f"[{'.'.join(_toml_key(p) for p in path)}]"]
    lines += [f"{_toml_key(key)} = {toml_value(value)}" for key, value in inline.items()]
    for key, value in sections.items():
        _write_table(lines, [*path, key], value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
    return '"' + "".join(
        escapes.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in text
    ) + '"'


def toml_value(value: Any) -> str:
    """One value as TOML: inline lists and tables, floats exactly (repr round-trips)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 0.001, 1e-05, inf, nan: all valid TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


# -- round trip -----------------------------------------------------------------------


def update_toml(text: str, document: Mapping[str, Any], *, keep: Iterable[str] = (), source: str = "grid") -> str:
    """``text`` (a TOML file) changed to hold ``document``, its comments and layout kept.

    Values equal to the file's are left as written; changed ones are replaced
    in place; keys missing from ``document`` are removed, except the dotted
    keys in ``keep`` (what the caller does not manage, such as a grid's
    ``description`` for the app's form).  New tables are written as
    ``write_toml`` writes them.
    """
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        parsed = tomlkit.parse(text)
    except ParseError as exc:
        raise BluenoError(f"{source}: {exc}. Fix the TOML syntax there, or save under another name.") from None
    _merge(parsed, document, "", set(keep))
    return tomlkit.dumps(parsed)


def save_toml(path: Path, document: Mapping[str, Any], *, keep: Iterable[str] = ()) -> None:
    """Write ``document`` to ``path``: over an existing file with :func:`update_toml`, else new.

    The file is replaced atomically: a failed save leaves the old one as it was.
    """
    path = Path(path)
    text = (update_toml(path.read_text(encoding="utf-8"), document, keep=keep, source=str(path))
            if path.is_file() else write_toml(document))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _merge(table: Any, new: Mapping[str, Any], prefix: str, keep: set[str]) -> None:
    for key in list(table.keys()):
        if key not in new and f"{prefix}{key}" not in keep:
            del table[key]
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if key in table:
            current = table[key]
            if isinstance(value, Mapping) and isinstance(_plain(current), dict):
                _merge(current, value, f"{dotted}.", keep)
                continue
            if _plain(current) == value and type(_plain(current)) is type(value):
                continue
        table[key] = _new_item(dotted, value)


def _new_item(dotted: str, value: Any) -> Any:
    """A tomlkit item styled as ``write_toml`` writes it: sections for top-level tables and
    ``models.NAME``, inline values below."""
    import tomlkit

    parts = dotted.split(".")
    if isinstance(value, Mapping) and (len(parts) == 1 or (len(parts) == 2 and parts[0] == "models")):
        table = tomlkit.table(is_super_table=dotted == "models")
        for key, sub in value.items():
            table[key] = _new_item(f"{dotted}.{key}", sub)
        return table
    return tomlkit.parse(f"v = {toml_value(value)}")["v"]
