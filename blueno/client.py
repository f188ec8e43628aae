"""Report to Blueno from your own training script (standard library only).

::

    from blueno import client

    spec = client.job()                      # params, seed, run_dir, resume_from, dataset...
    for epoch in range(start, epochs):
        ...
        client.log_metrics({"loss": loss}, step=global_step)
        save_my_checkpoint(path)
        client.epoch_done(epoch + 1, {"val_loss": val_loss}, checkpoint=path)
    client.result(final={"val_loss": val_loss})

Outside a Blueno job (no ``$BLUENO_EVENTS``) every call does nothing and
:func:`job` returns an empty dict, so the script still runs by hand.  The
protocol is in ``docs/trainer-protocol.md``; writing the JSON lines yourself
to the file ``$BLUENO_EVENTS`` names works just as well.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from blueno import events

_writer: events.EventWriter | None = None


def _events() -> events.EventWriter:
    global _writer
    if _writer is None:
        _writer = events.writer_from_env()
        atexit.register(_writer.close)  # points still buffered go out when the script ends
    return _writer


def job() -> dict[str, Any]:
    """This attempt's job spec (see docs/trainer-protocol.md), or {} when not run by Blueno."""
    if not os.environ.get(events.JOB_ENV):
        return {}
    return events.read_spec()


def params() -> dict[str, Any]:
    """The configuration's parameters (the grid's values for this run)."""
    return dict((job().get("config") or {}).get("params") or {})


def resume_from() -> str | None:
    """The checkpoint the last attempt reported with :func:`epoch_done`, to resume from; None at first."""
    return job().get("resume_from")


def log_metrics(values: dict[str, Any], step: int) -> None:
    """Record points of one or more series at ``step`` (a curve per key)."""
    writer = _events()
    for key, value in values.items():
        writer.metric(key, step, value)


def epoch_done(epoch: int, logs: dict[str, Any] | None = None, checkpoint: str | None = None) -> None:
    """Epoch ``epoch`` (1 after the first) is finished; call it after the checkpoint is on disk.

    ``logs`` become points at step ``epoch``; ``checkpoint`` is handed to the next
    attempt as :func:`resume_from` if this one is interrupted.  Durable when it returns.
    """
    logs = {str(k): events.finite(v) for k, v in (logs or {}).items()}
    _events().emit("epoch", epoch=int(epoch), logs=logs, checkpoint=None if checkpoint is None else str(checkpoint))


def error(message: str) -> None:
    """A permanent failure (bad configuration or data): say why; exit with status 2 so it is not retried."""
    _events().emit("error", message=str(message))


def result(final: dict[str, Any] | None = None, best: dict[str, Any] | None = None, *,
           best_epoch: int | None = None, monitor: str | None = None, epochs_done: int | None = None,
           evaluation: dict[str, Any] | None = None, model_path: str | None = None) -> None:
    """The run's outcome: the job succeeds with these figures (durable when it returns)."""
    fields: dict[str, Any] = {
        "final": {str(k): events.finite(v) for k, v in (final or {}).items()},
        "best": {str(k): events.finite(v) for k, v in (best or {}).items()},
        "best_epoch": best_epoch, "monitor": monitor, "epochs_done": epochs_done,
        "evaluation": evaluation, "model_path": model_path,
    }
    _events().emit("result", **{k: v for k, v in fields.items() if v is not None})


def model_published(path: str, url: str | None = None, crc32c: str | None = None) -> None:
    """A copy of the model was published (e.g. to a bucket); recorded on the run."""
    _events().emit("model", path=str(path), url=url, crc32c=crc32c)


def flush() -> None:
    """Send buffered metric points now (they also go out every second and before any other event)."""
    _events().flush()
