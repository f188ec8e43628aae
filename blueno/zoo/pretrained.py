"""Pretrained bases from ``keras.applications`` with a small classification head.

``weights`` is ``"none"`` (random start), ``"imagenet"`` (Keras downloads the
file on first use, so the box needs internet once) or a path to a weights file
saved from the same base (``base.save_weights("resnet50.weights.h5")``).
``freeze_base`` keeps the base's weights fixed; ``fine_tune_after = N`` unfreezes
it after N epochs (the trainer recompiles then).  Samples with one or two
channels (or none) are repeated to the three the bases expect by a fixed,
non-trainable 1x1 convolution, so the saved model takes the data as it is.

The declarations and :func:`_fits` are Keras-free; Keras is imported in the build only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blueno import BluenoError
from blueno.zoo.base import Hyperparam, ModelSpec

BASE_LAYER = "base"  # the name of the pretrained base inside the built model
MIN_SIDE = 32  # the smallest height and width keras.applications accept without their top
WEIGHT_SUFFIXES = (".h5", ".keras")


def _check_weights(value: str) -> str | None:
    if value in ("none", "imagenet"):
        return None
    if not value.endswith(WEIGHT_SUFFIXES):
        return (f"weights {value!r} is neither \"none\", \"imagenet\" nor a weights file "
                "(a path ending .weights.h5, .h5 or .keras)")
    return None


def _fits(name: str) -> Any:
    def fits(shape: tuple[int, ...], params: dict[str, Any]) -> str | None:
        if len(shape) in (2, 3) and min(shape[:2]) < MIN_SIDE:
            return (f"model {name!r} needs images at least {MIN_SIDE}x{MIN_SIDE}, but the samples are "
                    f"shaped {tuple(shape)}: resize them (a preprocessing step) or choose a smaller model "
                    "such as 'cnn2d'")
        if len(shape) == 3 and shape[2] > 3:
            return (f"model {name!r} takes images with 1 to 3 channels, but the samples are shaped "
                    f"{tuple(shape)}: choose 'cnn2d' or 'resnet2d', which take any number of channels")
        return _check_weights(params["weights"])

    return fits


def _channels_to_rgb(keras: Any, x: Any, channels: int) -> Any:
    """Repeat 1 or 2 channels to 3 with a frozen 1x1 convolution (serialisable, unlike a Lambda)."""
    if channels == 3:
        return x
    import numpy as np

    layer = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="channel_repeat")
    y = layer(x)
    kernel = np.zeros((1, 1, channels, 3), dtype="float32")
    for out in range(3):
        kernel[0, 0, out % channels, out] = 1.0
    layer.set_weights([kernel])
    return y


def _builder(name: str, application: str) -> Any:
    def build(input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any]) -> Any:
        problem = _fits(name)(tuple(input_shape), params)
        if problem:
            raise BluenoError(problem)
        import keras

        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 2 else inputs
        x = _channels_to_rgb(keras, x, int(x.shape[-1]))
        kwargs: dict[str, Any] = {"include_top": False, "pooling": "avg", "input_shape": (*input_shape[:2], 3),
                                  "weights": "imagenet" if params["weights"] == "imagenet" else None}
        if name == "mobilenetv2":
            kwargs["alpha"] = params["alpha"]
        base = getattr(keras.applications, application)(**kwargs)
        if params["weights"] not in ("none", "imagenet"):
            path = Path(params["weights"]).expanduser()
            if not path.is_file():
                raise BluenoError(f"weights file {path} does not exist: give the path of a file saved with "
                                  f"base.save_weights(...) from keras.applications.{application}")
            try:
                base.load_weights(path)
            except (ValueError, OSError) as exc:
                raise BluenoError(f"{path} does not hold weights of keras.applications.{application} "
                                  f"(include_top=False) for inputs shaped {(*input_shape[:2], 3)}: {exc}") from None
        base = keras.Model(base.input, base.output, name=BASE_LAYER)
        base.trainable = not params["freeze_base"]
        # training=False keeps a frozen base's batch-norm statistics fixed too (the usual fine-tuning recipe).
        x = base(x, training=False) if params["freeze_base"] else base(x)
        if params["dense_units"]:
            x = keras.layers.Dense(params["dense_units"], activation="relu")(x)
        if params["dropout"]:
            x = keras.layers.Dropout(params["dropout"])(x)
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
        return keras.Model(inputs, outputs, name=name)

    return build


def _common() -> tuple[Hyperparam, ...]:
    return (
        Hyperparam("weights", str, "none",
                   help='"none" (random start), "imagenet" (downloaded once; needs internet) or a path '
                        "to a weights file of this base"),
        Hyperparam("freeze_base", bool, False, help="keep the base's weights fixed; train the head only"),
        Hyperparam("fine_tune_after", int, 0, low=0, high=100000,
                   help="with freeze_base: unfreeze the base after this many epochs (0: never)"),
        Hyperparam("dense_units", int, 0, low=0, high=8192,
                   help="units of a dense layer between the base and the output (0: none)"),
        Hyperparam("dropout", float, 0.0, low=0.0, high=0.9, help="dropout before the output (0: none)"),
    )


PRETRAINED: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="resnet50", description="keras.applications ResNet50 base (pretrained or not) + a softmax head; "
        "images at least 32x32, 1-3 channels.",
        hyperparams=_common(), build=_builder("resnet50", "ResNet50"), input_kind="image",
        fits=_fits("resnet50"),
    ),
    ModelSpec(
        name="mobilenetv2", description="keras.applications MobileNetV2 base + a softmax head; images at "
        "least 32x32, 1-3 channels; alpha scales its width.",
        hyperparams=(*_common(), Hyperparam("alpha", float, 1.0, choices=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
                                            help="width multiplier (ImageNet weights exist for these)")),
        build=_builder("mobilenetv2", "MobileNetV2"), input_kind="image", fits=_fits("mobilenetv2"),
    ),
    ModelSpec(
        name="efficientnetb0", description="keras.applications EfficientNetB0 base + a softmax head; images "
        "at least 32x32, 1-3 channels (it rescales 0-255 inputs itself).",
        hyperparams=_common(), build=_builder("efficientnetb0", "EfficientNetB0"), input_kind="image",
        fits=_fits("efficientnetb0"),
    ),
)
