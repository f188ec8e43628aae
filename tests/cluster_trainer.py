"""The trainer command of the cluster tests: the protocol stand-in for ``standin`` jobs, the real trainer otherwise.

``python tests/cluster_trainer.py JOB ATTEMPT`` reads its job spec
(``$BLUENO_JOB``) and replaces itself (``exec``: the same process, so signals
and tags apply to the trainer itself) with ``tests/protocol_standin.py`` or
``python -m blueno.trainer JOB ATTEMPT``, so one grid mixes fast stand-ins
and a real Keras job.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    spec = json.loads(Path(os.environ["BLUENO_JOB"]).read_text())
    if spec["config"]["model"] == "standin":
        standin = str(Path(__file__).resolve().with_name("protocol_standin.py"))
        os.execv(sys.executable, [sys.executable, standin, *sys.argv[1:]])
    os.execv(sys.executable, [sys.executable, "-m", "blueno.trainer", *sys.argv[1:]])
