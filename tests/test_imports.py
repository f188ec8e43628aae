"""The CLI, GUI and grid start fast: importing them loads no TensorFlow (only training does)."""

import subprocess
import sys


def test_that_importing_everything_but_the_trainer_loads_no_tensorflow() -> None:
    code = (
        "import sys\n"
        "import blueno.cli, blueno.cli.batch_cmd, blueno.grid, blueno.queue, blueno.scheduler, blueno.zoo\n"
        "import blueno.datasets, blueno.metrics, blueno.elastic, gui.app\n"
        "from blueno import zoo\n"
        "zoo.load()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(loaded[:5])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_that_the_app_and_the_cli_load_no_ray_until_a_cluster_is_used() -> None:
    code = (
        "import sys\n"
        "import blueno.cli, blueno.cli.batch_cmd, blueno.scheduler, blueno.cluster, gui.app, gui.nodes_view\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'ray')\n"
        "print(loaded[:5])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
