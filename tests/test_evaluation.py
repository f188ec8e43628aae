"""Evaluation from probabilities: the figures equal scikit-learn's, and they are the saved model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from training_helpers import submit, threes_and_eights, train_queued

from blueno import datasets, evaluation
from blueno.evaluation import Prediction
from blueno.store import Store
from blueno.training_state import split_indices
from blueno.workspace import Workspace


def prediction(y: np.ndarray, probs: np.ndarray, names: list[str] | None = None) -> Prediction:
    n = len(y)
    return Prediction("validation", np.array([f"s{i}" for i in range(n)]), y, probs, np.arange(n) + 100,
                      names or [f"c{k}" for k in range(probs.shape[1])], "data@1")


def noisy_binary(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, n), 0.001, 0.999)
    return y, np.stack([1 - p1, p1], axis=1)


def test_that_binary_figures_equal_scikit_learns_on_the_probabilities() -> None:
    y, probs = noisy_binary()
    result = evaluation.evaluate(prediction(y, probs))
    predicted = probs.argmax(1)

    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]), abs=1e-12)
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(y, probs[:, 1]), abs=1e-12)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert result["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert result["recall"] == result["sensitivity"] == pytest.approx(skm.recall_score(y, predicted))
    assert result["specificity"] == pytest.approx(skm.recall_score(y, predicted, pos_label=0))
    assert result["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert result["kappa"] == pytest.approx(skm.cohen_kappa_score(y, predicted))
    assert result["loss"] == pytest.approx(skm.log_loss(y, probs), abs=1e-9)
    assert result["confusion"] == skm.confusion_matrix(y, predicted).tolist()
    fpr, tpr, thresholds = skm.roc_curve(y, probs[:, 1])
    best = int(np.argmax(tpr - fpr))
    assert result["youden"] == pytest.approx({"threshold": thresholds[best], "j": tpr[best] - fpr[best],
                                              "sensitivity": tpr[best], "specificity": 1 - fpr[best]})
    assert result["roc"]["fpr"][0] == 0 and result["roc"]["tpr"][-1] == 1
    assert len(result["roc"]["fpr"]) <= evaluation.CURVE_POINTS and len(result["pr"]["recall"]) <= 200
    json.dumps(result, allow_nan=False)  # storable as it is


def test_that_multiclass_figures_are_one_vs_rest_and_per_class() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(0, 1, (400, 4)) + 1.5 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = evaluation.evaluate(prediction(y, probs))
    predicted = probs.argmax(1)

    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert result["f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert result["precision"] == pytest.approx(skm.precision_score(y, predicted, average="macro"))
    assert result["kappa"] == pytest.approx(skm.cohen_kappa_score(y, predicted))
    per_class = result["per_class"]
    assert [c["class"] for c in per_class] == ["c0", "c1", "c2", "c3"]
    assert [c["support"] for c in per_class] == np.bincount(y).tolist()
    assert per_class[2]["auc"] == pytest.approx(skm.roc_auc_score(y == 2, probs[:, 2]))
    assert "roc" not in result and "youden" not in result


def test_that_the_gallery_keeps_the_surest_mistakes_with_their_ids() -> None:
    y = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.45, 0.55], [0.2, 0.8], [0.1, 0.9]])
    result = evaluation.evaluate(prediction(y, probs))
    assert [(s["id"], s["index"], s["true"], s["predicted"]) for s in result["wrong"]] == [
        ("s3", 103, 0, 1), ("s1", 101, 1, 0)]
    assert result["wrong"][0]["p_predicted"] == 0.8 and result["n_wrong"] == 2
    assert [s["id"] for s in result["right"]] == ["s0", "s4", "s2"]


def test_that_an_ensemble_averages_probabilities_matched_by_sample_id() -> None:
    y, probs_a = noisy_binary(50, seed=2)
    _, probs_b = noisy_binary(50, seed=3)
    a = prediction(y, probs_a)
    order = np.random.default_rng(0).permutation(50)
    b = Prediction("validation", a.ids[order], y[order], probs_b[order], a.indices[order], a.class_names, "data@1")
    mean = evaluation.average([a, b])
    assert mean.probs == pytest.approx((probs_a + probs_b) / 2)
    other = Prediction("validation", np.array([f"t{i}" for i in range(50)]), y, probs_b, a.indices, a.class_names,
                       "data@1")
    with pytest.raises(ValueError, match="different samples"):
        evaluation.average([a, other])


@pytest.mark.parametrize(
    ("shape", "picture"),
    [((8, 8), (8, 8)), ((64,), (8, 8)), ((10,), (1, 10)), ((6, 5, 3), (6, 5, 3)), ((6, 5, 1), (6, 5)),
     ((4, 6, 5), (6, 6 + 5 + 5 + 2)), ((4, 6, 5, 1), (6, 6 + 5 + 5 + 2))],
)
def test_that_any_sample_becomes_a_picture(shape: tuple[int, ...], picture: tuple[int, ...]) -> None:
    sample = np.random.default_rng(0).random(shape)
    image = evaluation.sample_image(sample)
    assert image.shape == picture and image.dtype == np.uint8 and image.max() == 255
    assert evaluation.thumbnail_png(sample).startswith(b"\x89PNG")


def test_that_mean_std_ignores_undefined_values() -> None:
    assert evaluation.mean_std([1.0, None, 3.0, float("nan")]) == (2.0, pytest.approx(2 ** 0.5), 2)
    assert evaluation.mean_std([None]) == (None, None, 0)


# -- the must-show: the reported figures are the saved file's ------------------------------------------


@pytest.mark.slow
def test_that_a_binary_runs_auc_is_roc_auc_score_of_its_saved_model_file(workspace: Workspace, store: Store) -> None:
    ref = threes_and_eights(workspace, store)
    submit(workspace, store, f"""
