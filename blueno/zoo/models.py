"""The built-in architectures.

Defaults are small on purpose: each trains in seconds on the 8x8 digits demo
on a CPU, so a first grid shows results at once; the ranges let a grid scale
them up.  Every model ends in a softmax over ``n_classes`` (two for a binary
task), so the trainer reads class probabilities the same way from all of them.
Keras is imported inside the build functions only.
"""

from __future__ import annotations

from typing import Any

from blueno import BluenoError
from blueno.zoo.base import Hyperparam, ModelSpec

ACTIVATIONS = ("relu", "gelu", "elu", "selu", "tanh", "swish")
BN_MOMENTUM = 0.9


def _dropout() -> Hyperparam:
    return Hyperparam("dropout", float, 0.0, low=0.0, high=0.9,
                      help="fraction of units dropped while training (0: none)")


def halvings_problem(name: str, shape: tuple[int, ...], spatial_rank: int, param: str, value: int,
                     halvings: int) -> str | None:
    """Why a configuration would pool the input below one pixel, naming the fix (None: it fits)."""
    if len(shape) < spatial_rank:
        return None  # the rank check (zoo.check_input) reports this
    smallest = min(shape[:spatial_rank])
    if smallest >> halvings < 1:
        most = value - halvings + smallest.bit_length() - 1
        return (
            f"model {name!r} with {param}={value} halves each spatial side {halvings} times, but the "
            f"samples are shaped {tuple(shape)}: use {param} <= {most}, or larger inputs"
        )
    return None


def _halvings_fit(name: str, shape: tuple[int, ...], spatial_rank: int, param: str, value: int,
                  halvings: int) -> None:
    """Refuse a configuration that would pool the input below one pixel, naming the fix."""
    problem = halvings_problem(name, shape, spatial_rank, param, value, halvings)
    if problem:
        raise BluenoError(problem)


def _fits_cnn2d(shape: tuple[int, ...], params: dict[str, Any]) -> str | None:
    return halvings_problem("cnn2d", shape, 2, "conv_blocks", params["conv_blocks"], params["conv_blocks"])


def _fits_resnet2d(shape: tuple[int, ...], params: dict[str, Any]) -> str | None:
    return halvings_problem("resnet2d", shape, 2, "stages", params["stages"], params["stages"] - 1)


def _fits_cnn3d(shape: tuple[int, ...], params: dict[str, Any]) -> str | None:
    return halvings_problem("cnn3d", shape, 3, "conv_blocks", params["conv_blocks"], params["conv_blocks"])


def _image_input(keras: Any, shape: tuple[int, ...], spatial_rank: int) -> tuple[Any, Any]:
    """The model input and, for samples without a channel axis, a view that adds one."""
    inputs = keras.Input(shape=shape)
    if len(shape) == spatial_rank:
        return inputs, keras.layers.Reshape((*shape, 1))(inputs)
    return inputs, inputs


def _head(keras: Any, x: Any, n_classes: int, params: dict[str, Any]) -> Any:
    if params.get("dense_units"):
        x = keras.layers.Dense(params["dense_units"], activation="relu")(x)
    if params["dropout"]:
        x = keras.layers.Dropout(params["dropout"])(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)


def build_mlp(input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any]) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for _ in range(params["layers"]):
        x = keras.layers.Dense(params["hidden_units"], activation=params["activation"])(x)
        if params["dropout"]:
            x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")


def build_cnn2d(input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any]) -> Any:
    _halvings_fit("cnn2d", input_shape, 2, "conv_blocks", params["conv_blocks"], params["conv_blocks"])
    import keras

    inputs, x = _image_input(keras, input_shape, 2)
    for block in range(params["conv_blocks"]):
        x = keras.layers.Conv2D(params["filters"] * 2**block, params["kernel_size"], padding="same",
                                activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, params), name="cnn2d")


