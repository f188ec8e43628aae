"""``blueno data …``: import, list, show, verify, remove, derive, and sync with Google Cloud Storage.

Each command is a few lines over :mod:`blueno.datasets`, :mod:`blueno.datasets.importing`,
:mod:`blueno.datasets.derive` and :mod:`blueno.datasets.remote`, which the GUI calls too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from blueno import BluenoError, datasets
from blueno.cli.common import print_json, print_table, run_with_progress
from blueno.workspace import Workspace


def _row(v: datasets.DatasetVersion) -> list[Any]:
    shape = "x".join(map(str, v.sample_shape)) or "-"
    return [v.ref, v.kind, v.n_samples, v.n_classes, shape, f"{v.size_bytes / 1e6:.1f} MB",
            "linked" if v.linked else "", v.remote_url or ""]


def cmd_demo(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        version = run_with_progress(datasets.make_demo, workspace, store)
        print(f"{version.ref}: {version.n_samples} samples, {version.n_classes} classes, {version.path}")
        return 0


def cmd_import(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.datasets import import_source
    from blueno.limits import DEFAULT, ImportLimits

    limits = ImportLimits(max_ratio=args.max_ratio or DEFAULT.max_ratio, max_files=args.max_files or DEFAULT.max_files,
                          max_pixels=args.max_pixels or DEFAULT.max_pixels)
    if args.name and len(args.paths) > 1:
        raise BluenoError("--name names one dataset: import one PATH at a time with --name, or omit it "
                          "to name each dataset after its file or folder.")
    with workspace.open_store() as store:
        for path in args.paths:
            result = run_with_progress(import_source, workspace, store, path, name=args.name,  # (SIGTERM: Ctrl-C)
                                       label_col=args.label_col, id_col=args.id_col, link=args.link, limits=limits,
                                       labels=args.labels)
            v = result.version
            verb = "already imported as" if result.existed else "imported as"
            print(f"{path}: {verb} {v.ref} ({v.kind}, {v.n_samples} samples, {v.n_classes} classes)")
            if result.ignored:
                shown = ", ".join(result.ignored[:5]) + (" …" if len(result.ignored) > 5 else "")
                print(f"  not part of the dataset, left out: {shown}")
        return 0


def cmd_ls(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        found = datasets.versions(store, workspace, args.name)
        if args.json:
            print_json([v.as_dict() for v in found])
        else:
            print_table((_row(v) for v in found),
                        ["DATASET", "KIND", "SAMPLES", "CLASSES", "SHAPE", "SIZE", "", "REMOTE"])
        return 0


def cmd_show(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        v = datasets.resolve(store, workspace, args.ref)
        info = v.as_dict()
        if args.json:
            print_json(info)
            return 0
        for key in ("ref", "kind", "path", "source", "n_samples", "n_files", "size_bytes", "sample_shape",
                    "dtype", "parent", "transform", "remote_url"):
            if info[key] not in (None, "", []):
                print(f"{key:<13} {info[key]}")
        print("classes       " + ", ".join(f"{c}: {v.classes[c]}" for c in v.class_names))
        return 0


def cmd_verify(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        version = datasets.resolve(store, workspace, args.ref)
        report = run_with_progress(datasets.verify, workspace, version)
        if args.json:
            print_json(report.as_dict())
        else:
            print(report.describe())
        return 0 if report.ok else 1


def cmd_rm(workspace: Workspace, args: argparse.Namespace) -> int:
    with workspace.open_store() as store:
        for v in datasets.remove(store, workspace, args.ref, force=args.force):
            print(f"removed {v.ref}" + (" (linked: its files were left in place)" if v.linked else ""))
        return 0


def _param(text: str) -> tuple[str, Any]:
    """``k=v`` with v read as JSON when it parses (numbers, true, [1, 2]), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not k=v (e.g. --param height=32)")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def cmd_derive(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.datasets.derive import derive

    with workspace.open_store() as store:
        parent = datasets.resolve(store, workspace, args.ref)
        derived = run_with_progress(derive, workspace, store, parent, args.transform, dict(args.param),
                                    name=args.as_name)
        print(f"{derived.ref}: {args.transform} of {parent.ref}, samples shaped {derived.sample_shape}")
        return 0


