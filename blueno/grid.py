"""Grid specification: a TOML file that names a dataset, models and hyperparameter values.

A grid is read with ``tomllib`` and never executed.  It is validated against
the model zoo's declarations (type, range, choices) and expanded into a
deterministic, de-duplicated list of :class:`JobConfig`; each configuration's
hash covers its content and the dataset version, so submitting the same grid
again skips what already succeeded and an interrupted sweep resumes.

Every problem raises a :class:`GridError` naming the file, the line when it
can be found, the key (``models.mlp.hidden_units``), what is wrong and the
fix; the GUI shows ``problem`` and ``fix`` next to the field named by ``key``.
The file format is documented in ``docs/grid.md``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import math
import random
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from blueno import BluenoError
from blueno.grid_toml import line_of, toml_value, write_toml
from blueno.store import dumps
from blueno.zoo.base import TRAINING_PARAMS, Hyperparam, ModelSpec
from blueno.zoo.knobs import drop_defaults

if TYPE_CHECKING:
    from blueno.workspace import Workspace

# More configurations than this is almost always a mistake: say so and suggest random search.
MAX_CONFIGS = 100_000
DEFAULT_MAX_FAILURES = 3
# Attempts per wanted sample before random search settles for fewer unique configurations.
_DRAWS_PER_SAMPLE = 20
_STALE_DRAWS = 1000  # ...or after this many draws in a row (at least as many as found) brought nothing new

TOP_LEVEL_KEYS = (
    "name", "description", "dataset", "max_failures", "priority",
    "split", "search", "params", "models", "preprocessing", "command", "workdir",
)
SEARCH_MODES = ("grid", "random")
# Value forms written as a one-key table, plus the extra keys each accepts.
TABLE_FORMS: dict[str, tuple[str, ...]] = {
    "range": ("num", "step"),
    "log": ("num",),
    "uniform": (),
    "loguniform": (),
    "randint": (),
    "choice": (),
}
RANDOM_FORMS = frozenset({"uniform", "loguniform", "randint", "choice"})
_FORMS_HELP = (
    "{ range = [lo, hi], num = N }, { range = [lo, hi], step = S }, { log = [lo, hi], num = N }, "
    "{ uniform = [lo, hi] }, { loguniform = [lo, hi] }, { randint = [lo, hi] }, { choice = [a, b] }"
)
_TRAINING = {hp.name: hp for hp in TRAINING_PARAMS}
# The split fractions as the form shows them ([split] validation / test): a value, or a list that is an axis.
SPLIT_AXES: tuple[Hyperparam, ...] = (
    Hyperparam("validation", float, 0.2, low=0.01, high=0.9,
               help="share of samples held out to pick the best epoch; a list varies it"),
    Hyperparam("test", float, 0.0, low=0.0, high=0.9,
               help="share held out of training and validation for a final unbiased measure (Runs → Evaluate "
                    "on TEST split; chosen by sample id); default none; a list varies it"),
)

# A preprocessing chain: ``{"transform": name, "params": {...}}`` steps, applied in order.
Chain = tuple[dict[str, Any], ...]
# A dataset name (as blueno.datasets accepts it), optionally @ a version (a manifest hash or its prefix).
_DATASET_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(@[A-Za-z0-9]+)?$")


class GridError(BluenoError):
    """A problem in a grid file: where it is, what is wrong, and the fix."""

    def __init__(self, source: str, key: str, problem: str, fix: str, line: int | None = None) -> None:
        self.source, self.key, self.problem, self.fix, self.line = source, key, problem, fix, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key + ': ' if key else ''}{problem}; {fix}")


@dataclass(frozen=True)
class Split:
    """How the trainer splits the dataset: fractions held out, and the seed that picks them."""

    validation: float = 0.2
    test: float = 0.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"validation": self.validation, "test": self.test, "seed": self.seed}


@dataclass(frozen=True)
class Search:
    """``grid``: every combination; ``random``: ``samples`` draws, reproducible by ``seed``."""

    mode: str = "grid"
    samples: int | None = None
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        if self.mode == "grid":
            return {"mode": "grid"}
        return {"mode": self.mode, "samples": self.samples, "seed": self.seed}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as written in the grid: the form and the TOML value (what the GUI edits).

    ``form`` is ``value`` (fixed), ``list``, or a table form: ``range``, ``log``,
    ``uniform``, ``loguniform``, ``randint``, ``choice``.
    """

    name: str
    form: str
    value: Any