def build_resnet2d(input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any]) -> Any:
    _halvings_fit("resnet2d", input_shape, 2, "stages", params["stages"], params["stages"] - 1)
    import keras

    layers = keras.layers

    def norm(x: Any) -> Any:
        # Keras' default momentum (0.99) leaves the inference statistics far from the
        # training ones after the few hundred steps of a small dataset.
        return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)

    inputs, x = _image_input(keras, input_shape, 2)
    x = layers.Conv2D(params["filters"], 3, padding="same", use_bias=False)(x)
    x = layers.Activation("relu")(norm(x))
    for stage in range(params["stages"]):
        filters = params["filters"] * 2**stage
        for block in range(params["blocks_per_stage"]):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
            y = layers.Activation("relu")(norm(y))
            y = norm(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = norm(layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut))
            x = layers.Activation("relu")(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, params), name="resnet2d")


def build_cnn3d(input_shape: tuple[int, ...], n_classes: int, params: dict[str, Any]) -> Any:
    _halvings_fit("cnn3d", input_shape, 3, "conv_blocks", params["conv_blocks"], params["conv_blocks"])
    import keras

    inputs, x = _image_input(keras, input_shape, 3)
    for block in range(params["conv_blocks"]):
        x = keras.layers.Conv3D(params["filters"] * 2**block, params["kernel_size"], padding="same",
                                activation="relu")(x)
        x = keras.layers.MaxPooling3D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _head(keras, x, n_classes, params), name="cnn3d")


_FILTERS_HELP = "convolution filters in the first block; each later block doubles them"
_DENSE_HELP = "units of the dense layer before the output (0: none)"

BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="mlp",
        description="Fully connected network; takes any input, flattened.",
        hyperparams=(
            Hyperparam("hidden_units", int, 64, low=1, high=8192, log=True, help="units per hidden layer"),
            Hyperparam("layers", int, 1, low=0, high=16, help="hidden layers (0: logistic regression)"),
            _dropout(),
            Hyperparam("activation", str, "relu", choices=ACTIVATIONS, help="hidden-layer activation"),
        ),
        build=build_mlp,
    ),
    ModelSpec(
        name="cnn2d",
        description="Convolution + max-pooling blocks, then a dense head; images (H, W) or (H, W, C).",
        hyperparams=(
            Hyperparam("filters", int, 16, low=1, high=1024, log=True, help=_FILTERS_HELP),
            Hyperparam("conv_blocks", int, 2, low=1, high=8, help="conv + 2x2 max-pool blocks"),
            Hyperparam("kernel_size", int, 3, low=1, high=15, help="convolution kernel side"),
            _dropout(),
            Hyperparam("dense_units", int, 64, low=0, high=8192, help=_DENSE_HELP),
        ),
        build=build_cnn2d,
        input_kind="image",
        fits=_fits_cnn2d,
    ),
    ModelSpec(
        name="resnet2d",
        description="Small ResNet: residual blocks with batch norm, stages halve the resolution; images.",
        hyperparams=(
            Hyperparam("filters", int, 16, low=1, high=1024, log=True,
                       help="filters of the first stage; each later stage doubles them"),
            Hyperparam("stages", int, 2, low=1, high=6, help="stages; each after the first halves H and W"),
            Hyperparam("blocks_per_stage", int, 1, low=1, high=16, help="residual blocks per stage"),
            _dropout(),
        ),
        build=build_resnet2d,
        input_kind="image",
        fits=_fits_resnet2d,
    ),
    ModelSpec(
        name="cnn3d",
        description="3-D convolution + max-pooling blocks, then a dense head; volumes (D, H, W[, C]).",
        hyperparams=(
            Hyperparam("filters", int, 8, low=1, high=512, log=True, help=_FILTERS_HELP),
            Hyperparam("conv_blocks", int, 2, low=1, high=6, help="conv + 2x2x2 max-pool blocks"),
            Hyperparam("kernel_size", int, 3, low=1, high=9, help="convolution kernel side"),
            _dropout(),
            Hyperparam("dense_units", int, 32, low=0, high=8192, help=_DENSE_HELP),
        ),
        build=build_cnn3d,
        input_kind="volume",
        fits=_fits_cnn3d,
    ),
)
