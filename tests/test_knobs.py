"""Each training knob and pretrained-base option reaches Keras (small, fast, real Keras)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_trainer import add_job, job_config

from blueno import trainer, zoo
from blueno.datasets.importing import import_path
from blueno.store import Store
from blueno.workspace import Workspace

DOCS = Path(__file__).resolve().parent.parent / "docs" / "models.md"


def params(spec_name: str = "mlp", **values) -> dict:
    return zoo.resolve_params(zoo.load()[spec_name], values)


def test_that_the_pretrained_bases_and_knobs_are_documented() -> None:
    from test_zoo import documented

    from blueno.zoo.knobs import KNOBS
    from blueno.zoo.pretrained import PRETRAINED

    docs = DOCS.read_text()
    for spec in PRETRAINED:
        assert f"## `{spec.name}`" in docs
        assert all(documented(hp) in docs for hp in spec.hyperparams), spec.name
    assert all(documented(hp) in docs for hp in KNOBS)


def test_that_balanced_class_weights_change_the_loss() -> None:
    import keras

    from blueno.zoo import keras_parts

    y = np.array([0] * 30 + [1] * 6)
    weights = keras_parts.class_weight(params(class_weight="balanced"), y, 2)
    assert weights == pytest.approx({0: 36 / 60, 1: 36 / 12})
    assert keras_parts.class_weight(params(), y, 2) is None
    x = np.random.default_rng(0).normal(size=(36, 4)).astype("float32")
    losses = []
    for class_weight in (None, weights):
        keras.utils.set_random_seed(0)
        model = zoo.get("mlp").build((4,), 2, params(hidden_units=4))
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        losses.append(model.fit(x, y, batch_size=36, epochs=1, verbose=0, class_weight=class_weight,
                                shuffle=False).history["loss"][0])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_that_the_losses_reach_keras_and_agree_where_they_should() -> None:
    import keras

    from blueno.zoo import keras_parts

    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]], dtype="float32")
    cce = float(keras.losses.SparseCategoricalCrossentropy()(y, probs))
    binary = keras_parts.loss(params(loss="binary_crossentropy"), 2)
    assert float(binary(y, probs)) == pytest.approx(cce, rel=1e-5)  # the same for a two-way softmax
    focal0 = keras_parts.loss(params(loss="focal", focal_gamma=0.0), 2)
    assert float(focal0(y, probs)) == pytest.approx(cce, rel=1e-5)
    focal2 = keras_parts.loss(params(loss="focal"), 2)
    assert float(focal2(y, probs)) < cce  # easy samples count less
    assert keras_parts.loss(params(), 2) == "sparse_categorical_crossentropy"
    with pytest.raises(Exception, match="needs two classes"):
        keras_parts.loss(params(loss="binary_crossentropy"), 3)


def test_that_optimizer_settings_reach_keras() -> None:
    from blueno.zoo import keras_parts

    adam = keras_parts.optimizer(params(adam_beta_1=0.8, adam_beta_2=0.99, weight_decay=0.01))
    assert (adam.beta_1, adam.beta_2, adam.weight_decay) == (0.8, 0.99, 0.01)
    sgd = keras_parts.optimizer(params(optimizer="sgd", momentum=0.9, learning_rate=0.1))
    assert type(sgd).__name__ == "SGD" and sgd.momentum == 0.9
    assert float(sgd.learning_rate) == pytest.approx(0.1)


def test_that_reduce_on_plateau_uses_its_factor_and_minimum(workspace: Workspace, store: Store) -> None:
    from test_trainer import FakeModel

    from blueno import events

    job_id, run = add_job(store, job_config("mlp", "none@0"))
    book_params = {"monitor": "val_loss", "epochs": 10, "early_stopping": 0, "reduce_lr_patience": 1,
                   "batch_size": 32, "reduce_lr_factor": 0.1, "reduce_lr_min": 0.002}
    state = trainer.TrainState(lr=0.1)
    writer = events.EventWriter(events.FileSink(workspace.logs_dir / "book.events.jsonl"))
    book = trainer.EpochBook(writer, trainer.Checkpoints(workspace.run_dir(run)), state, book_params, 64)
    model = FakeModel()
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0]):
        book.epoch_begin(epoch)
        book.epoch_end(epoch, {"loss": loss, "val_loss": loss}, model)
    assert state.lr == pytest.approx(0.002) and model.optimizer.learning_rate == pytest.approx(0.002)


def augment(values: dict, batch: np.ndarray, seed: tuple[int, int] = (0, 1), rank: int = 2) -> np.ndarray:
    import tensorflow as tf

    from blueno.zoo import keras_parts

    apply = keras_parts.augmenter(tf, params("cnn2d", **values), rank, flip_axis=2)
    assert apply is not None
    return apply(tf.constant(batch), tf.constant(seed, tf.int64)).numpy()


@pytest.mark.parametrize("knob", [{"augment_rotation": 30.0}, {"augment_shift": 0.2}, {"augment_zoom": 0.3},
                                  {"augment_flip_vertical": True}])
def test_that_each_augmentation_changes_a_batch_and_repeats_with_its_seed(knob: dict) -> None:
    batch = np.zeros((8, 32, 32), dtype="float32")
    batch[:, 4:12, 6:26] = 1.0  # an off-centre bar: rotation, shift, zoom and flips all move it
    out = augment(knob, batch)
    assert out.shape == batch.shape
    assert not np.array_equal(out, batch)
    assert np.array_equal(out, augment(knob, batch))  # same seed, same batch
    assert not np.array_equal(out, augment(knob, batch, seed=(0, 2)))
    with_channel = augment(knob, batch[..., None])
    assert with_channel.shape == (8, 32, 32, 1)


def test_that_augmentation_is_off_by_default() -> None:
    import tensorflow as tf

    from blueno.zoo import keras_parts

    assert keras_parts.augmenter(tf, params("cnn2d"), 2, flip_axis=2) is None


def tiny_mobilenet(**values) -> tuple:
    spec = zoo.load()["mobilenetv2"]
    return spec, zoo.resolve_params(spec, {"alpha": 0.35, **values})


def test_that_freeze_base_leaves_the_base_weights_unchanged_after_an_epoch() -> None:
    import keras

    from blueno.zoo import keras_parts

    keras.utils.set_random_seed(0)
    spec, values = tiny_mobilenet(freeze_base=True)
    model = spec.build((32, 32), 2, values)  # one channel: repeated to three inside the model
    base = model.get_layer("base")
    before = [w.copy() for w in base.get_weights()]
    head_before = model.get_layer("probabilities").get_weights()[0].copy()
    model.compile(optimizer=keras_parts.optimizer(values), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 32, 32)).astype("float32")
    model.fit(x, np.arange(16) % 2, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights(), strict=True))
    assert not np.array_equal(head_before, model.get_layer("probabilities").get_weights()[0])
    assert keras_parts.set_base_trainable(model, True) and base.trainable


@pytest.mark.slow
def test_that_a_pretrained_base_trains_from_a_local_weights_file(
    workspace: Workspace, store: Store, tmp_path: Path
) -> None:
    import keras

    keras.utils.set_random_seed(1)
    source = keras.applications.MobileNetV2(include_top=False, weights=None, pooling="avg",
                                            input_shape=(32, 32, 3), alpha=0.35)
    weights_file = tmp_path / "mobilenet.weights.h5"
    source.save_weights(weights_file)
    spec, values = tiny_mobilenet(weights=str(weights_file))
    built = spec.build((32, 32, 2), 2, values).get_layer("base")
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), built.get_weights(), strict=True))

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = (rng.normal(size=(40, 32, 32, 2)) + y[:, None, None, None]).astype("float32")
    np.savez(tmp_path / "pairs.npz", x=x, y=y)
    ref = import_path(workspace, store, tmp_path / "pairs.npz", name="pairs").version.ref
    job, run = add_job(store, job_config("mobilenetv2", ref, epochs=2, batch_size=8, alpha=0.35,
                                         weights=str(weights_file), freeze_base=True, fine_tune_after=1))
    from test_trainer import finish, record, start_trainer

    # A trainer process of its own, as the scheduler starts it (this process has TensorFlow set up already).
    code, out = finish(start_trainer(workspace, store, job, 1), timeout=600)
    record(workspace, store, job, 1)
    assert code == 0, out
    assert "epoch 1: the pretrained base is unfrozen for fine-tuning" in out
    assert store.query_one("SELECT state FROM jobs WHERE id = ?", (job,))["state"] == "succeeded"
    assert (workspace.run_dir(run) / "model.keras").is_file()


def test_that_a_weights_file_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    spec, values = tiny_mobilenet(weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(Exception, match="does not exist"):
        spec.build((32, 32), 2, values)
