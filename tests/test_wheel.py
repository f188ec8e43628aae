"""The built wheel works outside the checkout: what the code reads at run time ships as package data.

Builds a wheel from the tracked files (``pip wheel --no-deps``, no build isolation: offline and about
5 s), installs it into a fresh venv that borrows the dependencies of the running one (a ``.pth`` line
pointing at its site-packages; nothing is downloaded, TensorFlow is not copied), and runs the installed
``blueno`` from a folder outside the checkout, with no PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from es_server import EsTestServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src, dst = REPO / name, source / name
        if src.is_symlink() or src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
                    str(source)], check=True, capture_output=True, cwd=root)
    (wheel,) = (root / "dist").glob("blueno-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def run(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BLUENO_HOME")} | env
    return subprocess.run([str(bin_dir / "blueno"), *args], cwd=cwd, capture_output=True, text=True,
                          env=environ, timeout=300)


def test_the_installed_wheel_imports_from_its_venv_and_carries_its_resources(installed: Path, tmp_path: Path):
    probe = subprocess.run(
        [str(installed / "python"), "-P", "-c",
         "import blueno; print(blueno.__file__); print(sorted(p.name for p in blueno.resource('elasticsearch')"
         ".iterdir())); print(blueno.resource('kibana', 'blueno.ndjson').is_file(), "
         "blueno.resource('examples', 'demo.toml').is_file(), blueno.resource('report', 'report.css').is_file(), "
         "__import__('blueno.demo').demo.DEMO_GRID.is_file())"],
        capture_output=True, text=True, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert probe.returncode == 0, probe.stderr
    where, templates, present = probe.stdout.splitlines()
    assert where.startswith(str(installed.parent)) and str(REPO) not in where
    assert templates == "['metrics.json', 'runs.json']"
    assert present == "True True True True"


def test_the_installed_blueno_installs_templates_and_makes_the_demo_outside_the_checkout(
    installed: Path, tmp_path: Path
):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    home = str(tmp_path / "ws")
    server = EsTestServer().up()
    try:
        result = run(installed, outside, "--home", home, "sync", "es", "--install-templates",
                     BLUENO_ES_URL=server.url)
        templates = sorted(server.state.templates)
    finally:
        server.down()
    assert result.returncode == 0, result.stderr
    assert templates == ["blueno-metrics", "blueno-runs"]
    demo = run(installed, outside, "--home", home, "data", "demo")
    assert demo.returncode == 0, demo.stderr
    assert "digits@" in demo.stdout
