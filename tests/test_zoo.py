"""The model zoo: declarations, parameter checks, user models, and every built-in training."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from blueno import BluenoError, zoo
from blueno.workspace import Workspace
from blueno.zoo.models import BUILTIN

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "models.md"


def test_that_listing_the_zoo_does_not_import_tensorflow() -> None:
    code = (
        "import sys, blueno.zoo as z; names = sorted(z.load()); "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'imported TF'; print(names)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("['cnn2d', 'cnn3d', 'efficientnetb0', 'mlp', 'mobilenetv2', 'resnet2d', "
                                  "'resnet50']")


def test_that_resolve_params_fills_defaults_and_coerces() -> None:
    spec = zoo.load()["mlp"]
    params = zoo.resolve_params(spec, {"hidden_units": 8.0, "learning_rate": 1})
    assert params["hidden_units"] == 8 and isinstance(params["hidden_units"], int)
    assert params["learning_rate"] == 1.0 and params["epochs"] == 10 and params["activation"] == "relu"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden_unit": 8}, "no hyperparameter 'hidden_unit'"),
        ({"dropout": 2.0}, "'dropout': 2.0 is above the maximum 0.9"),
        ({"activation": "sigmoidal"}, "'activation': 'sigmoidal' is not one of"),
    ],
)
def test_that_bad_params_are_refused_with_what_is_valid(params: dict, message: str) -> None:
    with pytest.raises(BluenoError, match=message):
        zoo.resolve_params(zoo.load()["mlp"], params)


def test_that_image_models_refuse_flat_samples_and_name_the_fix() -> None:
    with pytest.raises(BluenoError) as excinfo:
        zoo.check_input(zoo.load()["cnn2d"], (64,), "flat@1")
    message = str(excinfo.value)
    assert "'cnn2d'" in message and "(64,)" in message and "flat@1" in message and "'mlp'" in message
    zoo.check_input(zoo.get("cnn2d"), (8, 8), "digits")
    zoo.check_input(zoo.get("cnn3d"), (4, 8, 8, 1), "volumes")
    zoo.check_input(zoo.get("mlp"), (3, 4, 5, 6, 7), "anything")


@pytest.mark.parametrize(
    ("name", "shape", "params", "message"),
    [
        ("cnn2d", (8, 8), {"conv_blocks": 4}, "use conv_blocks <= 3"),
        ("resnet2d", (8, 8, 1), {"stages": 5}, "use stages <= 4"),
        ("cnn3d", (2, 8, 8), {"conv_blocks": 2}, "use conv_blocks <= 1"),
    ],
)
def test_that_more_pooling_than_the_input_allows_is_a_clear_error(
    name: str, shape: tuple[int, ...], params: dict, message: str
) -> None:
    spec = zoo.load()[name]
    with pytest.raises(BluenoError, match=message):
        spec.build(shape, 10, zoo.resolve_params(spec, params))


def test_that_user_models_in_the_workspace_zoo_are_registered(workspace: Workspace) -> None:
    workspace.zoo_dir.mkdir()
    (workspace.zoo_dir / "tiny_linear.py").write_text(textwrap.dedent("""
        from blueno.zoo import Hyperparam, ModelSpec, register

        def build(input_shape, n_classes, params):
            import keras
            inputs = keras.Input(shape=input_shape)
            x = keras.layers.Flatten()(inputs)
            return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))

        register(ModelSpec(
            name="tiny_linear", description="test model",
            hyperparams=(Hyperparam("unused", int, 1, low=0, high=9),), build=build,
        ))
    """))
    assert "tiny_linear" in zoo.load(workspace)
    assert zoo.registry(workspace).get("tiny_linear").param("unused").default == 1


SHAPES = {
    "mlp": [(8, 8), (20,)],
    "cnn2d": [(8, 8), (8, 8, 3)],
    "resnet2d": [(8, 8)],
    "cnn3d": [(4, 8, 8), (4, 8, 8, 2)],
}


@pytest.mark.parametrize(("name", "shape"), [(n, s) for n, shapes in SHAPES.items() for s in shapes])
def test_that_each_builtin_model_builds_and_trains_one_epoch(name: str, shape: tuple[int, ...]) -> None:
    import keras

    keras.utils.set_random_seed(0)
    spec = zoo.load()[name]
    params = zoo.resolve_params(spec, {})
    model = spec.build(shape, 3, params)
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(0).normal(size=(48, *shape)).astype("float32")
    y = np.arange(48) % 3
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probs = model.predict(x[:4], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def documented(hp: zoo.Hyperparam) -> str:
    """The start of the hyperparameter's row in docs/models.md (defaults written as in a grid file)."""
    default = {True: "true", False: "false"}[hp.default] if hp.type is bool else (
        f'"{hp.default}"' if hp.type is str else repr(hp.default))
    return f"| `{hp.name}` | {hp.type.__name__} | `{default}` |"


def test_that_every_builtin_is_tested_and_documented() -> None:
    assert set(SHAPES) == {spec.name for spec in BUILTIN}
    docs = DOCS.read_text()
    for spec in BUILTIN:
        assert f"## `{spec.name}`" in docs
        for hp in spec.hyperparams:
            assert documented(hp) in docs, (spec.name, hp.name)
    for hp in zoo.TRAINING_PARAMS:
        assert documented(hp) in docs, hp.name


def test_that_the_user_model_example_in_the_docs_works(workspace: Workspace) -> None:
    text = DOCS.read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    workspace.zoo_dir.mkdir()
    (workspace.zoo_dir / "docs_example.py").write_text(example)
    spec = zoo.load(workspace)["wide_cnn"]
    model = spec.build((8, 8), 4, zoo.resolve_params(spec, {"width": 1}))
    assert model.output_shape == (None, 4)
    with pytest.raises(BluenoError, match="at least 4x4"):
        spec.build((2, 2), 4, zoo.resolve_params(spec, {}))
