"""The live plot: decimation that keeps extremes, and a curve that really paints."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gui.plot import LivePlot, Series, decimate, smooth


def test_that_decimation_keeps_each_pixel_columns_extremes() -> None:
    x = np.arange(10_000, dtype=float)
    y = np.sin(x / 50.0)
    y[5_000] = 9.0  # one spike must survive
    dx, dy = decimate(x, y, 0.0, 10_000.0, 500)
    assert len(dx) <= 2 * 500 + 2
    assert dy.max() == 9.0
    assert dy.min() == y.min()


def test_that_decimation_clips_to_the_view_and_keeps_one_point_either_side() -> None:
    x = np.arange(100_000, dtype=float)
    dx, _ = decimate(x, x, 1_000.0, 2_000.0, 100)
    assert dx[0] == 999.0 and dx[-1] == 2_001.0


def test_that_short_series_pass_through_unchanged() -> None:
    x = np.arange(10, dtype=float)
    dx, dy = decimate(x, x * 2, 0.0, 9.0, 100)
    assert np.array_equal(dx, x) and np.array_equal(dy, x * 2)


def test_that_smoothing_skips_nans_without_spreading_them() -> None:
    values = np.array([1.0, np.nan, 3.0, 3.0])
    out = smooth(values, 0.5)
    assert np.isnan(out[1]) and out[0] == 1.0 and out[2] == 2.0 and out[3] == 2.5


def test_that_a_series_grows_and_stays_sorted_when_a_resumed_run_rewrites_steps() -> None:
    series = Series()
    series.extend(np.arange(100.0), np.zeros(100))
    series.extend(np.arange(90.0, 120.0), np.ones(30))
    x, y = series.view()
    assert np.array_equal(x, np.arange(120.0)) and y[95] == 1.0


def test_that_the_live_plot_paints_a_curve(qtbot) -> None:
    widget = pg.PlotWidget(background="w")
    qtbot.addWidget(widget)
    widget.resize(640, 400)
    widget.show()
    live = LivePlot(widget.getPlotItem())
    steps = np.arange(5_000, dtype=float)
    live.add_points((7, "loss"), steps, np.exp(-steps / 1000))
    live.redraw()
    qtbot.waitUntil(lambda: len(live.curves[(7, "loss")].getData()[0]) > 0)
    colour = live.curves[(7, "loss")].opts["pen"].color().rgb()
    image = widget.grab().toImage()
    matching = sum(
        1 for x in range(image.width()) for y in range(image.height()) if image.pixel(x, y) == colour
    )
    assert matching > 50, "the curve did not paint"
    assert len(live.curves[(7, "loss")].getData()[0]) <= 2 * live.pixel_columns() + 2


def test_that_only_changed_curves_are_decimated_again(qtbot) -> None:
    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    widget.resize(640, 400)
    widget.show()
    live = LivePlot(widget.getPlotItem())
    for run_id in range(5):
        live.add_points((run_id, "loss"), np.arange(100.0), np.ones(100))
    assert live.redraw() == 5
    live.add_points((3, "loss"), np.arange(100.0, 110.0), np.ones(10))
    assert live.redraw() == 1


def test_that_settled_curves_paint_from_the_layer_image(qtbot, monkeypatch) -> None:
    monkeypatch.setattr("gui.plot.SETTLE_S", 0.0)
    widget = pg.PlotWidget(background="w")
    qtbot.addWidget(widget)
    widget.resize(640, 400)
    widget.show()
    live = LivePlot(widget.getPlotItem())
    steps = np.arange(2_000, dtype=float)
    live.add_points((3, "val_loss"), steps, np.exp(-steps / 500))
    live.redraw()
    assert not live.curves[(3, "val_loss")].isVisible()
    colour = live.curves[(3, "val_loss")].opts["pen"].color().rgb()
    image = widget.grab().toImage()
    matching = sum(
        1 for x in range(image.width()) for y in range(image.height()) if image.pixel(x, y) == colour
    )
    assert matching > 50, "the settled curve did not paint"
