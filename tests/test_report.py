"""HTML reports: self-contained, with the curves, confusion matrix, ROC/PR, gallery and top runs; opened in Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from training_helpers import submit, threes_and_eights, train_queued

from blueno import datasets, report, runs
from blueno.cli import main
from blueno.store import Store
from blueno.svg_charts import nice_ticks
from blueno.workspace import Workspace

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Experiment:
    def __init__(self, workspace: Workspace, store: Store, digits: int, binary: int) -> None:
        self.workspace, self.store, self.digits, self.binary = workspace, store, digits, binary


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Experiment]:
    """A small demo-like experiment on the digits (4 runs) and one binary run, all really trained."""
    workspace = Workspace(tmp_path_factory.mktemp("report") / "ws").ensure()
    with workspace.open_store() as store:
        datasets.make_demo(workspace, store)
        digits = submit(workspace, store, """
name = "demo"
dataset = "digits"
[split]
validation = 0.2
seed = 0
[params]
epochs = 3
batch_size = 32
learning_rate = [0.003, 0.02]
[models.mlp]
hidden_units = [8, 32]
""")
        ref = threes_and_eights(workspace, store)
        binary = submit(workspace, store, f"""
name = "binary"
dataset = "{ref}"
[split]
validation = 0.3
test = 0.2
[params]
epochs = 3
batch_size = 16
monitor = "val_auc"
learning_rate = 0.005
[models.mlp]
hidden_units = 8
""")
        train_queued(workspace, store)
        yield Experiment(workspace, store, digits, binary)


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    assert "@import" not in page and "url(" not in page


def test_that_the_experiment_report_shows_top_runs_curves_confusion_and_effects(
    experiment: Experiment, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    code = main(["--home", str(experiment.workspace.root), "report", f"exp:{experiment.digits}", "--out", str(out)])
    assert code == 0
    path = out / f"experiment-{experiment.digits}.html"
    assert f"wrote {path}" in capsys.readouterr().out
    page = path.read_text()
    assert_self_contained(page)

    ranked = runs.top_runs(experiment.store, experiment.digits)
    assert len(ranked) == 4
    top = page.index("Top runs (ranked on validation)")
    for rank, run in enumerate(ranked, 1):  # in rank order
        assert f"<tr><td>{rank}</td><td>{run['id']}</td>" in page[top:]
    for section in ("Curves of the top runs", "Parameter effects on val_loss", "Training curves",
                    "Confusion matrix", "Per class (validation, one vs rest)", "Misclassified samples (validation)",
                    f"The best run: {ranked[0]['id']}", "hidden_units", "learning_rate"):
        assert section in page, section
    assert page.count("<svg") >= 5 and "predicted</text>" in page  # the confusion matrix heatmap
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert images and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    csv_lines = (out / f"experiment-{experiment.digits}.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("run,kind,model,dataset,monitor,score")


def test_that_a_binary_run_report_has_roc_pr_and_marks_test_figures(
    experiment: Experiment, tmp_path: Path
) -> None:
    run_id = experiment.store.query_one("SELECT id FROM runs WHERE experiment_id = ?", (experiment.binary,))[0]
    runs.evaluate_test(experiment.workspace, experiment.store, [run_id])

    path = report.write_run_report(experiment.workspace, experiment.store, run_id, tmp_path)
    page = path.read_text()

    assert_self_contained(page)
    assert "ROC curve" in page and "precision-recall curve" in page and "Youden" in page
    assert 'TEST (held out)' in page and "confusion matrix, TEST (held out)" in page
    assert "confusion matrix, validation" in page and "val_auc" in page


def test_that_report_targets_name_runs_and_experiments(experiment: Experiment) -> None:
    store = experiment.store
    assert report.parse_target(store, "7") == ("run", 7)
    assert report.parse_target(store, "7", experiment=True) == ("experiment", 7)
    assert report.parse_target(store, "exp:3") == report.parse_target(store, "experiment:3") == ("experiment", 3)
    assert report.parse_target(store, "demo") == ("experiment", experiment.digits)
    with pytest.raises(Exception, match="neither a run id nor an experiment"):
        report.parse_target(store, "nothing-like-this")


def test_that_ticks_are_round_numbers() -> None:
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.13, 0.87) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(1, 10, 6) == [2, 4, 6, 8, 10]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_that_the_report_opens_in_headless_chromium(experiment: Experiment, tmp_path: Path) -> None:
    from PIL import Image

    path = report.write_experiment_report(experiment.workspace, experiment.store, experiment.digits, tmp_path)
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,2000",
             path.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    assert shot.is_file(), result.stderr[-2000:]
    picture = Image.open(shot).convert("RGB")
    assert picture.size == (1280, 2000)
    colours = picture.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, charts and thumbnails, not a blank page
    keep = Path(__file__).resolve().parent.parent / "tests" / "artifacts"
    if keep.is_dir():  # `mkdir tests/artifacts` to keep the screenshot for a look
        shutil.copy(shot, keep / "report-experiment.png")
