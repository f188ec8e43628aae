"""The whole loop in the window, with the real trainer: grid form → queue → scheduler → curves."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelectionModel

from blueno import datasets


@pytest.mark.slow
def test_that_an_enqueued_grid_trains_to_success_and_its_curves_paint(
    qtbot, window, workspace, store
) -> None:
    datasets.make_demo(workspace, store)
    workspace.settings_path.write_text("[scheduler]\nslots = 2\n")
    builder = window.grid_view
    builder._datasets.request()
    qtbot.waitUntil(lambda: builder.dataset.findText("digits") >= 0, timeout=5000)
    for name, box in builder.model_boxes.items():
        box.setChecked(name == "mlp")
    builder.rows["params.epochs"].mode.setCurrentText("fixed")
    builder.rows["params.epochs"].text.setText("3")
    builder.rows["models.mlp.hidden_units"].mode.setCurrentText("list")
    builder.rows["models.mlp.hidden_units"].text.setText("8, 16")
    qtbot.waitUntil(lambda: builder.summary.text().startswith("2 trainings"), timeout=5000)
    builder.enqueue_button.click()

    queue = window.queue_view
    qtbot.waitUntil(lambda: queue.model.rowCount() == 2, timeout=5000)
    queue.actions_by_name["start"].trigger()
    qtbot.waitUntil(
        lambda: [r["state"] for r in queue.model.rows()] == ["succeeded", "succeeded"], timeout=240_000
    )

    runs = window.runs_view
    window.tabs.setCurrentWidget(runs)
    qtbot.waitUntil(lambda: runs.model.rowCount() == 2, timeout=5000)
    runs.table.selectionModel().select(
        runs.proxy.index(0, 0),
        QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
    )
    live = runs.plot.live
    qtbot.waitUntil(lambda: any(series.n == 3 for series in live.series.values()), timeout=10_000)
    key = next(k for k, series in live.series.items() if series.n == 3)
    colour = live.curves[key].opts["pen"].color().rgb()

    def painted() -> bool:  # once the redraw timer has drawn it
        image = runs.plot.widget.grab().toImage()
        return any(image.pixel(x, y) == colour for x in range(image.width()) for y in range(image.height()))

    qtbot.waitUntil(painted, timeout=10_000)
    queue.actions_by_name["stop"].trigger()
    qtbot.waitUntil(lambda: window.scheduler.status.state == "stopped", timeout=30_000)
