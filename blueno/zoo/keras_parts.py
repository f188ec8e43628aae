"""The training knobs (:mod:`blueno.zoo.knobs`) as Keras objects: optimizer, loss, class weights, augmentation.

Imported by the trainer only (it imports Keras at once).  The losses are
registered as serialisable, so a checkpoint compiled with them loads again on resume.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from blueno import BluenoError


def optimizer(params: dict[str, Any], learning_rate: float | None = None) -> Any:
    """The configured optimizer with its own settings (betas, momentum, weight decay)."""
    name = params["optimizer"]
    lr = params["learning_rate"] if learning_rate is None else learning_rate
    decay = params.get("weight_decay") or None
    if name in ("adam", "adamw"):
        cls = keras.optimizers.Adam if name == "adam" else keras.optimizers.AdamW
        kwargs: dict[str, Any] = {"beta_1": params["adam_beta_1"], "beta_2": params["adam_beta_2"]}
        if decay is not None:
            kwargs["weight_decay"] = decay
        return cls(learning_rate=lr, **kwargs)
    cls = keras.optimizers.SGD if name == "sgd" else keras.optimizers.RMSprop
    return cls(learning_rate=lr, momentum=params["momentum"], weight_decay=decay)


@keras.saving.register_keras_serializable(package="blueno")
class SparseFocalLoss(keras.losses.Loss):
    """Focal loss on integer labels and class probabilities: -(1 - p_true)^gamma * log(p_true)."""

    def __init__(self, gamma: float = 2.0, name: str = "sparse_focal", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.gamma = gamma

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        p_true = ops.sum(p * ops.one_hot(y_true, ops.shape(p)[-1]), axis=-1)
        return -ops.power(1.0 - p_true, self.gamma) * ops.log(p_true)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="blueno")
class BinaryFromSoftmaxLoss(keras.losses.Loss):
    """Binary cross-entropy of the positive class (index 1) of a two-class softmax output."""

    def __init__(self, name: str = "binary_from_softmax", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        y_true = ops.cast(ops.reshape(y_true, (-1, 1)), y_pred.dtype)
        return keras.losses.binary_crossentropy(y_true, y_pred[:, 1:2])


def loss(params: dict[str, Any], n_classes: int) -> Any:
    """The configured loss (every model ends in a softmax over ``n_classes``)."""
    name = params["loss"]
    if name == "focal":
        return SparseFocalLoss(params["focal_gamma"])
    if name == "binary_crossentropy":
        if n_classes != 2:
            raise BluenoError(f"loss 'binary_crossentropy' needs two classes, not {n_classes}: "
                              "use sparse_categorical_crossentropy or focal")
        return BinaryFromSoftmaxLoss()
    return "sparse_categorical_crossentropy"


def class_weight(params: dict[str, Any], y_train: np.ndarray, n_classes: int) -> dict[int, float] | None:
    """``balanced``: n_samples / (n_classes * count) per class, as scikit-learn computes it."""
    if params.get("class_weight", "none") != "balanced":
        return None
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)
    return {c: float(len(y_train) / (n_classes * n)) if n else 0.0 for c, n in enumerate(counts)}


def augmentation_layers(params: dict[str, Any], rank: int) -> list[Any]:
    """Keras preprocessing layers for 2-D images shaped (H, W, C); seeded by the run's seed."""
    seed = params["seed"]
    layers: list[Any] = []
    if rank != 2:
        return layers
    if params.get("augment_rotation"):
        layers.append(keras.layers.RandomRotation(params["augment_rotation"] / 360.0, fill_mode="constant",
                                                  seed=seed))
    if params.get("augment_shift"):
        shift = params["augment_shift"]
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1))
    if params.get("augment_zoom"):
        layers.append(keras.layers.RandomZoom(params["augment_zoom"], fill_mode="constant", seed=seed + 2))
    return layers


def augmenter(tf: Any, params: dict[str, Any], rank: int, flip_axis: int) -> Any:
    """A function (batch, seed) -> augmented batch for the training pipeline, or None when nothing is on.

    ``seed`` is a stateless seed (two int64s) the pipeline derives from the
    run's seed, the epoch and the step, so a resumed run draws exactly the
    augmentations of an uninterrupted one.  Flips (either axis) and noise work on
    images and volumes; rotation, shift and zoom on images, through Keras
    preprocessing layers (their random transformation drawn with that seed).
    """
    layers = augmentation_layers(params, rank)
    flips = [axis for axis, on in ((flip_axis, params["augment_flip"]),
                                   (flip_axis - 1, params.get("augment_flip_vertical"))) if on]
    noise = params["augment_noise"]
    if not (layers or flips or noise):
        return None
    # Keras' layers draw from a SeedGenerator: each gets its own, set from the batch's seed before it draws.
    generators = [keras.random.SeedGenerator(0) for _ in layers]

    def apply(batch: Any, seed: Any) -> Any:
        def sub(k: int) -> Any:  # an independent stateless seed per random draw
            return tf.stack([seed[0], seed[1] * 8 + k])

        for k, axis in enumerate(flips):
            per_sample = tf.concat([tf.shape(batch)[:1], tf.ones([batch.shape.rank - 1], "int32")], 0)
            coin = tf.random.stateless_uniform(per_sample, seed=sub(k))
            batch = tf.where(coin < 0.5, tf.reverse(batch, [axis]), batch)
        if layers:
            channelless = batch.shape.rank == 3  # (N, H, W): the layers want (N, H, W, C)
            x = batch[..., None] if channelless else batch
            for k, (layer, generator) in enumerate(zip(layers, generators, strict=True), start=2):
                generator.state.assign(sub(k))
                transformation = layer.get_random_transformation(x, training=True, seed=generator)
                x = layer.transform_images(x, transformation, training=True)
            batch = x[..., 0] if channelless else x
        if noise:
            batch = batch + tf.random.stateless_normal(tf.shape(batch), seed=sub(7), stddev=noise)
        return batch

    apply.sequential = bool(layers)  # type: ignore[attr-defined]  # shared generators: one batch at a time
    return apply


def reseed(model: Any, seed: int, epoch: int) -> int:
    """Set every random layer's seed state (dropout, ...) from (seed, epoch, its position).

    Called at the start of each epoch, so the random draws of an epoch do not
    depend on the epochs before it: a resumed run repeats an uninterrupted one.
    Returns how many generators were set.
    """
    count = 0
    for layer in model._flatten_layers():
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(np.array([seed * 1_000_003 + count, epoch], dtype="int64"))
                count += 1
    return count


def set_base_trainable(model: Any, trainable: bool) -> bool:
    """Freeze or unfreeze the pretrained base of a zoo model; False when it has none."""
    from blueno.zoo.pretrained import BASE_LAYER

    try:
        base = model.get_layer(BASE_LAYER)
    except ValueError:
        return False
    base.trainable = trainable
    return True
