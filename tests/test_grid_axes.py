"""The dataset and split axes of a grid, the model-vs-data check at validation, and stable hashes."""

from __future__ import annotations

import pytest

from blueno import zoo
from blueno.grid import GridError, check_data, parse_grid

STABLE = """
name = "stable"
dataset = "digits"
[split]
validation = 0.25
seed = 3
[params]
seed = [0, 1]
learning_rate = 0.01
epochs = 2
[models.mlp]
hidden_units = [8, 16]
[models.cnn2d]
filters = 4
"""

# Recorded before the dataset/split axes and the training knobs existed: a grid that uses
# neither must keep these hashes, so re-submitting it skips what already succeeded.
RECORDED = ["c7937c6fa2ed9d31", "480d0f3a380f0635", "9788f61f274d3bfe", "00130b83c50ebeeb",
            "922a9683b43a9ab1", "d7052693ab3a45f8"]


def test_that_grids_without_the_new_axes_and_knobs_keep_their_recorded_hashes() -> None:
    grid = parse_grid(STABLE)
    assert [config.config_hash("digits@abc123") for config in grid.configs] == RECORDED
    assert grid.datasets == ("digits",) and len(grid.splits) == 1


def test_that_a_knob_at_its_default_is_left_out_and_a_set_one_is_kept() -> None:
    written = parse_grid(STABLE.replace("epochs = 2", 'epochs = 2\nloss = "sparse_categorical_crossentropy"'))
    assert [c.config_hash("digits@abc123") for c in written.configs] == RECORDED
    focal = parse_grid(STABLE.replace("epochs = 2", 'epochs = 2\nloss = "focal"'))
    assert all(c.params["loss"] == "focal" for c in focal.configs)
    assert not set(c.config_hash("digits@abc123") for c in focal.configs) & set(RECORDED)


def test_that_dataset_and_split_lists_are_axes() -> None:
    grid = parse_grid("""
dataset = ["lower", "upper"]
[split]
validation = [0.1, 0.2, 0.3]
seed = 1
[params]
seed = [0, 1]
[models.mlp]
""")
    assert grid.count == 12
    combos = {(c.dataset, c.split.validation, c.params["seed"]) for c in grid.configs}
    assert len(combos) == 12
    assert {c.split.seed for c in grid.configs} == {1}
    doc = grid.document()
    assert doc["dataset"] == ["lower", "upper"] and doc["split"]["validation"] == [0.1, 0.2, 0.3]
    assert parse_grid(grid_text(grid)).count == 12


def grid_text(grid) -> str:  # noqa: ANN001
    from blueno.grid import to_toml

    return to_toml(grid)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('dataset = []\n[models.mlp]\n', "dataset", "empty"),
        ('dataset = ["ok", 3]\n[models.mlp]\n', "dataset", "not a dataset reference"),
        ('dataset = "d"\n[split]\nvalidation = [0.1, 1.5]\n[models.mlp]\n', "split.validation", "fraction"),
        ('dataset = "d"\n[split]\nvalidation = [0.5, 0.6]\ntest = [0.1, 0.4]\n[models.mlp]\n', "split",
         "leave no samples"),
    ],
)
def test_that_bad_axes_are_refused_naming_the_key(text: str, key: str, message: str) -> None:
    with pytest.raises(GridError, match=message) as excinfo:
        parse_grid(text, source="lab.toml")
    assert excinfo.value.key == key and "lab.toml" in str(excinfo.value)


@pytest.mark.parametrize(
    ("model", "params", "shape", "message"),
    [
        ("cnn3d", {}, (8, 8), "needs volumes"),
        ("mobilenetv2", {}, (8, 8), "at least 32x32"),
        ("resnet50", {"weights": "model.txt"}, (32, 32), "weights file"),
        ("cnn2d", {"conv_blocks": 4}, (8, 8), "conv_blocks <= 3"),
        ("mlp", {"augment_rotation": 30.0}, (64,), "augment_rotation"),
        ("cnn3d", {"augment_zoom": 0.1}, (4, 8, 8), "volumes take augment_flip"),
    ],
)
def test_that_the_keras_free_fit_check_refuses_models_that_cannot_take_the_data(
    model: str, params: dict, shape: tuple[int, ...], message: str
) -> None:
    spec = zoo.load()[model]
    problem = zoo.fit_problem(spec, zoo.resolve_params(spec, params), shape, "lab@1")
    assert problem is not None and message in problem
    assert zoo.fit_problem(zoo.get("cnn2d"), zoo.resolve_params(zoo.get("cnn2d"), {}), (8, 8)) is None


