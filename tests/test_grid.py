"""The grid file: value forms, per-model parameters, random search, hashes, errors, TOML round trip."""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blueno import BluenoError
from blueno import grid as grid_module
from blueno.grid import MAX_CONFIGS, Grid, GridError, load_grid, parse_grid, to_toml
from blueno.zoo.base import CORE_TRAINING_PARAMS, TRAINING_PARAMS, Hyperparam, ModelSpec

# Tiny models of our own: the grid never trains, so build is never called.
ZOO = {
    spec.name: spec
    for spec in (
        ModelSpec("dense", "test model", (
            Hyperparam("units", int, 16, low=1, high=1024),
            Hyperparam("dropout", float, 0.0, low=0.0, high=0.9),
            Hyperparam("activation", str, "relu", choices=("relu", "tanh")),
        ), build=lambda shape, n_classes, params: None),
        ModelSpec("conv", "test model", (
            Hyperparam("filters", int, 8, low=1, high=256),
            Hyperparam("dropout", float, 0.1, low=0.0, high=0.9),
            Hyperparam("pool", bool, True),
            Hyperparam("tag", str, "plain"),
        ), build=lambda shape, n_classes, params: None, input_kind="image"),
    )
}
TRAINING_NAMES = [hp.name for hp in TRAINING_PARAMS]
EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"


def make(text: str) -> Grid:
    return parse_grid(textwrap.dedent(text), source="test.toml", models=ZOO)


def failure(text: str) -> GridError:
    with pytest.raises(GridError) as info:
        make(text)
    return info.value


def values(grid: Grid, name: str) -> list:
    return [config.params.get(name) for config in grid.configs]


# -- value forms ------------------------------------------------------------------------------


def test_that_a_fixed_value_gives_one_configuration_with_every_default_filled_in() -> None:
    grid = make('dataset = "digits"\n[models.dense]\nunits = 32\n')
    (config,) = grid.configs
    assert config.model == "dense"
    # The knobs (blueno.zoo.knobs) at their defaults are left out: older grids keep their hashes.
    assert set(config.params) == {hp.name for hp in CORE_TRAINING_PARAMS} | {"units", "dropout", "activation"}
    assert config.params["units"] == 32
    assert config.params["learning_rate"] == 1e-3  # the training default
    assert config.preprocessing == ()
    assert config.split.as_dict() == {"validation": 0.2, "test": 0.0, "seed": 0}


def test_that_lists_expand_to_their_cartesian_product_with_the_last_key_varying_fastest() -> None:
    grid = make("""
        dataset = "digits"
        [params]
        batch_size = [32, 64]
        [models.dense]
        units = [8, 16, 32]
    """)
    pairs = [(c.params["batch_size"], c.params["units"]) for c in grid.configs]
    assert pairs == [(32, 8), (32, 16), (32, 32), (64, 8), (64, 16), (64, 32)]


def test_that_a_linear_range_with_num_gives_evenly_spaced_tidy_values() -> None:
    grid = make('dataset = "d"\n[models.dense]\ndropout = { range = [0.0, 0.4], num = 5 }\n')
    assert values(grid, "dropout") == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_that_a_linear_range_with_step_includes_the_upper_bound_and_keeps_ints() -> None:
    grid = make('dataset = "d"\n[models.dense]\nunits = { range = [8, 32], step = 8 }\n')
    assert values(grid, "units") == [8, 16, 24, 32]
    assert all(type(v) is int for v in values(grid, "units"))


def test_that_a_log_range_is_geometric_and_rounds_for_int_parameters() -> None:
    grid = make("""
        dataset = "d"
        [params]
        learning_rate = { log = [1e-4, 1e-2], num = 3 }
        batch_size = { log = [16, 256], num = 5 }
        [models.dense]
    """)
    assert sorted(set(values(grid, "learning_rate"))) == [1e-4, 1e-3, 1e-2]
    assert sorted(set(values(grid, "batch_size"))) == [16, 32, 64, 128, 256]


def test_that_ints_stay_ints_and_float_parameters_become_floats() -> None:
    grid = make('dataset = "d"\n[params]\nlearning_rate = 1\nbatch_size = 64.0\n[models.dense]\n')
    (config,) = grid.configs
    assert type(config.params["learning_rate"]) is float
    assert type(config.params["batch_size"]) is int


