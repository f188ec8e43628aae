"""Self-contained HTML reports of a run or of a whole experiment (``blueno report``, the GUI's export).

One HTML file per report, with everything inline: charts as SVG
(:mod:`blueno.svg_charts`), sample thumbnails as base64 PNG (Pillow), styles
in a ``<style>`` element; no JavaScript, nothing fetched.  A CSV of the
figures is written beside it.  Validation and held-out test figures are kept
apart, and test figures are marked as such everywhere.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import time
from pathlib import Path
from typing import Any

from blueno import BluenoError, metrics, resource
from blueno.evaluation import HEADLINE, png
from blueno.runs import (
    figures,
    gallery,
    get_run,
    list_runs,
    parameter_effects,
    repeat_groups,
    score,
    top_runs,
)
from blueno.store import Store
from blueno.svg_charts import PALETTE, Line, bar, heatmap, line_chart
from blueno.workspace import Workspace

TEMPLATE = resource("report", "report.css")
GALLERY = 24  # thumbnails per gallery


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    return _esc(value)


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _css() -> str:
    try:
        return TEMPLATE.read_text()
    except OSError:  # an installed package without resources/: a minimal style
        return "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px}"


def _page(title: str, body: str) -> str:
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{_css()}</style></head><body>'
            f'<header><h1>{_esc(title)}</h1><p class="made">Blueno report, made {made}</p></header>'
            f"{body}</body></html>\n")


# -- pieces of a run --------------------------------------------------------------


def _curves(store: Store, run: dict[str, Any]) -> str:
    """Loss and accuracy (and AUC for binary tasks) per epoch, training and validation; the saved epoch marked."""
    keys = set(metrics.keys(store, run["id"]))
    charts = []
    for title, names in (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy")),
                         ("AUC (validation)", ("val_auc",))):
        lines = []
        for i, name in enumerate(n for n in names if n in keys):
            steps, values = metrics.history(store, run["id"], name)
            lines.append(Line(name, steps.tolist(), [None if math.isnan(v) else v for v in values.tolist()],
                              PALETTE[i], dashed=name.startswith("val_")))
        if lines:
            charts.append(line_chart(lines, title=title, x_label="epoch", y_label=title.split()[0],
                                     marker_x=run["best_epoch"], integer_x=True))
    if not charts:
        return ""
    return ('<section><h2>Training curves</h2><p class="note">Solid: training split; dashed: validation. '
            'The dotted vertical line is the saved (best) epoch.</p>'
            f'<div class="row">{"".join(charts)}</div></section>')


def _metric_table(evaluation: dict[str, Any]) -> str:
    splits = [s for s in ("validation", "test") if isinstance(evaluation.get(s), dict)]
    if not splits:
        return ""
    headers = ["metric"] + ["validation" if s == "validation" else '<span class="test">TEST (held out)</span>'
                            for s in splits]
    keys = [k for k in (*HEADLINE, "average_precision") if any(k in evaluation[s] for s in splits)]
    rows = [[k] + [_num(evaluation[s].get(k)) for s in splits] for k in keys]
    rows.append(["samples (wrong)"] + [f"{evaluation[s].get('n')} ({evaluation[s].get('n_wrong')})" for s in splits])
    for s in splits:
        youden = evaluation[s].get("youden")
        if youden:
            rows.append([f"Youden's J threshold ({s})"] + [
                f"{_num(youden['threshold'])}: sensitivity {_num(youden['sensitivity'])}, "
                f"specificity {_num(youden['specificity'])}" if s2 == s else "" for s2 in splits])
    return ('<section><h2>Figures of the saved model</h2>'
            + _table(headers, rows, "metrics")
            + '<p class="note">Runs are chosen on the validation split; test figures exist only for runs '
              'evaluated on request (<code>blueno runs test</code>).</p></section>')


def _confusions(evaluation: dict[str, Any]) -> str:
    charts = []
    for split in ("validation", "test"):
        part = evaluation.get(split)
        if isinstance(part, dict) and part.get("confusion"):
            label = "validation" if split == "validation" else "TEST (held out)"
            charts.append(heatmap(part["confusion"], part["classes"], title=f"confusion matrix, {label}"))
    return f'<section><h2>Confusion matrix</h2><div class="row">{"".join(charts)}</div></section>' if charts else ""


def _binary_curves(evaluation: dict[str, Any]) -> str:
    roc, pr = [], []
    for i, split in enumerate(s for s in ("validation", "test") if isinstance(evaluation.get(s), dict)):
        part = evaluation[split]
        label = split if split == "validation" else "TEST"
        if part.get("roc"):
            roc.append(Line(f"{label} AUC {_num(part.get('auc'))}", part["roc"]["fpr"], part["roc"]["tpr"],
                            PALETTE[i], dashed=split == "test"))
        if part.get("pr"):
            pr.append(Line(f"{label} AP {_num(part.get('average_precision'))}", part["pr"]["recall"],
                           part["pr"]["precision"], PALETTE[i], dashed=split == "test"))
    if not roc and not pr:
        return ""
    charts = []
    if roc:
        charts.append(line_chart(roc, title="ROC curve", x_label="false positive rate", y_label="true positive rate",
                                 x_range=(0, 1), y_range=(0, 1.02), diagonal=True))
    if pr:
        charts.append(line_chart(pr, title="precision-recall curve", x_label="recall", y_label="precision",
                                 x_range=(0, 1), y_range=(0, 1.02)))
    return f'<section><h2>ROC and precision-recall</h2><div class="row">{"".join(charts)}</div></section>'


def _per_class(evaluation: dict[str, Any]) -> str:
    part = evaluation.get("validation")
    if not isinstance(part, dict) or not part.get("per_class"):
        return ""
    rows = [[_esc(c["class"]), str(c["support"]), *(_num(c.get(k)) for k in ("precision", "recall", "specificity",
                                                                             "f1", "auc"))]
            for c in part["per_class"]]
    return ('<section><h2>Per class (validation, one vs rest)</h2>'
            + _table(["class", "support", "precision", "recall", "specificity", "F1", "AUC"], rows, "metrics")
            + "</section>")


def _gallery(workspace: Workspace, store: Store, run: dict[str, Any]) -> str:
    """Thumbnails of the misclassified validation samples (surest mistakes first), with their ids."""
    part = (run.get("evaluation") or {}).get("validation")
    if not isinstance(part, dict) or "wrong" not in part:
        return ""
    cards = []
    for sample in gallery(workspace, store, run["id"], limit=GALLERY):
        image = '<div class="missing">no image</div>'
        if sample.image is not None:
            data = base64.b64encode(png(sample.image, 72)).decode()
            image = f'<img src="data:image/png;base64,{data}" alt="sample {_esc(sample.id)}">'
        cards.append(
            f'<figure>{image}<figcaption><b>{_esc(sample.id)}</b><br>true {_esc(sample.true)}, '
            f'predicted {_esc(sample.predicted)} ({sample.p_predicted:.2f})</figcaption></figure>')
    if not cards:
        return '<section><h2>Misclassified samples</h2><p>None: every validation sample was right.</p></section>'
    return (f'<section><h2>Misclassified samples (validation): {part["n_wrong"]} of {part["n"]}</h2>'
            f'<p class="note">The surest mistakes first; {len(cards)} shown.</p>'
            f'<div class="gallery">{"".join(cards)}</div></section>')


def _summary(run: dict[str, Any]) -> str:
    params = run.get("params") or {}
    facts = [("run", run["id"]), ("kind", run["kind"]), ("model", run["model"]), ("dataset", run["dataset"]),
             ("experiment", run["experiment_id"]), ("state", run["state"]),
             ("epochs", f"{run['epochs_done']}" + (f" of {run['epochs']}" if run.get("epochs") else "")),
             ("saved epoch", run["best_epoch"]), ("chosen by", run["monitor"]),
             ("best " + (run["monitor"] or ""), _num(score(run))), ("model file", run["model_path"])]
    facts_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts if v is not None)
    rows = [[_esc(k), _esc(json.dumps(v) if isinstance(v, list | dict) else v)] for k, v in sorted(params.items())]
    return (f'<section class="summary"><dl>{facts_html}</dl>'
            f'<div><h3>Parameters</h3>{_table(["parameter", "value"], rows, "params")}</div></section>')


def run_sections(workspace: Workspace, store: Store, run: dict[str, Any]) -> str:
    evaluation = run.get("evaluation") or {}
    return "".join([
        _summary(run), _metric_table(evaluation), _curves(store, run), _confusions(evaluation),
        _binary_curves(evaluation), _per_class(evaluation), _gallery(workspace, store, run),
    ])


def _write(out_dir: Path, name: str, page: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _csv(out_dir: Path, name: str, runs: list[dict[str, Any]]) -> Path:
    all_figures = [figures(r) for r in runs]
    params = sorted({k for r in runs for k in (r.get("params") or {}) if k != "members"})
    keys = sorted({k for f in all_figures for k in f})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "kind", "model", "dataset", "monitor", "score", *params, *keys])
        for run, figs in zip(runs, all_figures, strict=True):
            writer.writerow([run["id"], run["kind"], run["model"], run["dataset"], run["monitor"], score(run),
                             *((run.get("params") or {}).get(p) for p in params), *(figs.get(k) for k in keys)])
    return path


def write_run_report(workspace: Workspace, store: Store, run_id: int, out_dir: Path) -> Path:
    """``out_dir/run-N.html`` (and ``run-N.csv``): one run's figures, curves, confusion matrix, gallery."""
    run = get_run(store, run_id)
    if not run["best"] and not run["evaluation"]:
        raise BluenoError(f"run {run_id} has no results yet (its job is {run['state']})")
    _csv(Path(out_dir), f"run-{run_id}.csv", [run])
    title = f"Run {run_id}: {run['model']} on {run['dataset']}"
    return _write(Path(out_dir), f"run-{run_id}.html", _page(title, run_sections(workspace, store, run)))


