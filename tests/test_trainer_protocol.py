"""Trainers report events and never touch the database; any command can be a trainer.

Everything runs through the real scheduler with real subprocesses: the zoo
trainer (Keras, tiny), the stand-in, and a user's plain-Python script declared
in a grid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from standin_model import STANDIN_COMMAND, standin_grid

from blueno import actions, datasets, events, metrics
from blueno.grid import GridError, load_grid, parse_grid
from blueno.queue import EXIT_STALE, JobQueue, JobState
from blueno.scheduler import Scheduler, Slot
from blueno.store import Store
from blueno.workspace import Workspace

GUARD = Path(__file__).resolve().parent / "db_guard"

TRAIN_PY = '''
"""A user's training script: no TensorFlow, no Blueno internals, just the client."""
import json, math, os, sys
from blueno import client

lr = float(sys.argv[sys.argv.index("--lr") + 1])
epochs = int(sys.argv[sys.argv.index("--epochs") + 1])
spec = client.job()
state_file = os.path.join(spec["run_dir"], "state.json")
os.makedirs(spec["run_dir"], exist_ok=True)
start = json.load(open(client.resume_from()))["epoch"] if client.resume_from() else 0
loss = 1.0
for epoch in range(start, epochs):
    for step in range(5):
        loss *= 1 - lr
        client.log_metrics({"batch_loss": loss}, step=epoch * 5 + step + 1)
    with open(state_file + ".tmp", "w") as f:
        json.dump({"epoch": epoch + 1}, f)
    os.replace(state_file + ".tmp", state_file)
    client.epoch_done(epoch + 1, {"val_loss": loss * 1.1, "lr": lr}, checkpoint=state_file)
if lr > 0.5:
    print("diverged", file=sys.stderr)
    sys.exit(1)
client.result(final={"val_loss": loss * 1.1}, best={"val_loss": loss * 1.1}, best_epoch=epochs,
              monitor="val_loss")
