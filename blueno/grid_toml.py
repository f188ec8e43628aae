"""TOML text for grid files: a writer (``tomllib`` only reads) and a locator for error lines.

The writer covers what a grid holds: text, numbers, booleans, lists and
tables; no dates.  The locator finds the line that sets a dotted key, so a
message can say ``grid.toml:12`` even though ``tomllib`` reports lines only
for syntax errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

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