def write_experiment_report(workspace: Workspace, store: Store, experiment_id: int, out_dir: Path) -> Path:
    """``out_dir/experiment-N.html`` (and ``.csv``): top runs, parameter effects, repeats, the best run."""
    experiment = store.query_one("SELECT * FROM experiments WHERE id = ?", (experiment_id,))
    if experiment is None:
        raise BluenoError(f"there is no experiment {experiment_id}; `blueno runs ls` shows runs' experiments")
    runs = list_runs(store, experiment_id=experiment_id)
    ranked = top_runs(store, experiment_id, limit=len(runs) or 1)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["state"] or "?"] = counts.get(run["state"] or "?", 0) + 1
    body = [f'<section><p>Experiment {experiment_id}, {len(runs)} runs: '
            + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + "</p>"
            + (f'<p class="note">{_esc(experiment["grid_file"])}</p>' if experiment["grid_file"] else "")
            + "</section>"]
    body.append(_top_runs(ranked))
    body.append(_top_curves(store, ranked[:5]))
    body.append(_effects(store, experiment_id))
    body.append(_repeats(store, experiment_id))
    if ranked:
        body.append(f'<h2 class="part">The best run: {ranked[0]["id"]}</h2>'
                    + run_sections(workspace, store, get_run(store, ranked[0]["id"])))
    body.append(f'<section><h2>Grid</h2><pre>{_esc(experiment["grid_text"])}</pre></section>')
    _csv(Path(out_dir), f"experiment-{experiment_id}.csv", runs)
    title = f"Experiment {experiment_id}: {experiment['name']}"
    return _write(Path(out_dir), f"experiment-{experiment_id}.html", _page(title, "".join(body)))