def cmd_push(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.datasets import remote

    with workspace.open_store() as store:
        pushed = run_with_progress(remote.push, workspace, store, args.ref, args.to, workers=args.workers)
        print(pushed.describe("uploaded"))
        return 0


def cmd_pull(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.datasets import remote

    with workspace.open_store() as store:
        result = run_with_progress(remote.pull_sync, workspace, store, args.url, workers=args.workers)
        print(result.describe("downloaded"))
        return 0


def cmd_remote_ls(workspace: Workspace, args: argparse.Namespace) -> int:
    from blueno.datasets import remote

    rows = remote.remote_ls(workspace, args.url)
    if args.json:
        print_json(rows)
    else:
        print_table(([r["ref"], r["kind"], r["n_samples"], r["n_files"], f"{r['size_bytes'] / 1e6:.1f} MB",
                      r["parent"], r["url"]] for r in rows),
                    ["DATASET", "KIND", "SAMPLES", "FILES", "SIZE", "PARENT", "URL"])
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="datasets: import, inspect, verify, derive, sync with GCS")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("demo", help="create the 'digits' demo dataset (8x8 images, 10 classes)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="import folders, .npz, .csv or archives as dataset versions")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--name", help="dataset name (default: the file or folder name)")
    p.add_argument("--label-col", metavar="COL", help="label column of labels.csv or of a CSV table")
    p.add_argument("--id-col", metavar="COL", help="id column (default: 'id', else the first column)")
    p.add_argument("--labels", metavar="FILE",
                   help="labels CSV of a folder of per-sample arrays, anywhere (or a folder holding "
                   "positives.csv and negatives.csv); default: labels.csv beside the arrays")
    p.add_argument("--link", action="store_true", help="reference the files in place instead of copying")
    p.add_argument("--max-ratio", type=float, metavar="R",
                   help="how many times its own size an archive may expand to (default 100)")
    p.add_argument("--max-files", type=int, metavar="N", help="most files in one dataset (default 1,000,000)")
    p.add_argument("--max-pixels", type=int, metavar="N", help="most pixels in one image (default 50,000,000)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("ls", help="list dataset versions, newest first")
    p.add_argument("name", nargs="?", help="only this dataset's versions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="details of one version: files, classes, lineage")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("verify", help="re-hash a version's files; name every changed, missing or extra one")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rm", help="remove a version (or every version of NAME) and what was derived from it")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--force", action="store_true", help="remove even while queued or running jobs need it")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("derive", help="derive a version through a transform (cached; lineage recorded)")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--transform", "-t", required=True, metavar="T",
                   help="normalize, resize, crop, center_crop, clip, mip, or one from transforms/*.py")
    p.add_argument("--param", "-p", type=_param, action="append", default=[], metavar="K=V",
                   help="a transform parameter (repeat); values are JSON: 32, 0.5, true, [0.5, 0.2]")
    p.add_argument("--as", dest="as_name", metavar="NAME", help="name of the derived dataset "
                   "(default: NAME.TRANSFORM)")
    p.set_defaults(func=cmd_derive)

    workers = {"type": int, "default": 8, "metavar": "N", "help": "parallel transfers (default 8)"}
    p = sub.add_parser("push", help="upload a version to Cloud Storage (only files that differ travel)")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--to", metavar="gs://BUCKET/PREFIX", help="default: [gcs] bucket in settings.toml")
    p.add_argument("--workers", **workers)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="download a version from Cloud Storage, checksum-verified")
    p.add_argument("url", metavar="gs://BUCKET/PREFIX/NAME[@VERSION]")
    p.add_argument("--workers", **workers)
    p.set_defaults(func=cmd_pull)

    remote = sub.add_parser("remote", help="what a bucket holds")
    remote_sub = remote.add_subparsers(dest="remote_command", metavar="ACTION", required=True)
    p = remote_sub.add_parser("ls", help="list dataset versions in a bucket")
    p.add_argument("url", nargs="?", metavar="gs://BUCKET/PREFIX", help="default: [gcs] bucket")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_remote_ls)

