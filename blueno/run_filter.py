"""The one filter grammar for runs: ``blueno runs ls --where``, the app's filter box, :func:`blueno.runs.search`.

A filter is words separated by spaces; a run must match every one:

- ``key=value``: the column ``key`` equals ``value``: numerically when both
  are numbers (``lr=0.01`` matches 0.01 and 1e-2), else as text, ignoring case
  (``state=failed``, ``model=MLP``).
- ``key!=value``, ``key<value``, ``key<=value``, ``key>value``, ``key>=value``:
  ``!=`` is the opposite of ``=``; the others compare numbers (a run without a
  value for ``key`` never matches them).
- any other word matches runs that show it anywhere (part of any cell, ignoring case).

A key is a column title (``Run``, ``State``, ``Experiment``, ``Model``,
``Dataset``, ``Epochs``, ``Duration``), a parameter (``learning_rate``), or a
metric: ``val_accuracy`` means its value at the best epoch (the column
``best val_accuracy``); ``final val_accuracy`` (written ``final_val_accuracy``
or quoted) the last epoch's.  Keys ignore case; ``id`` is ``Run``.  Quote a
value with spaces: ``experiment="my sweep"``.

Sorting (``--sort``) takes one key the same way; ``-key`` sorts descending.
Missing values sort last either way.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blueno import BluenoError

Row = Sequence[Any]
_TERM = re.compile(r"^(?P<key>[^<>=!]+?)\s*(?P<op><=|>=|!=|==|=|<|>)(?P<value>.*)$")
_ALIASES = {"id": "run", "exp": "experiment", "run_id": "run"}
_NUMERIC_OPS = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}


class FilterError(BluenoError):
    """A filter that cannot be applied: an unknown key, or a comparison of a number with text."""


def cell_text(value: Any) -> str:
    """A cell as the table shows it (numbers short, missing values empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def resolve_key(key: str, titles: Sequence[str]) -> int:
    """The column number of ``key`` among ``titles`` (see the module's rules); FilterError if none."""
    wanted = key.strip().strip('"').lower()
    wanted = _ALIASES.get(wanted, wanted)
    lowered = [title.lower() for title in titles]
    for candidate in (wanted, f"best {wanted}", wanted.replace("_", " ", 1)):
        if candidate in lowered:
            return lowered.index(candidate)
    raise FilterError(
        f"no column {key!r} in the runs table; keys are column titles, parameters and metrics, e.g. "
        f"{', '.join(t for t in list(titles)[:10])}"
    )


@dataclass(frozen=True)
class Term:
    key: str
    op: str
    value: str


@dataclass(frozen=True)
class RunFilter:
    """A parsed filter: comparisons on columns and words searched in the whole row."""

    terms: tuple[Term, ...] = ()
    words: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms or self.words)

    def matcher(self, titles: Sequence[str], text_of: Callable[[Row], str] | None = None) -> Callable[[Row], bool]:
        """A predicate on rows whose columns are ``titles`` (FilterError for an unknown key).

        ``text_of`` gives a row's searchable lower-case text (a view may cache
        it); by default the cells' text joined.
        """
        tests = [_compile(term, resolve_key(term.key, titles)) for term in self.terms]
        words = self.words
        text = text_of or (lambda row: " ".join(map(cell_text, row)).lower())

        def matches(row: Row) -> bool:
            if not all(test(row) for test in tests):
                return False
            if words:
                haystack = text(row)
                return all(word in haystack for word in words)
            return True

        return matches


    def sql_prefilter(self, titles: Sequence[str], expressions: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """A SQL condition met by every row this filter matches, and its arguments.

        ``expressions[i]`` is the SQL of column ``titles[i]``.  The condition
        may let through rows the filter refuses (a superset): callers still
        match the rows it returns with :meth:`matcher`, so the database only
        narrows which rows it extracts and Python keeps the exact rules.  Terms
        SQL cannot mirror closely enough (``!=``, words, text beyond ASCII, an
        empty value) add no condition.  ``"1"`` when nothing narrows.
        """
        conditions: list[str] = []
        args: dict[str, Any] = {}
        for n, term in enumerate(self.terms):
            condition = _sql_condition(term, expressions[resolve_key(term.key, titles)], f"filter{n}", args)
            if condition:
                conditions.append(condition)
        return " AND ".join(conditions) or "1", args


def _sql_condition(term: Term, sql: str, name: str, args: dict[str, Any]) -> str | None:
    """The superset condition of one term (see :meth:`RunFilter.sql_prefilter`); None when none."""
    value = term.value.strip()
    number = _number(value)
    # CAST(... AS REAL) of a JSON number is Python's float() of it, exactly. Text cells always pass:
    # Python reads those that parse as numbers ("1e-3") its own way. Each json_extract parses the
    # run's JSON again, so the condition names the cell as few times as it can.
    text = f"typeof({sql}) = 'text'"
    if term.op in _NUMERIC_OPS:
        if number is None or math.isnan(number):
            raise FilterError(f"{term.key}{term.op}{value}: {term.op} compares numbers; write a number after it")
        args[name] = number
        return f"(CAST({sql} AS REAL) {term.op} :{name} OR {text})"
    if term.op != "=" or not value:
        return None
    if number is not None and math.isfinite(number):
        # math.isclose(rel_tol=1e-9) holds only within 2e-9 x |number| of it: the window is five times that
        args[f"{name}_low"], args[f"{name}_high"] = number - 1e-8 * abs(number), number + 1e-8 * abs(number)
        return f"(CAST({sql} AS REAL) BETWEEN :{name}_low AND :{name}_high OR {text})"
    if number is not None or not value.isascii():
        return None
    args[name] = value.lower()
    # Text compares ignoring case (SQLite's lower() knows ASCII only: hence ASCII values only here).
    # A number's cell text always reads as a number, so only text cells can equal this value
    # (json_extract gives JSON's true/false as 1/0: numbers too).
    return f"lower({sql}) = :{name}"


def _compile(term: Term, column: int) -> Callable[[Row], bool]:
    value = term.value.strip()
    number = _number(value)
    if term.op in _NUMERIC_OPS:
        if number is None or math.isnan(number):
            raise FilterError(f"{term.key}{term.op}{value}: {term.op} compares numbers; write a number after it")
        compare = _NUMERIC_OPS[term.op]

        def numeric(row: Row) -> bool:
            cell = _number(row[column])
            return cell is not None and compare(cell, number)

        return numeric
    wanted = value.lower()

    def equal(row: Row) -> bool:
        cell = row[column]
        cell_number = _number(cell) if number is not None else None
        if number is not None and cell_number is not None:
            return math.isclose(cell_number, number, rel_tol=1e-9, abs_tol=0.0)
        return cell_text(cell).lower() == wanted or str(cell).lower() == wanted

    return (lambda row: not equal(row)) if term.op == "!=" else equal


def parse(text: str) -> RunFilter:
    """Parse a filter (see the module's grammar); quotes group words with spaces."""
    try:
        parts = shlex.split(text)
    except ValueError:  # an unclosed quote while typing: take the words as they are
        parts = text.split()
    terms, words = [], []
    for part in parts:
        match = _TERM.match(part)
        if match and match["key"].strip():
            op = "=" if match["op"] == "==" else match["op"]
            terms.append(Term(match["key"].strip(), op, match["value"]))
        elif part:
            words.append(part.lower())
    return RunFilter(tuple(terms), tuple(words))


def order_rows(rows: list[Row], column: int, descending: bool) -> list[Row]:
    """Rows sorted on one column: numbers before text, missing values last either way."""

    def key(row: Row) -> tuple:
        value = row[column]
        number = None if isinstance(value, str) else _number(value)
        return (0, number, "") if number is not None else (1, 0.0, str(value).lower())

    present = [row for row in rows if row[column] is not None]
    present.sort(key=key, reverse=descending)
    return present + [row for row in rows if row[column] is None]


def parse_order(order: str, titles: Sequence[str]) -> tuple[int, bool]:
    """``key`` or ``-key`` → (column number, descending)."""
    descending = order.startswith("-")
    return resolve_key(order.lstrip("-+"), titles), descending