def _varying(runs: list[dict[str, Any]]) -> list[str]:
    names = sorted({k for r in runs for k in (r.get("params") or {}) if k != "members"})
    trained = [r for r in runs if r["kind"] == "train"]
    values = {n: {json.dumps((r.get("params") or {}).get(n)) for r in trained} - {"null"} for n in names}
    return [n for n in names if len(values[n]) > 1]


def _top_runs(ranked: list[dict[str, Any]]) -> str:
    if not ranked:
        return "<section><h2>Top runs</h2><p>No run has finished yet.</p></section>"
    varying = _varying(ranked)
    has_test = any(isinstance((r["evaluation"] or {}).get("test"), dict) for r in ranked)
    headers = ["#", "run", "model", "parameters that vary", "chosen by", "best", "val. accuracy", "val. AUC",
               "val. F1"] + (['<span class="test">TEST accuracy</span>'] if has_test else [])
    rows = []
    for i, run in enumerate(ranked, 1):
        f = figures(run)
        params = run.get("params") or {}
        if run["kind"] == "ensemble":
            described = "mean of runs " + ", ".join(map(str, params.get("members", [])))
        else:
            described = " ".join(f"{n}={_num(params[n])}" for n in varying if params.get(n) is not None)
        row = [str(i), str(run["id"]), _esc(run["model"]), f'<span class="params">{_esc(described)}</span>',
               _esc(run["monitor"]), _num(score(run)), _num(f.get("validation.accuracy")),
               _num(f.get("validation.auc")), _num(f.get("validation.f1"))]
        if has_test:
            row.append(f'<span class="test">{_num(f.get("test.accuracy"))}</span>')
        rows.append(row)
    return ('<section><h2>Top runs (ranked on validation)</h2>' + _table(headers, rows, "metrics ranked")
            + "</section>")