def test_that_repeated_values_are_tried_once() -> None:
    grid = make("""
        dataset = "d"
        [models.dense]
        units = [32, 32, 32.0]
        [models.conv]
        filters = { range = [1, 2], num = 5 }   # 1, 1.25, 1.5, 1.75, 2 rounded
    """)
    assert [(c.model, c.params.get("units"), c.params.get("filters")) for c in grid.configs] == [
        ("dense", 32, None), ("conv", None, 1), ("conv", None, 2)]


# -- models -----------------------------------------------------------------------------------


def test_that_per_model_parameters_apply_only_to_their_model() -> None:
    grid = make("""
        dataset = "digits"
        [params]
        epochs = 5
        [models.dense]
        units = [8, 16]
        [models.conv]
        filters = [4, 8, 16]
    """)
    dense = [c for c in grid.configs if c.model == "dense"]
    conv = [c for c in grid.configs if c.model == "conv"]
    assert len(dense) == 2 and len(conv) == 3
    assert all("filters" not in c.params for c in dense)
    assert all("units" not in c.params for c in conv)
    assert {c.params["epochs"] for c in grid.configs} == {5}
    assert grid.models == ("dense", "conv")


def test_that_a_model_table_overrides_a_shared_value_for_that_model_only() -> None:
    grid = make('dataset = "d"\n[params]\nepochs = 5\n[models.dense]\n[models.conv]\nepochs = 10\n')
    assert {c.model: c.params["epochs"] for c in grid.configs} == {"dense": 5, "conv": 10}


def test_that_a_parameter_every_chosen_model_has_can_be_shared() -> None:
    grid = make('dataset = "d"\nmodels = ["dense", "conv"]\n[params]\ndropout = [0.0, 0.5]\n')
    assert len(grid.configs) == 4
    assert values(grid, "dropout") == [0.0, 0.5, 0.0, 0.5]


def test_that_a_list_of_model_names_equals_empty_model_tables() -> None:
    listed = make('dataset = "d"\nmodels = ["dense", "conv"]\n')
    tabled = make('dataset = "d"\n[models.dense]\n[models.conv]\n')
    assert listed.configs == tabled.configs


def test_that_varying_params_name_what_the_grid_explores() -> None:
    grid = make("""
        dataset = "d"
        [params]
        epochs = 3
        learning_rate = [0.1, 0.01]
        [models.dense]
        units = [8, 16]
        [models.conv]
        filters = 4
    """)
    assert grid.varying_params() == ["learning_rate", "units"]


# -- random search ----------------------------------------------------------------------------

RANDOM = """
    dataset = "d"
    [search]
    mode = "random"
    samples = 25
    seed = {seed}
    [params]
    learning_rate = {{ loguniform = [1e-4, 1e-1] }}
    batch_size = [16, 32, 64]
    epochs = {{ randint = [2, 6] }}
    [models.dense]
    units = {{ uniform = [8, 128] }}
    activation = {{ choice = ["relu", "tanh"] }}
    [models.conv]
    filters = {{ range = [4, 16], step = 4 }}
"""


def test_that_random_search_is_reproducible_by_seed_and_stays_in_bounds() -> None:
    first, again, other = (make(RANDOM.format(seed=s)) for s in (1, 1, 2))
    assert first.configs == again.configs
    assert first.configs != other.configs
    assert len(first.configs) == 25
    for config in first.configs:
        p = config.params
        assert 1e-4 <= p["learning_rate"] <= 1e-1 and type(p["learning_rate"]) is float
        assert p["batch_size"] in (16, 32, 64)
        assert type(p["epochs"]) is int and 2 <= p["epochs"] <= 6
        if config.model == "dense":
            assert type(p["units"]) is int and 8 <= p["units"] <= 128
            assert p["activation"] in ("relu", "tanh")
        else:
            assert p["filters"] in (4, 8, 12, 16)
    assert {c.model for c in first.configs} == {"dense", "conv"}


def test_that_random_search_of_a_small_space_returns_each_configuration_once() -> None:
    grid = make('dataset = "d"\n[search]\nmode = "random"\nsamples = 50\n[models.dense]\nunits = [1, 2, 3]\n')
    assert sorted(values(grid, "units")) == [1, 2, 3]