@dataclass(frozen=True)
class JobConfig:
    """One training: everything the trainer needs except the dataset version.

    ``params`` holds every hyperparameter (training and model), defaults filled
    in; ``preprocessing`` is the transform chain as ``{"transform", "params"}``
    steps.  Treat both as read-only: :meth:`to_json` hands out copies.
    """

    model: str
    params: dict[str, Any]
    dataset: str  # as written in the grid: "name" or "name@version"
    preprocessing: Chain
    split: Split
    command: tuple[str, ...] = ()  # the user's own trainer (blueno.grid_command); empty for zoo models
    workdir: str | None = None  # the folder the command runs in

    def to_json(self, dataset_ref: str | None = None) -> dict[str, Any]:
        """The ``jobs.config`` document, with the dataset set to ``dataset_ref`` (``name@version``)."""
        config = {
            "model": self.model,
            "params": dict(self.params),
            "dataset": dataset_ref or self.dataset,
            "preprocessing": copy.deepcopy(list(self.preprocessing)),
            "split": self.split.as_dict(),
        }
        if self.command:  # only then: the hashes of zoo configurations stay as they were
            config |= {"command": list(self.command), "workdir": self.workdir}
        return config

    def config_hash(self, dataset_ref: str) -> str:
        """A stable id of this configuration on that dataset version (key order does not matter)."""
        return hash_config(self.to_json(dataset_ref))

    def __hash__(self) -> int:
        return hash(dumps(self.to_json()))


