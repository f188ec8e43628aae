"""Runs as the CLI and the GUI see them: list, describe, compare, repeat, ensemble, test.

Library functions over the workspace database; ``blueno runs …`` and the GUI's
run detail, comparison and parallel-coordinates views only format what these
return.  Nothing here imports Keras: predictions come from
:func:`blueno.trainer.predict_run` (imported when a model must be run) or from
the ``predictions-<split>.npz`` files the trainer saves next to each model.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from blueno import BluenoError, metrics, run_filter
from blueno.evaluation import HEADLINE, Prediction, average, evaluate, mean_std, predictions_path
from blueno.grid import hash_config
from blueno.monitor import is_maximized
from blueno.queue import insert_job
from blueno.run_table import read_table
from blueno.store import Store, add_outbox, dumps, now
from blueno.workspace import Workspace

JOB_STATES = ("queued", "held", "running", "succeeded", "failed", "cancelled")
_JSON_COLUMNS = ("params", "final", "best", "evaluation", "config")

RUN_SELECT = """
    SELECT runs.*, jobs.state, jobs.attempt, jobs.epoch AS job_epoch, jobs.epochs, jobs.error, jobs.slot,
           jobs.config, jobs.config_hash, jobs.priority, jobs.max_failures
    FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id
"""


def _row(row: Any) -> dict[str, Any]:
    run = dict(row)
    for column in _JSON_COLUMNS:
        run[column] = json.loads(run[column]) if run.get(column) else None
    if run["kind"] == "ensemble" and run["state"] is None:
        run["state"] = "succeeded"  # an ensemble is recorded once its figures exist
    started, ended = run["started"], run["ended"]
    if started is not None and ended is None and run["state"] == "running":
        ended = time.time()
    run["duration"] = ended - started if started is not None and ended is not None else None
    return run


def list_runs(
    store: Store, *, experiment_id: int | None = None, state: str | None = None, ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """Runs with their job's state, newest first; JSON columns parsed, ``duration`` in seconds."""
    where, params = [], []
    if experiment_id is not None:
        where.append("runs.experiment_id = ?")
        params.append(experiment_id)
    if state is not None:
        where.append("COALESCE(jobs.state, CASE runs.kind WHEN 'ensemble' THEN 'succeeded' END) = ?")
        params.append(state)
    if ids is not None:
        where.append(f"runs.id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    sql = RUN_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY runs.id DESC"
    return [_row(row) for row in store.query(sql, params)]


@dataclass
class SearchResult:
    """Runs found by :func:`search`: the table's column titles and the matching rows, in order."""

    columns: list[str]
    rows: list[tuple]
    total: int  # runs searched (before the filter and the limit)

    def records(self) -> list[dict[str, Any]]:
        """Each row as ``{column title: value}`` (for ``--json`` and exports)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def search(
    store: Store, filter: str = "", order: str | None = None, limit: int | None = None, *,
    experiment_id: int | None = None,
) -> SearchResult:
    """Runs matching ``filter`` (the grammar of :mod:`blueno.run_filter`), sorted by ``order``
    (``key`` or ``-key``; default newest first), at most ``limit`` of them.

    The same grammar and the same table as the app's runs view, which filters
    the rows it holds with the same matcher.
    """
    parsed = run_filter.parse(filter)
    table = read_table(store, experiment_id=experiment_id, narrow=parsed)  # SQLite narrows, Python decides
    titles = table.keys.titles()
    match = parsed.matcher(titles)
    rows = [row for row in table.rows if match(row)]
    if order:
        column, descending = run_filter.parse_order(order, titles)
        rows = run_filter.order_rows(rows, column, descending)
    else:
        rows.reverse()  # newest first
    return SearchResult(titles, rows[:limit] if limit is not None else rows, table.searched)


def get_run(store: Store, run_id: int) -> dict[str, Any]:
    row = store.query_one(RUN_SELECT + " WHERE runs.id = ?", (run_id,))
    if row is None:
        raise BluenoError(f"there is no run {run_id}; `blueno runs ls` lists them")
    return _row(row)


def describe_run(store: Store, workspace: Workspace, run_id: int) -> dict[str, Any]:
    """One run in full: parameters, final and best metrics, evaluation, paths, latest metric values."""
    run = get_run(store, run_id)
    for column in ("model_path", "log_path"):
        if run[column]:
            run[column] = str(workspace.root / run[column])
    run["latest_metrics"] = metrics.latest(store, [run_id]).get(run_id, {})
    return run


LOG_TAIL_BYTES = 64 * 1024


def run_with_log(store: Store, workspace: Workspace, run_id: int, tail_bytes: int = LOG_TAIL_BYTES
                 ) -> dict[str, Any]:
    """A run's row with its log's absolute path, its run folder and the last ``tail_bytes`` of its log
    (``log_tail``; "(no log yet)" before the trainer wrote one); ``{"id", "missing": True}`` once deleted."""
    try:
        run = get_run(store, run_id)
    except BluenoError:
        return {"id": run_id, "missing": True}
    log_path = workspace.root / run["log_path"] if run["log_path"] else workspace.run_log(run_id)
    run["log_path"] = str(log_path)
    run["model_dir"] = str(workspace.run_dir(run_id))
    try:
        with log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - tail_bytes))
            run["log_tail"] = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        run["log_tail"] = "(no log yet)"
    return run


# -- figures of a run ------------------------------------------------------------


def score(run: dict[str, Any]) -> float | None:
    """The monitored metric at the best (saved) epoch: what ranks runs (validation, never test)."""
    return (run.get("best") or {}).get(run["monitor"]) if run.get("monitor") else None


def figures(run: dict[str, Any]) -> dict[str, float | None]:
    """A run's numbers by name: ``val_*`` at the best epoch, ``validation.*`` and ``test.*`` evaluations."""
    out: dict[str, float | None] = {}
    for key, value in (run.get("best") or {}).items():
        if key != "lr":
            out[key] = value
    evaluation = run.get("evaluation") or {}
    for split in ("validation", "test"):
        if isinstance(evaluation.get(split), dict):
            for key in HEADLINE:
                if key in evaluation[split]:
                    out[f"{split}.{key}"] = evaluation[split][key]
    return out


def _better(metric: str, values: list[float | None]) -> int | None:
    best = _best_columns(metric, values)
    return best[0] if best else None


def _best_columns(metric: str, values: list[float | None]) -> list[int]:
    """Every column holding the best value of ``metric`` (ties are all best)."""
    defined = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not defined:
        return []
    top = (max if is_maximized(metric) else min)(v for v, _ in defined)
    return [i for v, i in defined if v == top]


def is_validation_metric(name: str) -> bool:
    """A figure measured on the validation split: the only ones runs are ranked (and starred) on."""
    return name.startswith(("val_", "validation."))


def category_key(value: Any) -> tuple[int, float, str]:
    """Sort key for a categorical axis: numbers by value, then text, then None (16 after 8, not before)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    if value is None:
        return (2, 0.0, "")
    return (1, 0.0, dumps(value))


def rank_key(metric: str, value: float | None) -> float:
    """Sort key putting the best value first (undefined last) for ``metric``."""
    if value is None or not math.isfinite(value):
        return math.inf
    return -value if is_maximized(metric) else value


# -- the gallery --------------------------------------------------------------------


@dataclass
class GallerySample:
    """One sample of a run's gallery: its id, true and predicted class, confidence, and a picture."""

    id: str
    index: int
    true: str
    predicted: str
    p_predicted: float
    image: Any  # np.ndarray uint8, (H, W) or (H, W, 3) (volumes as projections); None if the data is gone


def gallery(
    workspace: Workspace, store: Store, run_id: int, *, wrong: bool = True, split: str = "validation",
    limit: int = 24,
) -> list[GallerySample]:
    """The misclassified (``wrong``) or surest correct samples of a run's evaluation, with pictures.

    Pictures come from the run's dataset version (matched by sample id), via
    :func:`blueno.evaluation.sample_image`; ``image`` is None when the data is
    not in this workspace any more.
    """
    from blueno import datasets
    from blueno.evaluation import sample_image

    run = get_run(store, run_id)
    part = (run.get("evaluation") or {}).get(split)
    if not isinstance(part, dict):
        return []
    chosen = part.get("wrong" if wrong else "right", [])[:limit]
    try:
        x, _, ids, _ = datasets.load_arrays(workspace, datasets.resolve(store, workspace, run["dataset"]))
    except BluenoError:
        x = ids = None
    names = part["classes"]
    samples = []
    for s in chosen:
        image = None
        if ids is not None and 0 <= s["index"] < len(ids) and str(ids[s["index"]]) == s["id"]:
            image = sample_image(x[s["index"]])
        samples.append(GallerySample(s["id"], s["index"], names[s["true"]], names[s["predicted"]],
                                     s["p_predicted"], image))
    return samples


# -- comparison --------------------------------------------------------------------


@dataclass
class Comparison:
    """Runs side by side: each row a parameter or a metric, each column a run."""

    run_ids: list[int]
    labels: list[str]  # "run 12 (mlp)" etc.
    params: list[dict[str, Any]]  # {"name", "values", "differs"}
    metrics: list[dict[str, Any]]  # {"name", "values", "best": first best column or None, "best_columns", "test"}


def compare_runs(store: Store, run_ids: list[int]) -> Comparison:
    """Parameters (differences flagged) and metrics (best flagged; test figures marked) of chosen runs."""
    found = {run["id"]: run for run in list_runs(store, ids=list(run_ids))}
    missing = [str(i) for i in run_ids if i not in found]
    if missing:
        raise BluenoError(f"no such run: {', '.join(missing)}; `blueno runs ls` lists them")
    runs = [found[i] for i in run_ids]
    names = sorted({key for run in runs for key in _comparable_params(run)})
    params = []
    for name in ["model", "dataset", *names]:
        values = [run[name] if name in ("model", "dataset") else _comparable_params(run).get(name) for run in runs]
        params.append({"name": name, "values": values, "differs": len({dumps(v) for v in values}) > 1})
    all_figures = [figures(run) for run in runs]
    keys = sorted({k for f in all_figures for k in f}, key=lambda k: (k.startswith("test."), k))
    rows = []
    for key in keys:
        values = [f.get(key) for f in all_figures]
        ranked = is_validation_metric(key)  # training and test figures are shown, never starred
        columns = _best_columns(key, values) if ranked else []
        rows.append({"name": key, "values": values, "best": columns[0] if columns else None,
                     "best_columns": columns, "test": key.startswith("test.")})
    labels = [f"run {run['id']} ({run['model']})" for run in runs]
    return Comparison(list(run_ids), labels, params, rows)


def _comparable_params(run: dict[str, Any]) -> dict[str, Any]:
    params = dict(run.get("params") or {})
    split = (run.get("config") or {}).get("split")
    if split:
        params.update({f"split.{k}": v for k, v in split.items()})
    chain = (run.get("config") or {}).get("preprocessing")
    if chain:
        params["preprocessing"] = " > ".join(step["transform"] for step in chain)
    return params


@dataclass
class ParallelCoordinates:
    """Hyperparameters that vary in an experiment against one metric, for a parallel-coordinates plot.

    ``axes[i]["values"][j]`` is run ``run_ids[j]``'s value on axis ``i``; a
    categorical axis also gives ``positions`` (its categories numbered 0…k-1),
    a numeric axis ``log`` when its values span more than a decade.
    """

    metric: str
    run_ids: list[int]
    axes: list[dict[str, Any]]
    scores: list[float | None]


def parallel_coordinates(store: Store, experiment_id: int, metric: str | None = None) -> ParallelCoordinates:
    runs = [r for r in list_runs(store, experiment_id=experiment_id) if r["best"] and r["kind"] == "train"]
    runs.reverse()  # oldest first
    metric = metric or _common_monitor(runs)
    all_params = [{"model": r["model"], **_comparable_params(r)} for r in runs]
    names = sorted({k for p in all_params for k in p})
    axes = []
    for name in names:
        values = [p.get(name) for p in all_params]
        if len({dumps(v) for v in values}) < 2:
            continue  # the same for every run: says nothing
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        axis: dict[str, Any] = {"name": name, "values": values, "categorical": not numeric}
        if numeric:
            positive = [v for v in values if v > 0]
            axis["log"] = len(positive) == len(values) and max(positive) / min(positive) > 10
        else:
            distinct = {dumps(v): v for v in values}
            categories = sorted(distinct, key=lambda c: category_key(distinct[c]))
            axis["categories"] = [json.loads(c) for c in categories]
            axis["positions"] = [categories.index(dumps(v)) for v in values]
        axes.append(axis)
    scores = [figures(r).get(metric) for r in runs]
    return ParallelCoordinates(metric, [r["id"] for r in runs], axes, scores)


def finished_experiments(store: Store) -> list[tuple[int, str]]:
    """Experiments with at least one finished run (``id``, ``name``), newest first: those a
    parallel-coordinates plot can show."""
    return [(row["id"], row["name"]) for row in store.query(
        "SELECT e.id, e.name FROM experiments e WHERE EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.id "
        "AND r.best IS NOT NULL) ORDER BY e.id DESC")]


def _common_monitor(runs: list[dict[str, Any]]) -> str:
    monitors = [r["monitor"] for r in runs if r["monitor"]]
    return max(set(monitors), key=monitors.count) if monitors else "val_loss"


def parameter_effects(store: Store, experiment_id: int, metric: str | None = None) -> dict[str, Any]:
    """For each varying hyperparameter, the metric's mean ± std, count and best over the runs per value.

    Runs whose model lacks the parameter are left out of its groups; a parameter
    with fewer than two values among the remaining runs is not listed.
    """
    coords = parallel_coordinates(store, experiment_id, metric)
    effects = []
    for axis in coords.axes:
        groups: dict[str, list[float | None]] = defaultdict(list)
        for value, figure in zip(axis["values"], coords.scores, strict=True):
            if value is not None:  # a parameter of another model: not applicable to this run
                groups[dumps(value)].append(figure)
        if len(groups) < 2:
            continue  # varies only with the model: the model's own effect says it
        rows = []
        for key, values in groups.items():
            mean, std, n = mean_std(values)
            best_index = _better(coords.metric, values)
            rows.append({"value": json.loads(key), "mean": mean, "std": std, "n": n,
                         "best": None if best_index is None else values[best_index]})
        rows.sort(key=lambda r: rank_key(coords.metric, r["mean"]))
        spread = [r["mean"] for r in rows if r["mean"] is not None]
        effects.append({"param": axis["name"], "values": rows,
                        "range": max(spread) - min(spread) if spread else None})
    effects.sort(key=lambda e: -(e["range"] or 0))
    return {"metric": coords.metric, "effects": effects}


def top_runs(store: Store, experiment_id: int | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """Finished runs (trainings and ensembles) ranked on validation by their monitored metric."""
    runs = [r for r in list_runs(store, experiment_id=experiment_id) if r["best"] and r["monitor"]]
    runs.sort(key=lambda r: rank_key(r["monitor"], score(r)))
    return runs[:limit]


# -- repeats ----------------------------------------------------------------------------


def repeat_key(config: dict[str, Any]) -> str:
    """What repeats of one configuration share: the job config without the training seed."""
    unseeded = copy.deepcopy(config)
    unseeded.get("params", {}).pop("seed", None)
    return hash_config(unseeded)


@dataclass
class RepeatGroup:
    """Runs of one configuration that differ only in their seed, with each figure's mean ± std."""

    key: str
    model: str
    params: dict[str, Any]  # the shared parameters (without seed)
    run_ids: list[int]
    seeds: list[int]
    stats: dict[str, dict[str, float | int | None]] = field(default_factory=dict)  # {metric: {mean, std, n}}


def repeat_groups(store: Store, experiment_id: int | None = None, *, min_runs: int = 2) -> list[RepeatGroup]:
    """Configurations run with several seeds, with mean ± standard deviation over the finished repeats."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in reversed(list_runs(store, experiment_id=experiment_id)):
        if run["kind"] == "train" and run["config"] is not None:
            groups[repeat_key(run["config"])].append(run)
    result = []
    for key, members in groups.items():
        if len(members) < min_runs:
            continue
        params = dict(members[0]["config"]["params"])
        params.pop("seed", None)
        group = RepeatGroup(key, members[0]["model"], params, [r["id"] for r in members],
                            [int(r["config"]["params"].get("seed", 0)) for r in members])
        finished = [figures(r) for r in members if r["best"]]
        for name in sorted({k for f in finished for k in f}):
            mean, std, n = mean_std(f.get(name) for f in finished)
            group.stats[name] = {"mean": mean, "std": std, "n": n}
        result.append(group)
    return result


def repeat_run(store: Store, run_id: int, seeds: int) -> list[tuple[int, int, int]]:
    """Queue ``seeds`` new jobs of run ``run_id``'s configuration, each with a seed none of its repeats used.

    Returns ``(job_id, run_id, seed)`` per new job.  The new jobs join the
    run's experiment (so its view groups them), keep its priority and failure
    budget, and are inserted with their runs in one transaction, the way
    :meth:`blueno.queue.JobQueue.submit` inserts a grid's.
    """
    if seeds < 1:
        raise BluenoError("--seeds must be at least 1")
    run = get_run(store, run_id)
    if run["kind"] != "train" or run["config"] is None:
        raise BluenoError(f"run {run_id} is an {run['kind']} run: repeat the runs it was made of")
    config, key = run["config"], repeat_key(run["config"])
    added: list[tuple[int, int, int]] = []
    created = now()
    with store.write() as conn:
        used = set()
        for row in conn.execute("SELECT config FROM jobs WHERE experiment_id = ? OR model = ?",
                                (run["experiment_id"], run["model"])):
            other = json.loads(row["config"])
            if repeat_key(other) == key:
                used.add(int(other["params"].get("seed", 0)))
        seed = int(config["params"].get("seed", 0))
        while len(added) < seeds:
            seed += 1
            if seed in used:
                continue
            new = copy.deepcopy(config)
            new["params"]["seed"] = seed
            config_hash = hash_config(new)
            if conn.execute("SELECT 1 FROM jobs WHERE config_hash = ?", (config_hash,)).fetchone():
                continue
            job_id, new_run = insert_job(conn, run["experiment_id"], new, config_hash, priority=run["priority"] or 0,
                                         max_failures=run["max_failures"] or 3, created=created)
            added.append((job_id, new_run, seed))
    return added


# -- predictions, test split, ensembles ------------------------------------------------------------


def _load_or_predict(workspace: Workspace, store: Store, run_id: int, split: str) -> Prediction:
    """The saved prediction of a run's saved model on ``split``; predicted now (with Keras) when missing."""
    path = predictions_path(workspace.run_dir(run_id), split)
    if path.is_file():
        return Prediction.load(path)
    from blueno import trainer  # loads Keras only when a model must actually run

    return trainer.predict_run(workspace, store, run_id, split)


def _store_evaluation(store: Store, run_id: int, split: str, evaluation: dict[str, Any]) -> None:
    with store.write() as conn:
        row = conn.execute("SELECT evaluation FROM runs WHERE id = ?", (run_id,)).fetchone()
        current = json.loads(row["evaluation"]) if row["evaluation"] else {}
        current[split] = evaluation
        conn.execute("UPDATE runs SET evaluation = ? WHERE id = ?", (dumps(current), run_id))
        add_outbox(conn, "run", run_id)


def _finished(run: dict[str, Any]) -> None:
    if run["kind"] == "train" and (run["state"] != "succeeded" or not run["model_path"]):
        raise BluenoError(f"run {run['id']} has not finished training (its job is {run['state']})")


def evaluate_test(workspace: Workspace, store: Store, run_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Evaluate the held-out test split for chosen runs (on request only) and store it as ``evaluation.test``.

    Each run's saved model is reloaded and predicts the test split, rebuilt
    from the sample ids exactly as every run on that dataset sees it; an
    ensemble averages its members' test predictions.
    """
    results = {}
    for run_id in run_ids:
        run = get_run(store, run_id)
        _finished(run)
        if run["kind"] == "train" and not ((run.get("config") or {}).get("split") or {}).get("test"):
            raise BluenoError(
                f"run {run_id} was trained without a held-out test split, so there is nothing to evaluate; "
                "train it again with a test fraction (the grid builder's Test fraction, or test = 0.1 under "
                "[split] in a grid file)"
            )
        if run["kind"] == "ensemble":
            members = run["params"]["members"]
            for member in members:
                _finished(get_run(store, member))
            prediction = average([_load_or_predict(workspace, store, m, "test") for m in members])
            prediction.save(predictions_path(workspace.run_dir(run_id), "test"))
            model = f"ensemble of runs {', '.join(map(str, members))}"
        else:
            from blueno import trainer

            prediction = trainer.predict_run(workspace, store, run_id, "test")
            model = run["model_path"]
        result = {**evaluate(prediction), "model": model, "evaluated": now(), "held_out": True}
        _store_evaluation(store, run_id, "test", result)
        results[run_id] = result
    return results


def make_ensemble(
    workspace: Workspace, store: Store, run_ids: list[int], *, name: str | None = None, test: bool = False
) -> int:
    """Average the chosen runs' predicted probabilities; record the ensemble as a run of its own.

    The new run has ``kind='ensemble'``, no job, the members in its params,
    its validation figures in ``best``/``final`` (so it ranks with the
    trainings) and ``evaluation.validation`` like any run.  ``test`` also
    evaluates the held-out test split.
    """
    if len(set(run_ids)) < 2:
        raise BluenoError("an ensemble needs at least 2 different runs")
    members = [get_run(store, run_id) for run_id in run_ids]
    for member in members:
        if member["kind"] != "train":
            raise BluenoError(f"run {member['id']} is an {member['kind']} run: ensemble the trainings themselves")
        _finished(member)
    try:
        prediction = average([_load_or_predict(workspace, store, m["id"], "validation") for m in members])
    except ValueError as exc:
        raise BluenoError(f"runs {', '.join(map(str, run_ids))} cannot be ensembled: {exc}; ensemble runs "
                          "trained on the same dataset with the same split") from None
    evaluation = {**evaluate(prediction), "model": f"ensemble of runs {', '.join(map(str, run_ids))}",
                  "evaluated": now()}
    best = {"val_loss": evaluation["loss"], "val_accuracy": evaluation["accuracy"]}
    if len(prediction.class_names) == 2:
        best.update({"val_auc": evaluation["auc"], "val_sensitivity": evaluation["sensitivity"],
                     "val_specificity": evaluation["specificity"]})
    monitors = {m["monitor"] for m in members}
    monitor = monitors.pop() if len(monitors) == 1 else "val_loss"
    experiments = {m["experiment_id"] for m in members}
    experiment_id = experiments.pop() if len(experiments) == 1 else None
    params = {"members": list(run_ids), "method": "mean of predicted probabilities"}
    if name:
        params["name"] = name
    first_eval = members[0]["evaluation"] or {}
    t = now()
    with store.write() as conn:
        run_id = conn.execute(
            "INSERT INTO runs (job_id, experiment_id, kind, model, params, dataset, monitor, final, best, "
            "evaluation, started, ended, created) VALUES (NULL, ?, 'ensemble', 'ensemble', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (experiment_id, dumps(params), members[0]["dataset"], monitor, dumps(best), dumps(best),
             dumps({"split": first_eval.get("split"), "validation": evaluation}), t, t, t),
        ).lastrowid
        add_outbox(conn, "run", run_id)
    folder = workspace.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    prediction.save(predictions_path(folder, "validation"))
    (folder / "ensemble.json").write_text(json.dumps(
        {"members": [{"run": m["id"], "model": m["model_path"]} for m in members], **params}, indent=1))
    if test:
        evaluate_test(workspace, store, [run_id])
    return run_id