# -- preprocessing ----------------------------------------------------------------------------


def test_that_a_preprocessing_axis_multiplies_the_configurations() -> None:
    grid = make("""
        dataset = "d"
        preprocessing = [
            [],
            [{ transform = "normalize" }, { transform = "clip", params = { low = 0, high = 1 } }],
        ]
        [models.dense]
        units = [8, 16]
    """)
    assert len(grid.configs) == 4
    chains = [c.to_json("d@1")["preprocessing"] for c in grid.configs]
    assert chains[0] == [] and chains[2] == [
        {"transform": "normalize", "params": {}},
        {"transform": "clip", "params": {"low": 0, "high": 1}},
    ]


def test_that_a_single_chain_may_be_written_alone() -> None:
    alone = make('dataset = "d"\nmodels = ["dense"]\npreprocessing = [{ transform = "normalize" }]\n')
    nested = make('dataset = "d"\nmodels = ["dense"]\npreprocessing = [[{ transform = "normalize" }]]\n')
    assert alone.configs == nested.configs and len(alone.configs) == 1


def test_that_steps_are_checked_against_the_etl_registry() -> None:
    error = failure('dataset = "d"\nmodels = ["dense"]\npreprocessing = [[{ transform = "normalise" }]]\n')
    assert error.key == "preprocessing" and "unknown transform 'normalise'" in str(error)
    assert error.line == 3
    error = failure('dataset = "d"\nmodels = ["dense"]\n'
                    'preprocessing = [[{ transform = "clip", params = { low = 0 } }]]\n')
    assert "chain 1, step 1: clip needs the parameter 'high'" in str(error)


# -- the jobs.config document and its hash ----------------------------------------------------


def test_that_to_json_has_exactly_the_jobs_config_shape() -> None:
    (config,) = make('dataset = "digits"\n[split]\nvalidation = 0.25\ntest = 0.1\nseed = 7\n[models.conv]\n'
                     ).configs
    document = config.to_json("digits@abc123")
    assert set(document) == {"model", "params", "dataset", "preprocessing", "split"}
    assert document["dataset"] == "digits@abc123"
    assert document["split"] == {"validation": 0.25, "test": 0.1, "seed": 7}
    assert json.loads(json.dumps(document)) == document
    document["params"]["filters"] = 99  # a copy: the configuration itself is unchanged
    assert config.params["filters"] == 8


def test_that_the_hash_is_the_sha256_of_the_canonical_config_and_ignores_key_order() -> None:
    one = make('dataset = "d"\n[params]\nepochs = 3\nseed = 1\n[models.dense]\nunits = 4\n').configs[0]
    two = make('dataset = "d"\n[models.dense]\nunits = 4\nseed = 1\n[params]\nepochs = 3\n').configs[0]
    canonical = json.dumps(one.to_json("d@v1"), sort_keys=True, separators=(",", ":"))
    assert one.config_hash("d@v1") == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert one.config_hash("d@v1") == two.config_hash("d@v1")
    assert one.config_hash("d@v1") != one.config_hash("d@v2")
    assert len({one, two}) == 1


def test_that_configurations_differing_in_any_part_hash_differently() -> None:
    grid = make('dataset = "d"\npreprocessing = [[], [{ transform = "normalize" }]]\n'
                '[params]\nepochs = [1, 2]\n[models.dense]\n[models.conv]\n')
    hashes = {config.config_hash("d@v") for config in grid.configs}
    assert len(hashes) == len(grid.configs) == 8


# -- writing TOML -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    RANDOM.format(seed=3),
    """
    name = "odd \\"name\\"\\twith\\u007f control"
    description = "ünïcode and a \\\\ backslash"
    dataset = "digits@abc"
    max_failures = 1
    priority = -5
    preprocessing = [[], [{ transform = "resize", params = { height = 4, width = 4 } }]]
    [split]
    validation = 0.3
    [params]
    learning_rate = { log = [1e-05, 0.1], num = 4 }
    augment_flip = [true, false]
    [models.conv]
    filters = { range = [2, 8], step = 3 }
    pool = false
    """,
])
def test_that_a_grid_written_back_as_toml_parses_to_the_same_grid(text: str) -> None:
    grid = make(text)
    again = parse_grid(to_toml(grid), models=ZOO)
    assert again.configs == grid.configs
    assert (again.name, again.description, again.dataset, again.max_failures, again.priority) == (
        grid.name, grid.description, grid.dataset, grid.max_failures, grid.priority)
    assert again.document() == grid.document()


