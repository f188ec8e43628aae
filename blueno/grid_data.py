"""Whether a grid's models can take its dataset, checked before anything is queued (no Keras).

``parse_grid`` checks a grid on its own; this checks it against the data:
the dataset must exist in the workspace, and each chosen model must accept
its sample shape (:func:`blueno.zoo.check_input`: a ``cnn3d`` needs volumes,
so 8×8 digits are refused here, not after a trainer has started).  Trainings
with a preprocessing chain are checked only when the chain is empty, since a
transform (``resize``, ``mip``…) may change the shape.  The grid builder and
``blueno batch`` / ``queue add`` call the same function.
"""

from __future__ import annotations

from blueno import BluenoError, datasets, zoo
from blueno.grid import Grid, GridError, check_data, zoo_models
from blueno.store import Store
from blueno.workspace import Workspace


def check_data_fits(store: Store, workspace: Workspace, grid: Grid, source: str = "grid") -> None:
    """Raise :class:`GridError` (key ``dataset`` or ``models.NAME``) when the data cannot be trained on.

    Every dataset of the grid's dataset axis must be in the workspace; then
    each configuration is checked against its dataset's samples by
    :func:`blueno.grid.check_data` (input rank, pooling depth, a pretrained
    base's minimum size, the augmentation and loss knobs).
    """
    if not grid.dataset:  # a grid of the user's own command may train without a Blueno dataset
        return
    described: dict[str, tuple[tuple[int, ...], int] | None] = {}
    for ref in grid.datasets or (grid.dataset,):
        try:
            version = datasets.resolve(store, workspace, ref)
        except BluenoError as exc:
            raise GridError(source, "dataset", str(exc).rstrip("."),
                            "import it first or pick another dataset") from None
        shape = tuple(version.sample_shape or ())
        described[ref] = (shape, len(version.class_names)) if shape else None
        if shape and any(not config.preprocessing for config in grid.configs):
            _check_ranks(workspace, grid, shape, version.ref, source)
    check_data(grid, described.get, zoo_models(workspace))


def _check_ranks(workspace: Workspace, grid: Grid, shape: tuple[int, ...], ref: str, source: str) -> None:
    specs = zoo_models(workspace)
    for name in grid.models:
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            zoo.check_input(spec, shape, ref)
        except BluenoError as exc:
            raise GridError(source, f"models.{name}", f"{name} cannot take this data",
                            str(exc)) from None