'''


def own_grid(folder: Path, rates: str, max_failures: int = 3, script: str = TRAIN_PY) -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "train.py").write_text(script)
    grid = folder / "grid.toml"
    grid.write_text(textwrap.dedent(f"""
        name = "own-script"
        command = ["python", "train.py", "--lr", "{{learning_rate}}", "--epochs", "{{epochs}}"]
        workdir = "src"
        max_failures = {max_failures}
        [params]
        learning_rate = {rates}
        epochs = 3
    """))
    return grid


def run_all(workspace: Workspace, **kwargs) -> None:
    Scheduler(workspace, [Slot("cpu0", None)], heartbeat=0.5, **kwargs).run(until_empty=True)


def test_that_a_plain_python_script_declared_in_a_grid_gets_curves_epochs_and_results(
    workspace: Workspace, store: Store, queue: JobQueue, tmp_path: Path
) -> None:
    grid = load_grid(own_grid(tmp_path / "project", "[0.1, 0.2]"))
    ids = queue.submit(grid).added

    run_all(workspace)

    jobs = queue.jobs(ids=ids)
    assert [(j.state, j.epoch, j.failures) for j in jobs] == [(JobState.SUCCEEDED, 3, 0)] * 2, \
        [j.error for j in jobs]
    for job, lr in zip(jobs, (0.1, 0.2), strict=True):
        assert job.config["workdir"] == str(tmp_path / "project" / "src")
        steps, values = metrics.history(store, job.run_id, "batch_loss")
        assert steps.tolist() == list(range(1, 16)) and values[-1] == pytest.approx((1 - lr) ** 15)
        assert metrics.history(store, job.run_id, "val_loss")[0].tolist() == [1, 2, 3]
        run = store.query_one("SELECT * FROM runs WHERE id = ?", (job.run_id,))
        assert json.loads(run["final"]) == {"val_loss": pytest.approx((1 - lr) ** 15 * 1.1)}
        assert (run["best_epoch"], run["monitor"], run["epochs_done"]) == (3, "val_loss", 3)
    outbox = [row["ref"] for row in store.query("SELECT ref FROM outbox ORDER BY ref")]
    assert outbox == [j.run_id for j in jobs]


def test_that_a_failing_script_is_retried_then_failed_and_a_silent_one_is_judged_by_its_exit_code(
    workspace: Workspace, store: Store, queue: JobQueue, tmp_path: Path
) -> None:
    (failing,) = queue.submit(load_grid(own_grid(tmp_path / "a", "0.9", max_failures=2))).added
    (silent,) = queue.submit(load_grid(own_grid(tmp_path / "b", "0.1", script="print('no reports')\n"))).added

    run_all(workspace)

    job = queue.get(failing)
    assert (job.state, job.failures, job.attempt) == (JobState.FAILED, 2, 2)
    assert "exited with status 1" in job.error and "diverged" in job.error
    assert metrics.history(store, job.run_id, "val_loss")[0].tolist() == [1, 2, 3]  # kept what it reported
    assert queue.get(silent).state == JobState.SUCCEEDED


def test_that_a_command_naming_an_unknown_parameter_is_refused_with_the_fix(tmp_path: Path) -> None:
    grid = own_grid(tmp_path, "0.1")
    grid.write_text(grid.read_text().replace("{learning_rate}", "{learnig_rate}"))
    with pytest.raises(GridError, match=r"\{learnig_rate\} names no parameter.*add learnig_rate under \[params\]"):
        load_grid(grid)
    with pytest.raises(GridError, match="no zoo model"):
        parse_grid('command = ["x"]\n[models.mlp]\n', source="<t>")


# -- a trainer cannot write the database ----------------------------------------------------------


@pytest.fixture
def guarded(workspace: Workspace, monkeypatch: pytest.MonkeyPatch):
    """Trainers started from here load an audit hook that refuses the workspace's blueno.db*."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(GUARD), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BLUENO_TEST_DB_GUARD", str(workspace.root))
    yield workspace.root / "db-guard.log"


def lock_database(workspace: Workspace) -> None:
    for path in workspace.root.glob("blueno.db*"):
        path.chmod(0)  # for good measure: root ignores modes, the audit hook does not


def test_that_the_guard_really_stops_a_process_that_opens_the_database(
    workspace: Workspace, store: Store, guarded: Path
) -> None:
    import subprocess

    probe = subprocess.run(
        [sys.executable, "-c", "from blueno.workspace import Workspace; Workspace.locate().open_store()"],
        env={**os.environ, "BLUENO_HOME": str(workspace.root)}, capture_output=True, text=True,
    )
    assert probe.returncode != 0 and "may not touch the workspace database" in probe.stderr
    assert "sqlite3.connect" in guarded.read_text()


def test_that_stand_in_trainers_record_everything_without_touching_the_database(
    workspace: Workspace, store: Store, queue: JobQueue, guarded: Path, ledger: Path
) -> None:
    ids = queue.submit(standin_grid(3, duration=0.3, steps=3)).added
    lock_database(workspace)

    Scheduler(workspace, [Slot("cpu0", None), Slot("cpu1", None)], trainer_command=STANDIN_COMMAND
              ).run(until_empty=True)

    assert not guarded.exists(), guarded.read_text()
    for job in queue.jobs(ids=ids):
        assert (job.state, job.epoch) == (JobState.SUCCEEDED, 3), job.error
        assert metrics.history(store, job.run_id, "loss")[0].tolist() == [1, 2, 3]
        assert metrics.history(store, job.run_id, "val_loss")[0].tolist() == [1, 2, 3]
    assert len(ledger.read_text().splitlines()) == 3


@pytest.mark.slow
def test_that_a_keras_zoo_trainer_records_everything_without_touching_the_database(
    workspace: Workspace, store: Store, queue: JobQueue, guarded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets.make_demo(workspace, store)
    grid = parse_grid('name = "guarded"\ndataset = "digits"\n[params]\nepochs = 2\nbatch_size = 64\n'
                      '[models.mlp]\nhidden_units = 8\n', source="<guarded>")
    (job_id,) = queue.submit(grid, resolve=actions.dataset_resolver(store, workspace)).added
    lock_database(workspace)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")

    Scheduler(workspace, [Slot("cpu0", None)]).run(until_empty=True)

    assert not guarded.exists(), guarded.read_text()
    job = queue.get(job_id)
    assert (job.state, job.epoch, job.epochs) == (JobState.SUCCEEDED, 2, 2), job.error
    run = store.query_one("SELECT * FROM runs WHERE id = ?", (job.run_id,))
    assert run["epochs_done"] == 2 and run["model_path"] == f"models/run-{job.run_id}/model.keras"
    assert json.loads(run["evaluation"])["validation"]["accuracy"] is not None
    assert (workspace.root / run["model_path"]).is_file()
    n_train = json.loads(run["evaluation"])["split"]["train"]
    assert metrics.history(store, job.run_id, "batch_loss")[0].tolist() == list(range(1, 2 * -(-n_train // 64) + 1))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert metrics.history(store, job.run_id, key)[0].tolist() == [1, 2], key
    assert [tuple(r) for r in store.query("SELECT topic, ref FROM outbox")] == [("run", job.run_id)]


def test_that_blueno_batch_runs_the_worked_example_of_the_docs(workspace: Workspace, store: Store,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from blueno.cli import main

    example = Path(__file__).resolve().parent.parent / "resources" / "examples" / "own-script" / "grid.toml"

    code = main(["--home", str(workspace.root), "batch", str(example), "--slots", "1", "--no-sync"])

    assert code == 0, capsys.readouterr()
    runs = store.query("SELECT best_epoch, monitor, best FROM runs ORDER BY id")
    assert [(r["best_epoch"], r["monitor"]) for r in runs] == [(20, "val_loss")] * 3
    assert [round(json.loads(r["best"])["val_loss"], 4) for r in runs] == [0.3923, 0.245, 0.1569]  # as documented


GATED_SCRIPT = """
from blueno import client
print("spec:", sorted(client.job()), flush=True)
client.log_metrics({"loss": 1.0}, step=1)
"""


@pytest.mark.parametrize("go", [True, False], ids=["recorded", "never-recorded"])
def test_that_a_trainer_waits_on_its_gate_and_does_nothing_when_the_scheduler_never_records_it(
    tmp_path: Path, go: bool
) -> None:
    """``$BLUENO_GATE``: the scheduler writes one byte after recording the trainer's pid; a scheduler
    that died first closes the pipe, and the trainer exits before reading its spec or reporting."""
    spec, events_file = tmp_path / "job.json", tmp_path / "events.jsonl"
    events.write_spec(spec, {"job_id": 1, "attempt": 1})
    gate_r, gate_w = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), events.JOB_ENV: str(spec),
           events.EVENTS_ENV: str(events_file), events.GATE_ENV: str(gate_r)}
    script = subprocess.Popen([sys.executable, "-c", GATED_SCRIPT], env=env, pass_fds=(gate_r,),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.close(gate_r)
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # it waits for the scheduler
            script.wait(0.5)
        if go:
            os.write(gate_w, events.GO)
    finally:
        os.close(gate_w)  # what a killed scheduler's kernel does to its end
    out, _ = script.communicate(timeout=30)
    if go:
        assert script.returncode == 0, out
        assert "spec:" in out and events_file.read_text().count('"metrics"') == 1
    else:
        assert script.returncode == events.EXIT_NOT_RECORDED == EXIT_STALE, out
        assert "the scheduler stopped before it recorded this trainer" in out and "spec:" not in out
        assert not events_file.exists() or events_file.read_text() == ""


def test_that_a_command_that_cannot_start_fails_its_job_with_the_reason_and_leaks_no_pipe(
    workspace: Workspace, queue: JobQueue, tmp_path: Path
) -> None:
    grid = own_grid(tmp_path, "0.1", max_failures=1)
    grid.write_text(grid.read_text().replace('command = ["python"', 'command = ["./no-such-trainer"'))
    (job_id,) = queue.submit(load_grid(grid)).added

    def pipes() -> set[str]:  # only pipes: SQLite keeps closed connections' database descriptors open
        return {target for fd in os.listdir("/proc/self/fd")
                if (target := _readlink(f"/proc/self/fd/{fd}")).startswith("pipe:")}

    before = pipes()
    run_all(workspace, warm=False)

    job = queue.get(job_id)
    assert job.state == JobState.FAILED and "cannot start ./no-such-trainer" in job.error, job.error
    assert pipes() <= before  # the trainer's gate was closed on the way out


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