def test_that_a_document_built_like_the_gui_form_writes_a_loadable_grid() -> None:
    document = {
        "name": "from-the-form", "dataset": "digits",
        "params": {"learning_rate": {"log": [1e-4, 1e-2], "num": 3}, "epochs": 5},
        "preprocessing": [[], [{"transform": "clip", "params": {"low": 0, "high": 16, "rescale": True}}]],
        "models": {"dense": {"units": [8, 16]}, "conv": {}},
    }
    grid = parse_grid(to_toml(document), models=ZOO)
    assert grid.count == (3 * 2 + 3) * 2
    assert tomllib.loads(to_toml(document)) == document


# -- errors -----------------------------------------------------------------------------------

D = 'dataset = "d"\n'  # line 1 of most malformed grids
DM = D + 'models = ["dense"]\n'  # lines 1 and 2
R = D + '[search]\nmode = "random"\nsamples = 3\n'  # lines 1 to 4
HUGE = "1" + "0" * 400
MALFORMED = [
    # (grid, key, line, words the message must contain)
    (D + "models = [dense]\n", "", 2, ["bad TOML syntax", "fix that line"]),
    ('datset = "d"\n', "datset", 1, ["unknown key", "did you mean 'dataset'?"]),
    ('models = ["dense"]\n', "dataset", None, ["names no dataset", 'dataset = "digits"']),
    ('dataset = "my data"\nmodels = ["dense"]\n', "dataset", 1, ["not a dataset reference"]),
    (D + "[models.dens]\n", "models.dens", 2, ["unknown model", "did you mean 'dense'?", "conv, dense"]),
    (D + "[models.dense]\nunit = 3\n", "models.dense.unit", 3,
     ["has no parameter 'unit'", "did you mean 'units'?", "units, dropout, activation"]),
    (D + "[params]\nlearning_rate = 5.0\n[models.dense]\n", "params.learning_rate", 3,
     ["5.0 is above the maximum 1", "use a value from 1e-07 to 1"]),
    (D + '[models.dense]\nactivation = "sigmoid"\n', "models.dense.activation", 3,
     ["'sigmoid' is not one of 'relu', 'tanh'", "use one of 'relu', 'tanh'"]),
    (D + '[models.dense]\nunits = "wide"\n', "models.dense.units", 3,
     ["is not a whole number", "use a whole number from 1 to 1024"]),
    (D + "[models.dense]\nunits = []\n", "models.dense.units", 3, ["the list is empty"]),
    (D + "[models.dense]\ndropout = { range = [0.5, 0.1], num = 3 }\n", "models.dense.dropout", 3,
     ["runs backwards", "range = [0.1, 0.5]"]),
    (D + "[models.dense]\ndropout = { range = [0.1, 0.5], num = 0 }\n", "models.dense.dropout", 3,
     ["num = 0 is not a count", "num = 3"]),
    (D + "[models.dense]\ndropout = { range = [0.1, 0.5] }\n", "models.dense.dropout", 3,
     ["needs either num or step"]),
    (DM + "[params]\nlearning_rate = { log = [0, 1], num = 3 }\n", "params.learning_rate", 4,
     ["must stay above 0"]),
    (D + "[models.dense]\nunits = { uniform = [1, 9] }\n", "models.dense.units", 3,
     ["random distribution", 'mode = "random"']),
    (D + "[models.dense]\nunits = { ragne = [1, 9], num = 2 }\n", "models.dense.units", 3,
     ["not a value form", "did you mean 'range'?"]),
    (D + "[models.dense]\nactivation = { range = [1, 9], num = 2 }\n", "models.dense.activation", 3,
     ["needs a number parameter", "activation = ["]),
    (D + '[search]\nmode = "random"\n[models.dense]\n', "search.samples", 2,
     ["needs the number of samples", "samples = 20"]),
    (D + "[search]\nsamples = 5\n[models.dense]\n", "search.samples", 3, ["random search only"]),
    (D + '[search]\nmode = "bayes"\n', "search.mode", 3, ["not a search mode"]),
    (D, "models", None, ["zero configurations", "the zoo has: conv, dense"]),
    (D + "[models]\n", "models", 2, ["zero configurations"]),
    (D + 'models = ["dense", "conv"]\n[params]\nunits = 4\n', "params.units", 4,
     ["parameter of dense but not of conv", "move it to [models.dense]"]),
    (DM + "[params]\nfoo = 4\n", "params.foo", 4, ["unknown parameter", "[models.NAME]"]),
    (DM + "[split]\nvalidation = 0.6\ntest = 0.5\n", "split", 3, ["leave no samples"]),
    (DM + "[split]\nvalidation = 2\n", "split.validation", 4, ["not a fraction"]),
    (DM + "max_failures = 0\n", "max_failures", 3, ["from 1 to 100"]),
    (DM + "preprocessing = [[{ params = {} }]]\n", "preprocessing", 3,
     ["chain 1, step 1", "names no transform"]),
    (DM + "preprocessing = []\n", "preprocessing", 3, ["not a list of transform chains"]),
    (DM + 'preprocessing = [[{ transform = "clip", low = 3 }]]\n', "preprocessing", 3,
     ["unknown key 'low'", "params"]),
    (D + "[params]\nseed = { range = [1, 100000], step = 1 }\nepochs = [1, 2]\n[models.dense]\n", "params", 2,
     ["200,000 configurations", 'mode = "random"']),
    ('name = ""\n' + DM, "name", 1, ["the name is empty"]),
    ("name = 1979-05-27\n" + DM, "name", 1, ["1979-05-27 is not a text value"]),
    (DM + "priority = 1.5\n", "priority", 3, ["not a whole number"]),
    (DM + "split = 3\n", "split", 3, ["is not a table", "[split] section"]),
    (DM + "[split]\nvalid = 0.1\n", "split.valid", 4,
     ["unknown key in [split]", "did you mean 'validation'?"]),
    (DM + "[split]\nvalidation = 0\n", "split.validation", 4, ["no validation set"]),
    (DM + "[split]\nseed = -1\n", "split.seed", 4, ["not a seed"]),
    (R + 'seed = "x"\n[models.dense]\n', "search.seed", 5, ["not a seed"]),
    (D + "models = [1]\n", "models", 2, ["1 is not a model name"]),
    (D + "models = 3\n", "models", 2, ["not a list of models"]),
    (D + "models = { dense = 3 }\n", "models.dense", 2, ["not a table of dense's parameters"]),
    (R + "[models.dense]\nunits = { choice = [] }\n", "models.dense.units", 6,
     ["choice needs a non-empty list"]),
    (R + "[models.dense]\nunits = { randint = [1.5, 3] }\n", "models.dense.units", 6,
     ["needs whole numbers"]),
    (R + "[models.dense]\nunits = { uniform = [1, 9], num = 3 }\n", "models.dense.units", 6,
     ["'num' does not go with uniform"]),
    (D + "[models.dense]\ndropout = { range = [0.1, 0.5], step = 0 }\n", "models.dense.dropout", 3,
     ["step = 0 is not above 0"]),
    (D + "[models.dense]\ndropout = { range = [0, 1], step = 1e-9 }\n", "models.dense.dropout", 3,
     ["gives over 100,000 values"]),
    (D + "[models.dense]\ndropout = { log = [0.1, 0.5] }\n", "models.dense.dropout", 3,
     ["a log range needs num"]),
    (D + f"[models.dense]\ndropout = {HUGE}\n", "models.dense.dropout", 3, ["is too large"]),
    (D + f"[models.dense]\ndropout = {{ range = [0, {HUGE}], num = 2 }}\n", "models.dense.dropout", 3,
     ["is not two numbers"]),
    (D + "[models.conv]\npool = 3\n", "models.conv.pool", 3, ["use true or false"]),
    (D + "[models.conv]\ntag = 3\n", "models.conv.tag", 3, ["is not text", "use text in quotes"]),
    (D + 'models = ["dense", "conv"]\n[params]\ndropout = 2.0\n', "params.dropout", 4,
     ["above the maximum", "(as a parameter of dense)"]),
    (DM + "preprocessing = [3]\n", "preprocessing", 3, ["chain 1, 3, is not a list of steps"]),
    (DM + 'preprocessing = [[{ transform = "clip", params = { low = nan, high = 1 } }]]\n',
     "preprocessing", 3, ["not a table of plain values"]),
    (DM + "x = " + "[" * 600 + "]" * 600 + "\n", "", None, ["nested too deeply"]),
]


