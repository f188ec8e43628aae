"""docs/json.md documents the fields of every ``--json`` output; this keeps the two in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from es_server import EsTestServer
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from training_helpers import submit, train_queued

from blueno import datasets
from blueno.cli import main as cli_main

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"
HEADING = re.compile(r"^### `blueno (?P<command>[^`]+)`$")
FIELD = re.compile(r"^\| `(?P<field>[^`]+)` \|")


def documented() -> dict[str, set[str]]:
    """Each documented command (as typed, without `blueno`) and the field names of its table."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        heading = HEADING.match(line)
        if heading:
            current = heading["command"]
            sections[current] = set()
        elif current and (field := FIELD.match(line)):
            sections[current].add(field["field"])
    return sections


def fields(value: object) -> set[str]:
    """The top-level fields of an object, or of the items of a list (all items together)."""
    items = value if isinstance(value, list) else [value]
    assert items, "an empty list shows no fields: the workspace must hold something"
    return {key for item in items for key in item}


GRID = """
name = "json-docs"
dataset = "digits"
[split]
validation = 0.25
test = 0.2
[params]
epochs = 1
batch_size = 64
seed = [0, 1]
[models.mlp]
hidden_units = 8
"""


@pytest.mark.slow
def test_that_every_json_output_has_exactly_the_documented_fields(
    workspace, store, tmp_path, gcs_bucket, capsys
) -> None:
    v = datasets.make_demo(workspace, store)
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    submit(workspace, store, GRID)
    train_queued(workspace, store)
    datasets.push(workspace, store, v.ref, gcs_bucket)
    server = EsTestServer().up()
    try:
        (workspace.root / "settings.toml").write_text(f'[elasticsearch]\nurls = ["{server.url}"]\n')
        commands = {
            "data ls --json": ["data", "ls"],
            "data show NAME --json": ["data", "show", "digits"],
            "data verify NAME --json": ["data", "verify", "digits"],
            "data remote ls --json": ["data", "remote", "ls", gcs_bucket],
            "grid show FILE --json": ["grid", "show", str(grid)],
            "queue ls --json": ["queue", "ls", "--all"],
            "runs ls --json": ["runs", "ls"],
            "runs show RUN --json": ["runs", "show", "1"],
            "runs compare RUN… --json": ["runs", "compare", "1", "2"],
            "runs test RUN… --json": ["runs", "test", "1"],
            "runs repeats --json": ["runs", "repeats"],
            "sync es --status --json": ["sync", "es", "--status"],
            "sync es --json": ["sync", "es", "--wait", "5"],
        }
        outputs = {}
        for name, argv in commands.items():
            capsys.readouterr()
            code = cli_main(["--home", str(workspace.root), *argv, "--json"])
            out = capsys.readouterr().out
            assert code == 0, (name, out)
            value = json.loads(out)
            # runs test: an object keyed by run id; its fields are those of each run's evaluation
            outputs[name] = fields(list(value.values()) if name.startswith("runs test") else value)
    finally:
        server.down()
    docs = documented()
    assert set(docs) == set(outputs), "docs/json.md must have one section per --json output"
    for name, found in outputs.items():
        assert docs[name] == found, f"{name}: documented {sorted(docs[name])}, output has {sorted(found)}"