def _top_curves(store: Store, ranked: list[dict[str, Any]]) -> str:
    trained = [r for r in ranked if r["kind"] == "train"]
    if not trained:
        return ""
    monitor = trained[0]["monitor"] or "val_loss"
    lines = []
    for i, run in enumerate(trained):
        steps, values = metrics.history(store, run["id"], monitor)
        if len(steps):
            lines.append(Line(f"run {run['id']}", steps.tolist(),
                              [None if math.isnan(v) else v for v in values.tolist()], PALETTE[i % len(PALETTE)]))
    if not lines:
        return ""
    return ('<section><h2>Curves of the top runs</h2>'
            + line_chart(lines, title=f"{monitor} per epoch", x_label="epoch", y_label=monitor, width=720,
                         integer_x=True)
            + "</section>")


def _effects(store: Store, experiment_id: int) -> str:
    result = parameter_effects(store, experiment_id)
    if not result["effects"]:
        return ""
    metric = result["metric"]
    means = [v["mean"] for e in result["effects"] for v in e["values"] if v["mean"] is not None]
    low, high = (min(means), max(means)) if means else (0, 1)
    low -= (high - low) * 0.2 or 0.1
    blocks = []
    for effect in result["effects"]:
        rows = [[_esc(json.dumps(v["value"]) if not isinstance(v["value"], str) else v["value"]),
                 f'{_num(v["mean"])}' + (f' ± {_num(v["std"])}' if v["std"] is not None else ""),
                 str(v["n"]), _num(v["best"]), bar(v["mean"], low, high, error=v["std"])] for v in effect["values"]]
        blocks.append(f'<div><h3>{_esc(effect["param"])}</h3>'
                      + _table(["value", f"mean {_esc(metric)} ± std", "runs", "best", ""], rows, "metrics")
                      + "</div>")
    return (f'<section><h2>Parameter effects on {_esc(metric)}</h2><p class="note">For each hyperparameter '
            'that varies, the runs grouped by its value (best value first; the parameters with the largest '
            f'spread first).</p><div class="row">{"".join(blocks)}</div></section>')


def _repeats(store: Store, experiment_id: int) -> str:
    groups = repeat_groups(store, experiment_id)
    if not groups:
        return ""
    blocks = []
    for group in groups:
        rows = [[_esc(name) + (' <span class="test">TEST</span>' if name.startswith("test.") else ""),
                 f'{_num(s["mean"])}' + (f' ± {_num(s["std"])}' if s["std"] is not None else ""), str(s["n"])]
                for name, s in group.stats.items()]
        blocks.append(f'<div><h3>{_esc(group.model)}, seeds {", ".join(map(str, group.seeds))}</h3>'
                      f'<p class="note">runs {", ".join(map(str, group.run_ids))}</p>'
                      + _table(["metric", "mean ± std", "n"], rows, "metrics") + "</div>")
    return f'<section><h2>Repeats with other seeds</h2><div class="row">{"".join(blocks)}</div></section>'


def parse_target(store: Store, target: str, experiment: bool = False) -> tuple[str, int]:
    """``"12"`` is run 12; ``"exp:3"``, ``"experiment:3"`` (or ``"3"`` with ``experiment``) experiment 3;
    anything else the newest experiment of that name."""
    text = target.strip()
    for prefix in ("exp:", "experiment:", "e"):
        if text.lower().startswith(prefix) and text[len(prefix):].isdigit():
            return "experiment", int(text[len(prefix):])
    if text.isdigit():
        return ("experiment" if experiment else "run"), int(text)
    row = store.query_one("SELECT id FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", (text,))
    if row is None:
        raise BluenoError(f"{target!r} is neither a run id nor an experiment (exp:N or an experiment's name)")
    return "experiment", row["id"]