def hash_config(config: Mapping[str, Any]) -> str:
    """The id of a job's configuration (the ``jobs.config`` JSON): equal content, equal hash."""
    return hashlib.sha256(dumps(config).encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Grid:
    """A validated grid file and its expanded configurations."""

    name: str
    path: Path | None  # the file, when it came from one
    source: str  # how messages name it: the path as given, or "<text>"
    text: str  # the TOML exactly as read (stored with the experiment)
    description: str
    dataset: str  # the first dataset (the only one, unless the grid lists several)
    max_failures: int
    priority: int
    split: Split  # the first split (the only one, unless [split] lists fractions)
    search: Search
    models: tuple[str, ...]
    params: dict[str, ParamSpec]  # [params]: shared by every chosen model
    model_params: dict[str, dict[str, ParamSpec]]  # [models.NAME]: that model only
    preprocessing: tuple[Chain, ...]  # the axis of transform chains
    configs: list[JobConfig] = field(repr=False)
    notes: tuple[str, ...] = ()  # what the user should know about the expansion (fewer draws than asked)
    command: tuple[str, ...] = ()  # a grid of the user's own command (blueno.grid_command)
    workdir: str | None = None  # as written in the grid
    datasets: tuple[str, ...] = ()  # the dataset axis: every dataset the grid names
    splits: tuple[Split, ...] = ()  # the split axis: every (validation, test) pair, one seed

    @property
    def count(self) -> int:
        return len(self.configs)

    def varying_params(self) -> list[str]:
        """Parameters that take more than one value among one model's configurations."""
        values: dict[tuple[str, str], set[str]] = {}
        for config in self.configs:
            for name, value in config.params.items():
                values.setdefault((config.model, name), set()).add(dumps(value))
        varying = {name for (_, name), seen in values.items() if len(seen) > 1}
        written = [*self.params, *(name for specs in self.model_params.values() for name in specs)]
        return [name for name in dict.fromkeys(written) if name in varying]

    def document(self) -> dict[str, Any]:
        """The grid as a TOML document (a dict), normalised: what :func:`to_toml` writes."""
        doc: dict[str, Any] = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        datasets = list(self.datasets) or [self.dataset]
        doc |= {"dataset": datasets if len(datasets) > 1 else datasets[0], "max_failures": self.max_failures,
                "priority": self.priority}
        if self.preprocessing != ((),):
            doc["preprocessing"] = [[_step_document(step) for step in chain] for chain in self.preprocessing]
        doc["split"] = self.split.as_dict()
        for key in ("validation", "test"):
            values = list(dict.fromkeys(getattr(split, key) for split in self.splits or (self.split,)))
            if len(values) > 1:
                doc["split"][key] = values
        doc["search"] = self.search.as_dict()
        doc["params"] = {name: spec.value for name, spec in self.params.items()}
        if self.command:
            doc |= {"command": list(self.command), "workdir": self.workdir or "."}
            return doc
        doc["models"] = {
            model: {name: spec.value for name, spec in self.model_params[model].items()}
            for model in self.models
        }
        return doc


def _step_document(step: Mapping[str, Any]) -> dict[str, Any]:
    """A step as a user writes it: ``params`` only when there are some."""
    document = {"transform": step["transform"]}
    if step["params"]:
        document["params"] = step["params"]
    return document


# -- loading ------------------------------------------------------------------------------------


def load_grid(
    path: str | Path, *, workspace: Workspace | None = None, models: Mapping[str, ModelSpec] | None = None
) -> Grid:
    """Read and expand a grid file (see :func:`parse_grid` for ``workspace`` and ``models``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(str(path), "", "no such grid file", "check the path (grids end in .toml)") from None
    except IsADirectoryError:
        raise GridError(str(path), "", "this is a folder, not a grid file", "name a .toml file") from None
    except UnicodeDecodeError:
        raise GridError(str(path), "", "the file is not UTF-8 text", "save it as UTF-8 TOML") from None
    except OSError as exc:
        raise GridError(str(path), "", f"cannot read it ({exc.strerror})", "check its permissions") from None
    return parse_grid(text, source=str(path), workspace=workspace, models=models, path=path)


def parse_grid(
    text: str,
    source: str = "<text>",
    *,
    workspace: Workspace | None = None,
    models: Mapping[str, ModelSpec] | None = None,
    path: Path | None = None,
) -> Grid:
    """Validate and expand grid TOML; ``source`` names it in messages.

    ``workspace`` adds its own models (``zoo/*.py``) and transforms
    (``transforms/*.py``); ``models`` replaces the zoo (tests use their own).
    """
    zoo = zoo_models(workspace) if models is None else models
    try:
        return _Parser(text, source, path, zoo, workspace.root if workspace else None).grid()
    except RecursionError:
        raise GridError(source, "", "lists or tables are nested too deeply", "flatten them") from None


def zoo_models(workspace: Workspace | None = None) -> dict[str, ModelSpec]:
    """The built-in models and the workspace's own (``zoo/*.py``)."""
    from blueno import zoo

    return zoo.load(workspace)


class _Parser:
    """One pass over a parsed TOML document; ``fail`` locates the key in the text."""

    def __init__(self, text: str, source: str, path: Path | None, models: Mapping[str, ModelSpec],
                 workspace_root: Path | None) -> None:
        self.text, self.source, self.path, self.zoo = text, source, path, models
        self.workspace_root = workspace_root

    def fail(self, key: str, problem: str, fix: str) -> NoReturn:
        raise GridError(self.source, key, problem, fix, line_of(self.text, key))

    def grid(self) -> Grid:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"\(at line (\d+)", str(exc))
            raise GridError(
                self.source, "", f"bad TOML syntax: {exc}",
                "fix that line: text needs quotes, lists are [a, b], tables are [name] or { k = v }",
                int(match.group(1)) if match else None,
            ) from None
        for key in doc:
            if key not in TOP_LEVEL_KEYS:
                self.fail(key, "unknown key", f"{_did_you_mean(key, TOP_LEVEL_KEYS)}the grid keys are "
                          f"{', '.join(TOP_LEVEL_KEYS)}")
        if "command" in doc:
            from blueno.grid_command import command_grid

            return command_grid(self, doc)
        default_name = self.path.stem if self.path else "grid"
        name = self.text_value(doc, "name", default_name, 'name = "my-sweep"')
        description = self.text_value(doc, "description", "", 'description = "what this sweep tests"')
        datasets = self.datasets(doc)
        max_failures = self.integer(doc, "max_failures", DEFAULT_MAX_FAILURES, 1, 100)
        priority = self.integer(doc, "priority", 0, -1_000_000, 1_000_000)
        splits = self.splits(self.table(doc, "split", ("validation", "test", "seed")))
        search = self.search(self.table(doc, "search", ("mode", "samples", "seed")))
        chosen = self.models(doc.get("models", {}))
        shared = {
            param: self.param_spec(f"params.{param}", param, raw, search)
            for param, raw in self.table(doc, "params").items()
        }
        own = {
            model: {
                param: self.param_spec(f"models.{model}.{param}", param, raw, search)
                for param, raw in table.items()
            }
            for model, table in chosen.items()
        }
        self.check_shared(shared, list(chosen))
        chains = self.chains(doc.get("preprocessing"))
        axes = {model: self.axes(self.zoo[model], shared, own[model]) for model in chosen}
        notes: tuple[str, ...] = ()
        data = tuple(itertools.product(datasets, splits))  # the dataset and split axes, together
        if search.mode == "grid":
            configs = self.expand(axes, chains, data)
        else:
            configs = self.sample(axes, chains, data, search)
            if search.samples is not None and len(configs) < search.samples:
                notes = (f"random search: {search.samples:,} samples give {len(configs):,} distinct "
                         "configurations (draws are rounded to 4 significant digits, randint to whole numbers, "
                         "lists are finite; repeats are dropped). Widen the ranges or ask for fewer samples.",)
        return Grid(
            name=name, path=self.path, source=self.source, text=self.text, description=description,
            dataset=datasets[0], max_failures=max_failures, priority=priority, split=splits[0], search=search,
            models=tuple(chosen), params=shared, model_params=own, preprocessing=chains, configs=configs,
            notes=notes,
            datasets=datasets, splits=splits,
        )

    # -- top-level values ---------------------------------------------------------------------

    def text_value(self, doc: Mapping[str, Any], key: str, default: str, example: str) -> str:
        value = doc.get(key, default)
        if not isinstance(value, str):
            self.fail(key, f"{_show(value)} is not a text value", f"write it in quotes: {example}")
        if key == "name" and not value.strip():
            self.fail(key, "the name is empty", f"name the sweep: {example}")
        return value

    def datasets(self, doc: Mapping[str, Any]) -> tuple[str, ...]:
        """The dataset axis: one reference, or a list of them (each one's runs are configurations)."""
        if "dataset" not in doc:
            self.fail("dataset", "the grid names no dataset",
                      'add dataset = "digits" (or "name@version"); `blueno data ls` lists them')
        raw = doc["dataset"]
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            self.fail("dataset", "the list of datasets is empty", 'name at least one: dataset = ["digits"]')
        for value in values:
            if not isinstance(value, str) or not _DATASET_REF.fullmatch(value):
                self.fail("dataset", f"{_show(value)} is not a dataset reference",
                          'write a name of letters, digits, ".", "_" and "-", optionally @version, in quotes: '
                          'dataset = "digits", or a list to vary it: dataset = ["digits", "digits-v2"]')
        return tuple(dict.fromkeys(values))

    def integer(self, doc: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"{_show(value)} is not a whole number from {low} to {high}",
                      f"use a whole number from {low} to {high}, e.g. {key} = {default}")
        return value

    def table(self, doc: Mapping[str, Any], key: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"{_show(value)} is not a table", f"write it as a [{key}] section")
        for sub in value if keys is not None else ():
            if sub not in keys:
                self.fail(f"{key}.{sub}", f"unknown key in [{key}]",
                          f"{_did_you_mean(sub, keys)}[{key}] takes {', '.join(keys)}")
        return value

    def splits(self, table: Mapping[str, Any]) -> tuple[Split, ...]:
        """The split axis: validation and test may each be a fraction or a list of fractions."""
        fractions: dict[str, list[float]] = {}
        for key, default in (("validation", Split.validation), ("test", Split.test)):
            raw = table.get(key, default)
            if isinstance(raw, list) and not raw:
                self.fail(f"split.{key}", "the list is empty", f"give at least one fraction, e.g. {key} = [0.1, 0.2]")
            fractions[key] = []
            for value in raw if isinstance(raw, list) else [raw]:
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                    self.fail(f"split.{key}", f"{_show(value)} is not a fraction from 0 to below 1",
                              f"use a number such as {key} = {default or 0.1} (the share of samples held out), "
                              f"or a list to vary it: {key} = [0.1, 0.2, 0.3]")
                fractions[key].append(float(value))
            fractions[key] = list(dict.fromkeys(fractions[key]))
        if 0 in fractions["validation"]:
            self.fail("split.validation", "no validation set: the best epoch could not be chosen",
                      "hold out a share of the samples, e.g. validation = 0.2")
        if max(fractions["validation"]) + max(fractions["test"]) >= 1:
            self.fail("split", "validation and test together leave no samples to train on",
                      "make validation + test less than 1, e.g. validation = 0.2, test = 0.1")
        seed = table.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            self.fail("split.seed", f"{_show(seed)} is not a seed", "use a whole number >= 0, e.g. seed = 0")
        return tuple(Split(v, t, seed) for v in fractions["validation"] for t in fractions["test"])

    def search(self, table: Mapping[str, Any]) -> Search:
        mode = table.get("mode", "grid")
        if mode not in SEARCH_MODES:
            self.fail("search.mode", f"{_show(mode)} is not a search mode",
                      '"grid" tries every combination, "random" draws samples: mode = "random"')
        samples = table.get("samples")
        if mode == "grid" and samples is not None:
            self.fail("search.samples", "samples applies to random search only",
                      'set mode = "random" to draw samples, or remove samples to try every combination')
        if mode == "random":
            if samples is None:
                self.fail("search.samples", "a random search needs the number of samples",
                          "add samples = 20 (how many configurations to draw) under [search]")
            if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_CONFIGS:
                self.fail("search.samples", f"{_show(samples)} is not a sample count",
                          f"use a whole number from 1 to {MAX_CONFIGS:,}, e.g. samples = 20")
        seed = table.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            self.fail("search.seed", f"{_show(seed)} is not a seed", "use a whole number, e.g. seed = 1")
        return Search(mode, samples, seed)

    def models(self, raw: Any) -> dict[str, dict[str, Any]]:
        """The chosen models in file order, each with its own parameter table."""
        if isinstance(raw, list):
            for name in raw:
                if not isinstance(name, str):
                    self.fail("models", f"{_show(name)} is not a model name", 'quote the names: ["mlp"]')
            raw = {name: {} for name in raw}
        if not isinstance(raw, dict):
            self.fail("models", f"{_show(raw)} is not a list of models",
                      'write models = ["mlp", "cnn2d"], or a [models.NAME] table per model')
        known = ", ".join(sorted(self.zoo)) or "none (no model is registered)"
        if not raw:
            self.fail("models", "no model is chosen, so the grid expands to zero configurations",
                      f"add a [models.NAME] table for at least one model; the zoo has: {known}")
        for name, table in raw.items():
            if name not in self.zoo:
                self.fail(f"models.{name}", f"unknown model {name!r}",
                          f"{_did_you_mean(name, self.zoo)}the zoo has: {known}")
            if not isinstance(table, dict):
                self.fail(f"models.{name}", f"{_show(table)} is not a table of {name}'s parameters",
                          f"write its parameters under a [models.{name}] section")
        return raw

    # -- parameters ---------------------------------------------------------------------------

    def param_spec(self, key: str, name: str, raw: Any, search: Search) -> ParamSpec:
        """The value form of one parameter, checked for shape (types come later, per model)."""
        if isinstance(raw, list):
            if not raw:
                self.fail(key, "the list is empty", "give at least one value, or remove it for the default")
            return ParamSpec(name, "list", raw)
        if not isinstance(raw, dict):
            return ParamSpec(name, "value", raw)
        forms = [form for form in raw if form in TABLE_FORMS]
        if len(forms) != 1:
            self.fail(key, f"{_show(raw)} is not a value form",
                      f"{_did_you_mean(next(iter(raw), ''), TABLE_FORMS)}write one of {_FORMS_HELP}")
        form = forms[0]
        for extra in raw:
            if extra != form and extra not in TABLE_FORMS[form]:
                allowed = " or ".join(TABLE_FORMS[form]) or "nothing else"
                self.fail(key, f"{extra!r} does not go with {form}", f"{form} takes {allowed}")
        if form in RANDOM_FORMS and search.mode == "grid":
            self.fail(key, f"{form} is a random distribution, but this is a grid search",
                      'add [search] mode = "random" and samples = N, or give a list or a range instead')
        if form == "choice":
            if not isinstance(raw["choice"], list) or not raw["choice"]:
                self.fail(key, "choice needs a non-empty list", "write { choice = [a, b, c] }")
            return ParamSpec(name, form, {"choice": raw["choice"]})
        lo, hi = self.bounds(key, form, raw[form])
        if form in ("log", "loguniform") and lo <= 0:
            self.fail(key, f"a {form} range must stay above 0", f"start above 0, e.g. {form} = [1e-4, 1e-1]")
        value: dict[str, Any] = {form: raw[form]}
        if form == "range":
            if ("num" in raw) == ("step" in raw):
                self.fail(key, "a range needs either num or step",
                          "add num = N (N evenly spaced values) or step = S, not both")
            if "step" in raw:
                step = _finite(raw["step"])
                if step is None or step <= 0:
                    self.fail(key, f"step = {_show(raw['step'])} is not above 0", "use e.g. step = 0.1")
                if (hi - lo) / step + 1 > MAX_CONFIGS:
                    self.fail(key, f"step = {step} gives over {MAX_CONFIGS:,} values", "use a larger step")
                value["step"] = step
        if form in ("range", "log") and "num" in raw:
            num = raw["num"]
            if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_CONFIGS:
                self.fail(key, f"num = {_show(num)} is not a count of values",
                          f"use a whole number from 1 to {MAX_CONFIGS:,}, e.g. num = 3")
            value["num"] = num
        elif form == "log":
            self.fail(key, "a log range needs num", "add num = N, e.g. { log = [1e-4, 1e-2], num = 3 }")
        return ParamSpec(name, form, value)

    def bounds(self, key: str, form: str, raw: Any) -> tuple[float, float]:
        example = "[1, 10]" if form == "randint" else "[0.1, 0.5]"
        lo, hi = (_finite(b) for b in raw) if isinstance(raw, list) and len(raw) == 2 else (None, None)
        if lo is None or hi is None:
            self.fail(key, f"{form} = {_show(raw)} is not two numbers [lo, hi]", f"write {form} = {example}")
        if form == "randint" and not all(isinstance(b, int) for b in raw):
            self.fail(key, f"randint = {_show(raw)} needs whole numbers", "write e.g. randint = [1, 10]")
        if lo > hi:
            self.fail(key, f"{form} = {_show(raw)} runs backwards (lo > hi)",
                      f"write the smaller bound first: {form} = [{raw[1]}, {raw[0]}]")
        return lo, hi

    def check_shared(self, shared: Mapping[str, ParamSpec], chosen: list[str]) -> None:
        """[params] holds training parameters and parameters every chosen model declares."""
        for name in shared:
            if name in _TRAINING:
                continue
            having = [model for model in chosen if self.zoo[model].param(name) is not None]
            if having and len(having) < len(chosen):
                lacking = ", ".join(m for m in chosen if m not in having)
                self.fail(f"params.{name}",
                          f"{name!r} is a parameter of {', '.join(having)} but not of {lacking}",
                          "move it to " + " and ".join(f"[models.{model}]" for model in having))
            if not having:
                common = [hp.name for hp in self.zoo[chosen[0]].hyperparams
                          if all(self.zoo[m].param(hp.name) for m in chosen)]
                takes = f"the training parameters ({', '.join(_TRAINING)})"
                if common:
                    takes += f" and those every chosen model has ({', '.join(common)})"
                self.fail(f"params.{name}", "unknown parameter",
                          f"{_did_you_mean(name, [*_TRAINING, *common])}[params] takes {takes}; "
                          "a model's own parameters go under [models.NAME]")

    def axes(self, spec: ModelSpec, shared: Mapping[str, ParamSpec],
             own: Mapping[str, ParamSpec]) -> dict[str, _Axis]:
        """Each written parameter of this model as its values (or a sampler), typed and checked."""
        result: dict[str, _Axis] = {}
        for prefix, specs in (("params", shared), (f"models.{spec.name}", own)):
            for name, param in specs.items():
                key = f"{prefix}.{name}"
                hp = _TRAINING.get(name) or spec.param(name)
                if hp is None:
                    own_names = [h.name for h in spec.hyperparams]
                    self.fail(key, f"{spec.name} has no parameter {name!r}",
                              f"{_did_you_mean(name, [*own_names, *_TRAINING])}{spec.name}'s parameters are "
                              f"{', '.join(own_names) or 'none'}; "
                              f"training parameters: {', '.join(_TRAINING)}")
                result[name] = self.axis(key, param, hp, spec.name if prefix == "params" else None)
        return result

    def axis(self, key: str, param: ParamSpec, hp: Hyperparam, model: str | None) -> _Axis:
        def check(value: Any) -> Any:
            try:
                return hp.check(value)
            except ValueError as exc:
                problem = str(exc)
            except ArithmeticError:  # an integer too large for a float
                problem = f"{_show(value)} is too large"
            if model and hp.name not in _TRAINING:
                problem += f" (as a parameter of {model})"
            self.fail(key, problem, _fix_for(hp))

        form, value = param.form, param.value
        if form == "value":
            return _Axis(values=(check(value),))
        if form in ("list", "choice"):
            return _Axis(values=_unique(check(v) for v in (value if form == "list" else value["choice"])))
        if hp.type not in (int, float):
            example = list(hp.choices[:2]) if hp.choices else [True, False] if hp.type is bool else ["a", "b"]
            self.fail(key, f"{form} needs a number parameter, but {hp.name} is {hp.describe()}",
                      f"list the values instead, e.g. {hp.name} = {toml_value(example)}")
        lo, hi = (float(b) for b in value[form])
        if form in ("range", "log"):
            points = _points(form, lo, hi, value.get("num"), value.get("step"))
            if hp.type is int:
                points = [round(p) for p in points]
            return _Axis(values=_unique(check(p) for p in points))
        for bound in value[form]:
            check(bound)
        return _Axis(sampler=_sampler(form, lo, hi, hp.type is int), check=check)

    # -- preprocessing ------------------------------------------------------------------------

    def chains(self, raw: Any) -> tuple[Chain, ...]:
        """The preprocessing axis: a list of chains (one chain may be written alone)."""
        if raw is None:
            return ((),)
        example = 'preprocessing = [[], [{ transform = "normalize" }]]'
        if not isinstance(raw, list) or not raw:
            self.fail("preprocessing", f"{_show(raw)} is not a list of transform chains",
                      f"write {example}, or remove it to train on the data as it is")
        if all(isinstance(step, dict) for step in raw):
            raw = [raw]
        chains: dict[str, Chain] = {}
        for number, chain in enumerate(raw, 1):
            if not isinstance(chain, list):
                self.fail("preprocessing", f"chain {number}, {_show(chain)}, is not a list of steps",
                          f"write each chain as a list of steps ([] for none): {example}")
            steps = tuple(self.step(number, index, step) for index, step in enumerate(chain, 1))
            chains.setdefault(dumps(steps), steps)
        return tuple(chains.values())

    def step(self, chain: int, index: int, raw: Any) -> dict[str, Any]:
        where = f"chain {chain}, step {index}"
        example = '{ transform = "clip", params = { low = 0, high = 1 } }'
        if not isinstance(raw, dict) or not isinstance(raw.get("transform"), str) or not raw["transform"]:
            self.fail("preprocessing", f"{where}, {_show(raw)}, names no transform", f"write it as {example}")
        for key in raw:
            if key not in ("transform", "params"):
                self.fail("preprocessing", f"{where}: unknown key {key!r}",
                          f"a step has transform and params; its settings go in params: {example}")
        params = raw.get("params", {})
        if not isinstance(params, dict) or not _is_plain(params):
            self.fail("preprocessing", f"{where}: params = {_show(params)} is not a table of plain values",
                      f"use text, numbers, true/false and lists in params: {example}")
        from etl import TransformError, check_step  # numpy: only for grids that preprocess

        try:
            problem = check_step(raw["transform"], params, self.workspace_root)
        except TransformError as exc:  # a workspace transforms/*.py that does not load
            problem = str(exc)
        if problem:
            self.fail("preprocessing", f"{where}: {problem}", "fix the step (docs/datasets.md lists them)")
        return {"transform": raw["transform"], "params": params}

    # -- expansion ----------------------------------------------------------------------------

    def expand(self, axes: _Axes, chains: Sequence[Chain], data: Sequence[tuple[str, Split]]) -> list[JobConfig]:
        """Every combination: dataset and split, then model by model, the last parameter varying fastest."""
        total = _space(axes, chains) * len(data)
        if total > MAX_CONFIGS:
            self.fail("params", f"the grid expands to {total:,} configurations, more than {MAX_CONFIGS:,}",
                      'narrow the lists, or sample it: [search] mode = "random", samples = 200')
        configs: dict[str, JobConfig] = {}
        for dataset, split in data:
            for model, model_axes in axes.items():
                base = _defaults(self.zoo[model])
                names = list(model_axes)
                for chain in chains:
                    for combo in itertools.product(*(model_axes[name].values for name in names)):
                        params = drop_defaults(base | dict(zip(names, combo, strict=True)))
                        config = JobConfig(model, params, dataset, chain, split)
                        configs.setdefault(dumps(config.to_json()), config)
        return list(configs.values())

    def sample(
        self, axes: _Axes, chains: Sequence[Chain], data: Sequence[tuple[str, Split]], search: Search
    ) -> list[JobConfig]:
        """``samples`` distinct draws (fewer when the space is smaller), reproducible by seed."""
        assert search.samples is not None
        wanted = min(search.samples, _space(axes, chains) * len(data))
        rng = random.Random(search.seed)
        models = list(axes)
        bases = {model: _defaults(self.zoo[model]) for model in models}
        configs: dict[Any, JobConfig] = {}
        stale = 0  # draws in a row that found nothing new: the rounded space is exhausted long before the cap
        for _ in range(search.samples * _DRAWS_PER_SAMPLE):
            model = rng.choice(models)
            chain_index = rng.choice(range(len(chains)))  # the same draw as rng.choice(chains)
            data_index = 0 if len(data) == 1 else rng.choice(range(len(data)))  # one dataset: draws as before
            drawn = {name: axis.draw(rng) for name, axis in axes[model].items()}
            key: Any = (model, chain_index, data_index, tuple(drawn.items()))
            try:
                hash(key)
            except TypeError:  # a list value: fall back to the canonical JSON
                key = dumps([model, chain_index, data_index, drawn])
            if key in configs:
                stale += 1
                if stale > max(_STALE_DRAWS, len(configs)):
                    break
                continue
            stale = 0
            dataset, split = data[data_index]
            configs[key] = JobConfig(model, drop_defaults(bases[model] | drawn), dataset, chains[chain_index], split)
            if len(configs) == wanted:
                break
        return list(configs.values())


_Axes = Mapping[str, Mapping[str, "_Axis"]]  # model -> parameter -> its values or sampler


@dataclass(frozen=True)
class _Axis:
    """A parameter's values (grid search, or a uniform choice) or a random sampler."""

    values: tuple[Any, ...] = ()
    sampler: Callable[[random.Random], float] | None = None
    check: Callable[[Any], Any] | None = None

    @property
    def size(self) -> float:
        return math.inf if self.sampler else len(self.values)

    def draw(self, rng: random.Random) -> Any:
        if self.sampler is None:
            return self.values[0] if len(self.values) == 1 else rng.choice(self.values)
        assert self.check is not None
        return self.check(self.sampler(rng))


def _points(form: str, lo: float, hi: float, num: int | None, step: float | None) -> list[float]:
    """The values of a linear or log range, tidied so 0.1 + 0.2 prints as 0.3."""
    if step is not None:
        count = math.floor((hi - lo) / step + 1e-9) + 1
        points = [lo + i * step for i in range(count)]
    else:
        assert num is not None
        if form == "log":
            lo, hi = math.log(lo), math.log(hi)
        points = [lo + (hi - lo) * i / (num - 1) for i in range(num)] if num > 1 else [lo]
        if form == "log":
            points = [math.exp(p) for p in points]
    return [float(f"{p:.12g}") for p in points]


def _sampler(form: str, lo: float, hi: float, whole: bool) -> Callable[[random.Random], float]:
    """Draws rounded to 4 significant digits (readable tables, stable hashes), kept in [lo, hi]."""

    def draw(rng: random.Random) -> float:
        if form == "randint":
            return rng.randint(int(lo), int(hi))
        if form == "loguniform":
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            value = rng.uniform(lo, hi)
        value = round(value) if whole else float(f"{value:.4g}")
        return min(max(value, lo), hi)

    return draw


def _space(axes: _Axes, chains: Sequence[Chain]) -> float:
    """How many distinct configurations there are (infinite with a random distribution)."""
    return len(chains) * sum(math.prod(axis.size for axis in model.values()) for model in axes.values())


def _defaults(spec: ModelSpec) -> dict[str, Any]:
    return {hp.name: hp.default for hp in (*TRAINING_PARAMS, *spec.hyperparams)}


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    """In order, without repeats (compared as canonical JSON: ``true`` and ``1`` stay apart)."""
    return tuple({dumps(v): v for v in values}.values())


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a (representable, finite) number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _is_plain(value: Any) -> bool:
    """Whether a value survives canonical JSON unchanged (no dates, no NaN, no huge integers)."""
    if isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(v) for v in value.values())
    return False


def _fix_for(hp: Hyperparam) -> str:
    if hp.choices is not None:
        return "use " + hp.describe()
    if hp.type is bool:
        return "use true or false"
    if hp.type is str:
        return 'use text in quotes, e.g. "value"'
    kind = "a whole number" if hp.type is int else "a value"
    if hp.low is not None and hp.high is not None:
        return f"use {kind} from {hp.low:g} to {hp.high:g}"
    if hp.low is not None:
        return f"use {kind} >= {hp.low:g}"
    if hp.high is not None:
        return f"use {kind} <= {hp.high:g}"
    return f"use {kind}"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _show(value: Any) -> str:
    """A value as the user wrote it (TOML), shortened for a message."""
    try:
        text = toml_value(value)
    except TypeError:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_data(
    grid: Grid, describe: Callable[[str], tuple[tuple[int, ...], int] | None],
    models: Mapping[str, ModelSpec] | None = None,
) -> None:
    """Refuse, before anything runs, a configuration whose model cannot take its dataset's samples.

    ``describe(dataset)`` gives (sample shape, number of classes), or None for a
    dataset not in the workspace yet (it is checked when it is).  Configurations
    with a preprocessing chain are left to the trainer: a chain may reshape the samples.
    Keras-free: the CLI and the GUI form ask it.
    """
    from blueno import zoo
    from blueno.zoo.knobs import knob_problem

    zoo_specs = zoo_models() if models is None else models
    shapes = {name: describe(name) for name in (grid.datasets or (grid.dataset,))}
    seen: set[str] = set()
    for config in grid.configs:
        described = shapes.get(config.dataset)
        if described is None or config.preprocessing:
            continue
        spec = zoo_specs[config.model]
        params = zoo.resolve_params(spec, config.params)
        sample_shape, n_classes = described
        problem = zoo.fit_problem(spec, params, sample_shape, config.dataset) or knob_problem(
            spec, params, sample_shape, config.dataset, n_classes)
        if problem and problem not in seen:
            seen.add(problem)
            raise GridError(grid.source, f"models.{config.model}", problem,
                            "change the model or its parameters, or train it on other data",
                            line_of(grid.text, f"models.{config.model}") or line_of(grid.text, "models"))


def to_toml(spec: Grid | Mapping[str, Any]) -> str:
    """Write a grid, or a grid document as the GUI form builds it, as TOML that parses back to it."""
    return write_toml(spec.document() if isinstance(spec, Grid) else spec)