@pytest.mark.parametrize(
    ("text", "key", "line", "words"), MALFORMED, ids=[m[1] or "syntax" for m in MALFORMED]
)
def test_that_a_malformed_grid_names_the_file_the_key_and_the_fix(
    text: str, key: str, line: int | None, words: list[str]
) -> None:
    error = failure(text)
    message = str(error)
    assert isinstance(error, BluenoError)
    assert (error.key, error.line) == (key, line)
    assert message.startswith(f"test.toml:{line}: " if line else "test.toml: ")
    assert f"{key}: " in message
    assert error.fix and error.fix in message
    for word in words:
        assert word in message


def test_that_a_grid_file_that_is_not_there_is_named() -> None:
    with pytest.raises(GridError, match="no such grid file"):
        load_grid("/nonexistent/grid.toml")


def test_that_a_folder_is_not_taken_for_a_grid_file(tmp_path: Path) -> None:
    with pytest.raises(GridError, match="this is a folder"):
        load_grid(tmp_path)


def test_that_a_grid_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(GridError, match="not UTF-8"):
        load_grid(path, models=ZOO)


def test_that_load_grid_keeps_the_file_and_defaults_the_name_to_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "sweep-1.toml"
    path.write_text('dataset = "d"\nmodels = ["dense"]\n')
    grid = load_grid(path, models=ZOO)
    assert (grid.name, grid.path, grid.source, grid.text) == ("sweep-1", path, str(path), path.read_text())