name = "auc"
dataset = "{ref}"
[split]
validation = 0.3
test = 0.2
seed = 5
[params]
epochs = 4
batch_size = 16
monitor = "val_loss"
learning_rate = 0.003
[models.mlp]
hidden_units = 8
""")
    assert set(train_queued(workspace, store).values()) == {"succeeded"}
    run = store.query_one("SELECT * FROM runs")
    stored = json.loads(run["evaluation"])
    validation = stored["validation"]

    import keras

    assert validation["model"] == run["model_path"] == f"models/run-{run['id']}/model.keras"
    saved = keras.models.load_model(workspace.root / run["model_path"])
    version = datasets.resolve(store, workspace, ref)
    x, y, ids, _ = datasets.load_arrays(workspace, version)
    _, val, test = split_indices(ids, y, 0.3, 0.2, 5)
    probs = saved.predict(np.asarray(x[val], "float32"), verbose=0)

    assert validation["auc"] == pytest.approx(skm.roc_auc_score(y[val], probs[:, 1]), abs=1e-9)
    assert validation["accuracy"] == pytest.approx((probs.argmax(1) == y[val]).mean(), abs=1e-12)
    assert validation["confusion"] == skm.confusion_matrix(y[val], probs.argmax(1)).tolist()
    assert validation["epoch"] == run["best_epoch"]
    assert validation["loss"] == pytest.approx(json.loads(run["best"])["val_loss"], rel=1e-4)  # the saved epoch's
    assert {s["id"] for s in validation["wrong"]} == set(ids[val][probs.argmax(1) != y[val]])
    assert stored["split"] == {"train": len(y) - len(val) - len(test), "validation": len(val), "test": len(test)}
    assert "test" not in stored  # the held-out split is evaluated only on request
    saved_prediction = Prediction.load(workspace.run_dir(run["id"]) / "predictions-validation.npz")
    assert saved_prediction.probs == pytest.approx(probs, abs=1e-6)
