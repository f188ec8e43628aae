"""Repeats with new seeds (mean ± std), ensembles recorded as runs, and the test split on request.

One module-wide experiment of real trainings: a binary grid with a held-out
test split, run once, then repeated with 4 more seeds through the queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from training_helpers import submit, threes_and_eights, train_queued

from blueno import runs
from blueno.cli import main
from blueno.evaluation import Prediction
from blueno.queue import JobQueue
from blueno.store import Store
from blueno.workspace import Workspace

pytestmark = pytest.mark.slow


class Trained:
    def __init__(self, workspace: Workspace, store: Store, experiment: int, first: int, repeats: list) -> None:
        self.workspace, self.store, self.experiment, self.first, self.repeats = (
            workspace, store, experiment, first, repeats)

    @property
    def run_ids(self) -> list[int]:
        return [self.first, *(run for _, run, _ in self.repeats)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    workspace = Workspace(tmp_path_factory.mktemp("repeat") / "ws").ensure()
    with workspace.open_store() as store:
        ref = threes_and_eights(workspace, store)
        experiment = submit(workspace, store, f"""
name = "seeds"
dataset = "{ref}"
[split]
validation = 0.3
test = 0.2
seed = 5
[params]
epochs = 3
batch_size = 16
monitor = "val_auc"
learning_rate = 0.003
seed = 1
[models.mlp]
hidden_units = 8
""")
        first = store.query_one("SELECT id FROM runs")["id"]
        repeats = runs.repeat_run(store, first, 4)
        train_queued(workspace, store)
        yield Trained(workspace, store, experiment, first, repeats)


def home(trained: Trained) -> list[str]:
    return ["--home", str(trained.workspace.root)]


def test_that_repeat_queues_the_same_configuration_with_new_seeds(trained: Trained) -> None:
    jobs = {job.run_id: job for job in JobQueue(trained.store).jobs()}
    first = jobs[trained.first]
    assert [seed for _, _, seed in trained.repeats] == [2, 3, 4, 5]
    for job_id, run_id, seed in trained.repeats:
        job = jobs[run_id]
        assert job.id == job_id and job.experiment_id == first.experiment_id == trained.experiment
        assert job.config["params"] == {**first.config["params"], "seed": seed}
        assert {k: v for k, v in job.config.items() if k != "params"} == {
            k: v for k, v in first.config.items() if k != "params"}
        assert job.state == "succeeded"
    # repeating again picks seeds no repeat has used yet, and a grid re-submit would skip them all
    again = runs.repeat_run(trained.store, trained.first, 1)
    assert [seed for _, _, seed in again] == [6]
    JobQueue(trained.store).cancel([again[0][0]])


def test_that_repeats_show_mean_and_standard_deviation(trained: Trained, capsys: pytest.CaptureFixture) -> None:
    (group,) = runs.repeat_groups(trained.store, trained.experiment)
    assert sorted(group.run_ids[:5]) == sorted(trained.run_ids) and group.seeds[:5] == [1, 2, 3, 4, 5]
    accuracies = [json.loads(trained.store.query_one("SELECT evaluation FROM runs WHERE id = ?", (r,))[0])
                  ["validation"]["accuracy"] for r in trained.run_ids]
    stat = group.stats["validation.accuracy"]
    assert stat["n"] == 5
    assert stat["mean"] == pytest.approx(np.mean(accuracies))
    assert stat["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert group.stats["val_auc"]["n"] == 5 and "seed" not in group.params

    assert main([*home(trained), "runs", "repeats", "--experiment", str(trained.experiment)]) == 0
    out = capsys.readouterr().out
    assert f"{stat['mean']:.4g} ± {stat['std']:.4g} (n=5)" in out and "seeds 1, 2, 3, 4, 5" in out


def test_that_an_ensemble_of_three_runs_is_a_run_with_its_own_metrics(
    trained: Trained, capsys: pytest.CaptureFixture
) -> None:
    members = trained.run_ids[:3]
    assert main([*home(trained), "runs", "ensemble", *map(str, members), "--name", "top3"]) == 0
    assert "recorded as run" in capsys.readouterr().out
    row = trained.store.query_one("SELECT * FROM runs WHERE kind = 'ensemble'")
    assert row["job_id"] is None and row["experiment_id"] == trained.experiment and row["model"] == "ensemble"
    assert json.loads(row["params"]) == {"members": members, "name": "top3",
                                         "method": "mean of predicted probabilities"}
    validation = json.loads(row["evaluation"])["validation"]

    import keras  # the ensemble's figures are those of the members' saved model files, averaged

    probs = []
    for member in members:
        model = keras.models.load_model(trained.workspace.run_dir(member) / "model.keras")
        saved = Prediction.load(trained.workspace.run_dir(member) / "predictions-validation.npz")
        x = np.load(trained.workspace.root / "three-or-eight.npz")["x"]
        probs.append(model.predict(x[saved.indices], verbose=0))
    mean = np.mean(probs, axis=0)
    assert validation["auc"] == pytest.approx(roc_auc_score(saved.y, mean[:, 1]), abs=1e-6)
    assert validation["accuracy"] == pytest.approx((mean.argmax(1) == saved.y).mean())
    assert json.loads(row["best"])["val_auc"] == validation["auc"] and row["monitor"] == "val_auc"
    outbox = trained.store.query("SELECT ref FROM outbox WHERE ref = ?", (row["id"],))
    assert len(outbox) == 1
    ranked = [r["id"] for r in runs.top_runs(trained.store, trained.experiment, limit=10)]
    assert row["id"] in ranked  # ranks among the trainings on validation

    with pytest.raises(Exception, match="ensemble the trainings themselves"):
        runs.make_ensemble(trained.workspace, trained.store, [row["id"], members[0]])


def test_that_the_test_split_is_evaluated_only_on_request_and_marked(
    trained: Trained, capsys: pytest.CaptureFixture
) -> None:
    run = trained.first
    before = json.loads(trained.store.query_one("SELECT evaluation FROM runs WHERE id = ?", (run,))[0])
    assert "test" not in before
    outbox_before = len(trained.store.query("SELECT 1 FROM outbox WHERE ref = ?", (run,)))

    assert main([*home(trained), "runs", "test", str(run)]) == 0
    assert "held-out TEST split" in capsys.readouterr().out

    after = json.loads(trained.store.query_one("SELECT evaluation FROM runs WHERE id = ?", (run,))[0])
    assert after["validation"] == before["validation"]  # validation figures untouched
    test = after["test"]
    assert test["split"] == "test" and test["held_out"] is True and test["n"] == before["split"]["test"]
    saved = Prediction.load(trained.workspace.run_dir(run) / "predictions-test.npz")
    assert test["auc"] == pytest.approx(roc_auc_score(saved.y, saved.probs[:, 1]), abs=1e-9)
    assert len(trained.store.query("SELECT 1 FROM outbox WHERE ref = ?", (run,))) == outbox_before + 1

    comparison = runs.compare_runs(trained.store, [run, trained.run_ids[1]])
    marked = {m["name"]: m["test"] for m in comparison.metrics}
    assert marked["test.auc"] is True and marked["validation.auc"] is False
    assert [p["name"] for p in comparison.params if p["differs"]] == ["seed"]

    assert main([*home(trained), "runs", "show", str(run)]) == 0
    assert "held-out TEST split (test figures)" in capsys.readouterr().out


def test_that_a_run_trained_without_a_test_split_says_how_to_get_one(tmp_path: Path) -> None:
    from blueno import trainer
    from blueno.training_state import Data

    y = np.arange(10) % 2
    data = Data("d@1", np.zeros((10, 2)), y, ["a", "b"], np.arange(6), np.arange(6, 10), np.array([], int),
                np.array([str(i) for i in range(10)]))
    with pytest.raises(Exception, match=r"test split of d@1 is empty.*\[split\] test = 0.1"):
        trainer.predict_split(tmp_path / "model.keras", data, "test", 8)


def test_that_unknown_runs_are_named(workspace: Workspace, store: Store) -> None:
    with pytest.raises(Exception, match="no run 42"):
        runs.evaluate_test(workspace, store, [42])