# -- fuzzing: anything a user can type gives a Grid or a GridError ------------------------------

_keys = st.sampled_from([*grid_module.TOP_LEVEL_KEYS, "units", "dense", "conv", "range", "num", "log",
                         "uniform", "choice", "transform", "params", "mode", "samples", "x", "odd key",
                         "dotted.key", 'q"uote', ""])
_scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_documents = st.dictionaries(_keys, _values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_that_any_document_gives_a_grid_or_a_grid_error(document: dict) -> None:
    try:
        parse_grid(to_toml(document), models=ZOO)
    except GridError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_that_any_text_gives_a_grid_or_a_grid_error(text: str) -> None:
    try:
        parse_grid(text, models=ZOO)
    except GridError:
        pass


@settings(max_examples=200, deadline=None)
@given(_documents)
def test_that_the_toml_writer_writes_what_tomllib_reads_back(document: dict) -> None:
    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return a == b or (math.isnan(a) and math.isnan(b))
        if isinstance(a, dict) and isinstance(b, dict):
            return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return type(a) is type(b) and a == b

    assert same(tomllib.loads(to_toml(document)), document)


_forms = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.sampled_from(list(grid_module.TABLE_FORMS)).flatmap(lambda form: st.fixed_dictionaries(
        {form: st.lists(_scalars, max_size=3)}, optional={"num": _scalars, "step": _scalars})),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["units", "dropout", "activation", "epochs", "learning_rate"]),
                       _forms, min_size=1, max_size=3),
       st.sampled_from(["grid", "random"]), st.integers(min_value=-3, max_value=30))
def test_that_any_parameter_value_gives_a_grid_or_a_grid_error(params: dict, mode: str, samples: int) -> None:
    document = {"dataset": "d", "search": {"mode": mode}, "models": {"dense": params}}
    if mode == "random":
        document["search"]["samples"] = samples
    try:
        grid = parse_grid(to_toml(document), models=ZOO)
    except GridError:
        return
    if mode == "random":
        assert 1 <= grid.count <= max(samples, 1)
        return
    # A grid is the full product of the values it takes: every combination appears.
    assert grid.count == len(grid.configs) >= 1
    values = {name: {repr(c.params[name]) for c in grid.configs} for name in params}
    combinations = {tuple(repr(c.params[name]) for name in params) for c in grid.configs}
    assert len(combinations) == math.prod(len(v) for v in values.values())


def test_that_the_limit_on_configurations_is_the_documented_one() -> None:
    assert MAX_CONFIGS == 100_000