def test_that_grid_validation_refuses_a_model_the_data_cannot_feed_before_anything_runs() -> None:
    grid = parse_grid('dataset = ["digits", "ct"]\n[models.cnn3d]\nfilters = 4\n', source="lab.toml")
    shapes = {"digits": ((8, 8), 10), "ct": ((8, 16, 16), 2)}
    with pytest.raises(GridError, match="needs volumes") as excinfo:
        check_data(grid, shapes.get)
    assert excinfo.value.key == "models.cnn3d" and "lab.toml:2" in str(excinfo.value)
    check_data(parse_grid('dataset = "ct"\n[models.cnn3d]\n'), shapes.get)  # fits: no error
    check_data(grid, {"ct": shapes["ct"]}.get)  # digits is not in the workspace yet: checked later
    binary = parse_grid('dataset = "digits"\n[params]\nloss = "binary_crossentropy"\n[models.mlp]\n')
    with pytest.raises(GridError, match="needs two classes"):
        check_data(binary, shapes.get)


# -- end to end: the lab's grid through `blueno batch` and the real scheduler and trainer ---------------


LAB_GRID = """
name = "lab-axes"
dataset = ["lower", "upper"]
[split]
validation = [0.1, 0.2, 0.3]
seed = 1
[params]
seed = [0, 1]
epochs = 1
batch_size = 16
[models.mlp]
hidden_units = 4
"""


@pytest.mark.slow
def test_that_a_dataset_split_and_seed_grid_trains_12_runs_each_naming_its_data_and_split(
    workspace, store, tmp_path
) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from sklearn.datasets import load_digits

    from blueno.datasets.importing import import_path

    digits = load_digits()
    refs = {}
    for name, (a, b) in (("lower", (0, 1)), ("upper", (7, 9))):
        keep = np.isin(digits.target, (a, b))
        np.savez(tmp_path / f"{name}.npz", x=(digits.images[keep][:80] / 16).astype("float32"),
                 y=(digits.target[keep][:80] == b).astype("int64"))
        refs[name] = import_path(workspace, store, tmp_path / f"{name}.npz", name=name).version.ref
    grid = tmp_path / "lab.toml"
    grid.write_text(LAB_GRID)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run([sys.executable, str(root / "main.py"), "--home", str(workspace.root), "grid", "show",
                            str(grid)], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "dataset: lower | upper" in shown.stdout and "split.validation: 0.1 | 0.2 | 0.3" in shown.stdout
    assert "12 configurations" in shown.stdout

    batch = subprocess.run([sys.executable, str(root / "main.py"), "--batch", str(grid), "--home",
                            str(workspace.root), "--slots", "2", "--no-sync"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    assert "12 configurations (12 new)" in batch.stdout and "12 succeeded" in batch.stdout
    rows = store.query("SELECT runs.dataset, runs.evaluation, jobs.config, jobs.state FROM runs "
                       "JOIN jobs ON jobs.id = runs.job_id")
    seen = set()
    for row in rows:
        config = json.loads(row["config"])
        assert row["state"] == "succeeded" and row["dataset"] == config["dataset"]
        assert row["dataset"] in refs.values()  # name@version: the exact version trained on
        sizes = json.loads(row["evaluation"])["split"]
        assert sizes["validation"] == round(config["split"]["validation"] * 40) * 2  # 40 per class, stratified
        seen.add((row["dataset"], config["split"]["validation"], config["params"]["seed"]))
    assert len(seen) == 12
