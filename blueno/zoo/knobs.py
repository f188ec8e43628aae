"""Training knobs every model takes: augmentation, loss, class weights, optimizer settings, LR schedule.

They are declared here as :class:`Hyperparam` so the grid validates them, the
GUI form shows them and ``docs/models.md`` lists them, like a model's own
parameters.  Unlike the original training parameters, a knob left at its
default is left out of a job's configuration (:func:`drop_defaults`), so the
configuration hashes of grids written before the knobs existed do not change.

This module is Keras-free; :mod:`blueno.zoo.keras_parts` turns the knobs into
Keras objects inside the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from blueno.zoo.base import Hyperparam

if TYPE_CHECKING:
    from blueno.zoo.base import ModelSpec

LOSSES = ("sparse_categorical_crossentropy", "binary_crossentropy", "focal")

KNOBS: tuple[Hyperparam, ...] = (
    # augmentation (training batches only; validation and test data are never augmented)
    Hyperparam("augment_rotation", float, 0.0, low=0.0, high=180.0,
               help="random rotation of images by up to this many degrees either way (images only)"),
    Hyperparam("augment_shift", float, 0.0, low=0.0, high=0.5,
               help="random shift of images by up to this fraction of height and width (images only)"),
    Hyperparam("augment_zoom", float, 0.0, low=0.0, high=0.9,
               help="random zoom of images in or out by up to this fraction (images only)"),
    Hyperparam("augment_flip_vertical", bool, False,
               help="random vertical (up-down) flips of images and volumes"),
    # the loss and class balance
    Hyperparam("loss", str, "sparse_categorical_crossentropy", choices=LOSSES,
               help="training loss; binary_crossentropy needs two classes; focal down-weights easy samples"),
    Hyperparam("focal_gamma", float, 2.0, low=0.0, high=10.0,
               help="focusing exponent of the focal loss (0: plain cross-entropy)"),
    Hyperparam("class_weight", str, "none", choices=("none", "balanced"),
               help="balanced: weight each class by n_samples / (n_classes * its count) in the loss"),
    # optimizer settings
    Hyperparam("adam_beta_1", float, 0.9, low=0.0, high=0.9999, help="Adam/AdamW first-moment decay"),
    Hyperparam("adam_beta_2", float, 0.999, low=0.0, high=0.99999, help="Adam/AdamW second-moment decay"),
    Hyperparam("momentum", float, 0.0, low=0.0, high=0.999, help="SGD and RMSprop momentum"),
    Hyperparam("weight_decay", float, 0.0, low=0.0, high=1.0,
               help="decoupled weight decay (all optimizers; AdamW's own default is 0.004 when 0)"),
    # reduce-on-plateau (reduce_lr_patience turns it on)
    Hyperparam("reduce_lr_factor", float, 0.5, low=0.01, high=0.99,
               help="multiply the learning rate by this on a plateau"),
    Hyperparam("reduce_lr_min", float, 0.0, low=0.0, high=1.0, help="never cut the learning rate below this"),
)

_KNOBS = {hp.name: hp for hp in KNOBS}
_IMAGE_ONLY = ("augment_rotation", "augment_shift", "augment_zoom")


def drop_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the knobs left at their defaults (what a job's configuration stores)."""
    return {k: v for k, v in params.items() if k not in _KNOBS or v != _KNOBS[k].default}


def spatial_rank(spec: ModelSpec, sample_shape: tuple[int, ...]) -> int:
    """How many leading axes of a sample are spatial: 2 for images, 3 for volumes, 0 for flat data."""
    if spec.input_kind == "volume":
        return 3
    if spec.input_kind == "image" or len(sample_shape) in (2, 3):
        return 2 if len(sample_shape) >= 2 else 0
    return 0


def knob_problem(spec: ModelSpec, params: Mapping[str, Any], sample_shape: tuple[int, ...],
                 dataset: str = "the dataset", n_classes: int | None = None) -> str | None:
    """Why these knobs cannot apply to this model and data (None: they can).  Keras-free."""
    rank = spatial_rank(spec, sample_shape)
    image_only = [name for name in _IMAGE_ONLY if params.get(name)]
    if image_only and rank != 2:
        what = "volumes" if rank == 3 else f"flat samples shaped {tuple(sample_shape)}"
        return (f"{', '.join(image_only)} transform 2-D images, but model {spec.name!r} on {dataset} "
                f"takes {what}: set {' and '.join(f'{n} = 0' for n in image_only)} "
                "(volumes take augment_flip, augment_flip_vertical and augment_noise)")
    flips = [name for name in ("augment_flip", "augment_flip_vertical") if params.get(name)]
    if flips and rank == 0:
        return (f"{' and '.join(flips)} flip images or volumes, but {dataset} has flat samples shaped "
                f"{tuple(sample_shape)}: turn {' and '.join(flips)} off")
    if n_classes is not None and params.get("loss") == "binary_crossentropy" and n_classes != 2:
        return (f"loss 'binary_crossentropy' needs two classes, but {dataset} has {n_classes}: use "
                "loss = \"sparse_categorical_crossentropy\" or \"focal\"")
    return None
