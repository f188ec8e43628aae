"""The grid builder: a form from the zoo's declarations, a live count, problems beside fields."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from blueno import datasets
from blueno.grid import load_grid
from blueno.queue import JobQueue

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def builder(qtbot, window, workspace, store):
    datasets.make_demo(workspace, store)
    view = window.grid_view
    window.tabs.setCurrentWidget(view)
    view._datasets.request()
    qtbot.waitUntil(lambda: view.dataset.findText("digits") >= 0, timeout=5000)
    for name, box in view.model_boxes.items():
        box.setChecked(name == "standin")
    return view


def set_row(view, key: str, mode: str, text: str) -> None:
    row = view.rows[key]
    row.mode.setCurrentText(mode)
    row.text.setText(text)


def test_that_only_the_chosen_models_parameters_are_shown(builder) -> None:
    assert builder.model_groups["standin"].isVisibleTo(builder)
    assert not builder.model_groups["mlp"].isVisibleTo(builder)
    builder.model_boxes["mlp"].setChecked(True)
    assert builder.model_groups["mlp"].isVisibleTo(builder)


def test_that_filling_the_form_updates_the_count(qtbot, builder) -> None:
    set_row(builder, "models.standin.index", "list", "0, 1, 2")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("3 trainings"), timeout=5000)
    set_row(builder, "params.learning_rate", "range (log)", "1e-4, 1e-2, 3")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("9 trainings"), timeout=5000)
    assert builder.enqueue_button.isEnabled()


def test_that_a_bad_value_is_reported_beside_its_field(qtbot, builder) -> None:
    set_row(builder, "params.epochs", "fixed", "0")
    qtbot.waitUntil(lambda: builder.rows["params.epochs"].problem.text() != "", timeout=5000)
    assert "epochs" in builder.problem.text()
    assert not builder.enqueue_button.isEnabled()
    set_row(builder, "params.batch_size", "list", "32, many")
    qtbot.waitUntil(lambda: "many" in builder.rows["params.batch_size"].problem.text(), timeout=5000)


def test_that_a_saved_grid_loads_back_into_the_form_and_the_cli_reads_it(qtbot, builder, tmp_path) -> None:
    set_row(builder, "models.standin.index", "list", "0, 1")
    set_row(builder, "params.learning_rate", "range (linear)", "0.001, 0.003, 3")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("6 trainings"), timeout=5000)
    path = tmp_path / "grid.toml"
    builder.save(path)
    qtbot.waitUntil(path.exists, timeout=5000)
    assert load_grid(path).count == 6
    set_row(builder, "models.standin.index", "default", "")
    builder.load(path)
    qtbot.waitUntil(lambda: builder.rows["models.standin.index"].text.text() == "0, 1", timeout=5000)
    qtbot.waitUntil(lambda: builder.summary.text().startswith("6 trainings"), timeout=5000)



def test_that_saving_over_a_grid_file_keeps_its_comments(qtbot, builder, tmp_path) -> None:
    set_row(builder, "models.standin.index", "list", "0, 1")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("2 trainings"), timeout=5000)
    path = tmp_path / "grid.toml"
    builder.save(path)
    qtbot.waitUntil(path.exists, timeout=5000)
    text = path.read_text()
    path.write_text("# why this sweep: keep me\n" + text.replace("[params]", "[params]   # shared"))
    set_row(builder, "models.standin.index", "list", "0, 1, 2")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("3 trainings"), timeout=5000)
    builder.save(path)
    qtbot.waitUntil(lambda: load_grid(path).count == 3, timeout=5000)
    saved = path.read_text()
    assert saved.startswith("# why this sweep: keep me\n") and "[params]   # shared" in saved

def test_that_enqueue_queues_every_training(qtbot, builder, store) -> None:
    set_row(builder, "models.standin.index", "list", "0, 1, 2, 3")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("4 trainings"), timeout=5000)
    builder.enqueue_button.click()
    qtbot.waitUntil(lambda: JobQueue(store).counts()["queued"] == 4, timeout=5000)


def test_that_a_dataset_imported_from_another_process_appears_in_the_list(qtbot, builder, workspace) -> None:
    digits = load_digits()
    path = workspace.root / "other-digits.npz"
    np.savez(path, x=(digits.images[:60] / 16).astype("float32"), y=digits.target[:60])
    env = {**os.environ, "PYTHONPATH": str(REPO), "BLUENO_HOME": str(workspace.root)}
    subprocess.run([sys.executable, str(REPO / "main.py"), "data", "import", str(path), "--name", "elsewhere"],
                   env=env, check=True, capture_output=True, timeout=120)
    # No poke: the watcher sees the other process's commit and the builder re-reads its list.
    qtbot.waitUntil(lambda: builder.dataset.findText("elsewhere") >= 0, timeout=10_000)
    assert builder.dataset.currentText() == "digits"  # the user's choice is kept


def test_that_an_empty_dataset_field_is_explained_in_words(qtbot, builder) -> None:
    builder.dataset.setCurrentText("")
    qtbot.waitUntil(lambda: builder.dataset_problem.text() != "", timeout=5000)
    for text in (builder.dataset_problem.text(), builder.problem.text()):
        assert "Choose a dataset" in text and "=" not in text and '"' not in text
    assert not builder.enqueue_button.isEnabled()
    builder.dataset.setCurrentText("digits")
    qtbot.waitUntil(lambda: builder.enqueue_button.isEnabled(), timeout=5000)
    assert builder.dataset_problem.text() == "" and builder.problem.text() == ""


def test_that_the_test_fraction_reaches_the_queued_jobs(qtbot, builder, store) -> None:
    set_row(builder, "split.test", "fixed", "0.15")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("1 training"), timeout=5000)
    assert builder.document()["split"]["test"] == 0.15
    builder.enqueue_button.click()
    qtbot.waitUntil(lambda: JobQueue(store).counts()["queued"] == 1, timeout=5000)
    (job,) = JobQueue(store).jobs()
    assert job.config["split"]["test"] == 0.15


def test_that_a_transform_gets_fields_for_its_declared_parameters(qtbot, builder, tmp_path) -> None:
    builder.preprocessing["clip"].setChecked(True)
    group, form, problem = builder.transform_forms["clip"]
    assert group.isVisibleTo(builder) and set(form.fields) == {"low", "high", "rescale"}
    qtbot.waitUntil(lambda: "low" in problem.text(), timeout=5000)  # required, not filled in yet
    assert not builder.enqueue_button.isEnabled()
    form.fields["low"].setText("0.1")
    form.fields["high"].setText("0.9")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("2 trainings"), timeout=5000)  # none, and clip
    assert problem.text() == ""
    assert builder.document()["preprocessing"] == [[], [{"transform": "clip", "params": {"low": 0.1, "high": 0.9}}]]
    path = tmp_path / "grid.toml"
    builder.save(path)
    qtbot.waitUntil(path.exists, timeout=5000)
    form.fields["low"].setText("")
    builder.load(path)
    qtbot.waitUntil(lambda: form.fields["low"].text() == "0.1", timeout=5000)


def test_that_a_model_that_cannot_take_the_data_is_refused_in_the_form(qtbot, builder, workspace, store, tmp_path):
    for name, box in builder.model_boxes.items():
        box.setChecked(name == "cnn3d")  # volumes only; digits are 8x8 images
    qtbot.waitUntil(lambda: "cnn3d cannot take this data" in builder.problem.text(), timeout=5000)
    assert "(8, 8)" in builder.problem.text() and not builder.enqueue_button.isEnabled()
    assert builder.model_boxes["cnn3d"].styleSheet() != ""
    builder.model_boxes["mlp"].setChecked(True)
    builder.model_boxes["cnn3d"].setChecked(False)
    qtbot.waitUntil(builder.enqueue_button.isEnabled, timeout=5000)
    assert builder.model_boxes["cnn3d"].styleSheet() == ""
    path = tmp_path / "cnn3d.toml"  # the CLI path refuses the same grid with the same check
    path.write_text('dataset = "digits"\n[models.cnn3d]\n')
    from blueno.actions import submit_grid
    from blueno.grid import GridError

    with pytest.raises(GridError, match="cnn3d cannot take this data"):
        submit_grid(workspace, store, str(path))
    assert JobQueue(store).counts().get("queued", 0) == 0


def test_that_datasets_and_split_fractions_are_axes_in_the_form(qtbot, builder, tmp_path) -> None:
    assert builder.rows["split.validation"].mode.count() == 3  # default, fixed, list: what [split] takes
    set_row(builder, "split.validation", "list", "0.1, 0.2, 0.3")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("3 trainings"), timeout=5000)
    builder.dataset.setCurrentText("digits, digits@" + datasets.resolve(builder._store, builder._workspace,
                                                                         "digits").version)
    qtbot.waitUntil(lambda: builder.summary.text().startswith("6 trainings"), timeout=5000)
    doc = builder.document()
    assert doc["split"] == {"validation": [0.1, 0.2, 0.3]} and len(doc["dataset"]) == 2
    path = tmp_path / "axes.toml"
    builder.save(path)
    qtbot.waitUntil(path.exists, timeout=5000)
    assert load_grid(path).count == 6
    set_row(builder, "split.validation", "default", "")
    builder.load(path)
    qtbot.waitUntil(lambda: builder.rows["split.validation"].text.text() == "0.1, 0.2, 0.3", timeout=5000)
    qtbot.waitUntil(lambda: builder.summary.text().startswith("6 trainings"), timeout=5000)
    set_row(builder, "split.test", "fixed", "1.5")
    qtbot.waitUntil(lambda: builder.rows["split.test"].problem.text() != "", timeout=5000)
