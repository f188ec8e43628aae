"""A grid's preprocessing axis, end to end: derived versions made on demand, each run naming its own."""

from __future__ import annotations

import json

import pytest
from training_helpers import submit

from blueno import datasets
from blueno.scheduler import Scheduler, Slot


@pytest.mark.slow
def test_that_a_two_chain_preprocessing_axis_trains_on_two_derived_versions(workspace, store) -> None:
    digits = datasets.make_demo(workspace, store)
    submit(workspace, store, f"""
name = "two-chains"
dataset = "{digits.ref}"
preprocessing = [[], [{{ transform = "clip", params = {{ low = 0.25, high = 0.75, rescale = true }} }}]]
[params]
epochs = 1
[models.mlp]
hidden_units = 8
""")
    Scheduler(workspace, [Slot("cpu0", None), Slot("cpu1", None)]).run(until_empty=True)

    rows = store.query("SELECT runs.dataset, jobs.state, jobs.config FROM runs JOIN jobs ON jobs.id = runs.job_id")
    assert [row["state"] for row in rows] == ["succeeded", "succeeded"]
    trained_on = {json.dumps(json.loads(row["config"])["preprocessing"]): row["dataset"] for row in rows}
    assert trained_on["[]"] == digits.ref
    (chain,) = (key for key in trained_on if key != "[]")
    derived = datasets.resolve(store, workspace, trained_on[chain])
    assert derived.ref != digits.ref and derived.parent_id == digits.id
    assert derived.transform["name"] == "clip" and derived.transform["params"]["low"] == 0.25
    x, *_ = datasets.load_arrays(workspace, derived)
    assert x.min() == 0.0 and x.max() == 1.0  # clipped to [0.25, 0.75], then stretched back to [0, 1]
