"""docs/cli.md is generated from the parser; it must match the code."""

from pathlib import Path

from blueno.cli.reference import render


def test_that_the_committed_cli_reference_matches_the_parser() -> None:
    committed = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    assert committed == render(), "docs/cli.md is stale: run `python -m blueno.cli.reference > docs/cli.md`"
