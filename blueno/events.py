"""The trainer protocol: the job spec a trainer is given and the events it reports back.

A trainer (Blueno's own ``python -m blueno.trainer`` or any user command) never
opens the workspace database.  The scheduler writes the attempt's *job spec*
(JSON) and names it in ``$BLUENO_JOB``; the trainer reports *events*, one JSON
object per line, through a :class:`Sink`.  Locally the sink is an append-only
per-attempt file named by ``$BLUENO_EVENTS`` (:class:`FileSink`); the scheduler
reads it with :class:`FileSource` and :mod:`blueno.ingest` writes what it says
to the database, guarded by the attempt.  Another transport (a Ray actor, a
warm trainer's pipe) only needs another sink and source: the lines are the same.

Standard library only: :mod:`blueno.client` (which user scripts import) is
built on this module, and neither may pull in numpy, SQLite or TensorFlow.
The format is documented, versioned, in ``docs/trainer-protocol.md``.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROTOCOL_VERSION = 1
JOB_ENV = "BLUENO_JOB"  # path of the job spec (JSON) of this attempt
EVENTS_ENV = "BLUENO_EVENTS"  # path of the append-only events file of this attempt
GATE_ENV = "BLUENO_GATE"  # a pipe's descriptor: one byte "g" once the scheduler has recorded this process
GO = b"g"
EXIT_NOT_RECORDED = 3  # the scheduler never recorded this process (blueno.queue.EXIT_STALE): it did nothing

# Every event type and the fields it may carry (besides v, seq, type, time).
EVENT_TYPES = {
    "start": ("params", "dataset", "epochs", "host", "gpu", "blueno_version", "git_commit"),
    "metrics": ("points",),  # [[key, step, value], ...]; value null for NaN
    "epoch": ("epoch", "logs", "checkpoint"),  # epoch = epochs completed (1 after the first)
    "error": ("message",),  # a permanent failure (bad configuration or data): do not retry
    "result": ("epochs_done", "best_epoch", "monitor", "final", "best", "evaluation", "model_path"),
    "model": ("path", "url", "crc32c"),  # the published model (and its copy in a bucket)
}
DURABLE = {"epoch", "error", "result", "model"}  # fsynced before the call returns
METRICS_FLUSH_S = 1.0  # buffered metric points go out at least this often (and before any other event)
METRICS_FLUSH_POINTS = 5000


class ProtocolError(ValueError):
    """An event or a job spec that does not follow the protocol."""


def finite(value: Any) -> float | None:
    """A float for JSON: NaN and infinities (not JSON) become null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- sinks: where a trainer's lines go ------------------------------------------------


class Sink(Protocol):
    """Somewhere to append event lines; ``durable`` lines must be safe before ``write`` returns."""

    def write(self, line: bytes, durable: bool) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Append-only file: each line is one ``write`` on an ``O_APPEND`` descriptor; fsync when durable."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, line: bytes, durable: bool) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if durable:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class NullSink:
    """Discards every event: a trainer run by hand, outside any scheduler."""

    def write(self, line: bytes, durable: bool) -> None:
        pass

    def close(self) -> None:
        pass


# -- the writer: what trainers call -------------------------------------------------------


class EventWriter:
    """Numbers, encodes and sends events; buffers metric points and sends them in batches.

    Buffered points always go out before any other event, so an ``epoch``
    event is never ingested ahead of the points measured before it.
    """

    def __init__(self, sink: Sink, *, flush_seconds: float = METRICS_FLUSH_S,
                 flush_points: int = METRICS_FLUSH_POINTS) -> None:
        self.sink = sink
        self.seq = 0
        self.flush_seconds, self.flush_points = flush_seconds, flush_points
        self._points: list[list[Any]] = []
        self._last_flush = time.monotonic()

    def emit(self, type_: str, **fields: Any) -> None:
        """Send one event (after the buffered points)."""
        if type_ not in EVENT_TYPES:
            raise ProtocolError(f"unknown event type {type_!r}; known: {', '.join(EVENT_TYPES)}")
        if type_ != "metrics":
            self.flush()
        self._send(type_, fields)

    def metric(self, key: str, step: int, value: Any) -> None:
        """Buffer one point of a series (``key`` at ``step``)."""
        self._points.append([str(key), int(step), finite(value)])
        if len(self._points) >= self.flush_points or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Send the buffered points now."""
        self._last_flush = time.monotonic()
        if self._points:
            points, self._points = self._points, []
            self._send("metrics", {"points": points})

    def close(self) -> None:
        self.flush()
        self.sink.close()

    def _send(self, type_: str, fields: dict[str, Any]) -> None:
        self.seq += 1
        event = {"v": PROTOCOL_VERSION, "seq": self.seq, "type": type_, "time": time.time(), **fields}
        line = json.dumps(event, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self.sink.write(line, type_ in DURABLE)


# -- reading events back --------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    time: float
    fields: dict[str, Any]


def parse_event(line: bytes | str) -> Event:
    """One line of the protocol, checked; :class:`ProtocolError` says what is wrong."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("an event is a JSON object")
    type_ = data.pop("type", None)
    if type_ not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {type_!r}; known: {', '.join(EVENT_TYPES)}")
    version = data.pop("v", PROTOCOL_VERSION)
    if not isinstance(version, int) or version > PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r}: this Blueno reads version {PROTOCOL_VERSION}")
    seq = data.pop("seq", 0)
    stamp = data.pop("time", None)
    return Event(int(seq) if isinstance(seq, int) else 0, type_,
                 float(stamp) if isinstance(stamp, int | float) else time.time(), data)


class Source(Protocol):
    """Where the scheduler reads an attempt's events from, resuming at an opaque ``position``."""

    def read(self, position: int) -> tuple[list[Event], list[str], int]: ...


class FileSource:
    """Reads complete lines appended to an events file after a byte offset.

    A last line without its newline (a trainer killed mid-write) is left for
    later; a line that is not a valid event is reported, not applied.
    """

    def __init__(self, path: str | os.PathLike[str], chunk: int = 1 << 22) -> None:
        self.path = Path(path)
        self.chunk = chunk

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, position: int) -> tuple[list[Event], list[str], int]:
        """(events, problems, new position) of the complete lines after ``position``."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(position)
                data = handle.read(self.chunk)
        except FileNotFoundError:
            return [], [], position
        end = data.rfind(b"\n")
        if end < 0:
            return [], [], position
        events, problems = parse_lines(data[:end + 1].splitlines())
        return events, problems, position + end + 1


def parse_lines(lines: Iterable[bytes]) -> tuple[list[Event], list[str]]:
    events, problems = [], []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            events.append(parse_event(raw))
        except ProtocolError as exc:
            problems.append(f"{exc}: {raw[:120]!r}")
    return events, problems


# -- the job spec -------------------------------------------------------------------------


def write_spec(path: Path, spec: dict[str, Any]) -> None:
    """Write a job spec atomically (a trainer never reads half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"v": PROTOCOL_VERSION, **spec}, separators=(",", ":")))
    os.replace(tmp, path)


def await_go() -> None:
    """Wait until the scheduler has recorded this trainer's process; exit at once if it never will.

    The scheduler starts a trainer, then records its pid (which is how a
    later scheduler finds and stops it), then writes :data:`GO` to the pipe
    ``$BLUENO_GATE`` names.  A scheduler killed between the start and the
    record closes the pipe without writing: the trainer reads end-of-file
    and exits with :data:`EXIT_NOT_RECORDED` before doing anything, because
    nobody could stop it and its job runs again (a second run of the same
    attempt would otherwise race the next one for the run's checkpoints).
    Called by :func:`read_spec` and :func:`writer_from_env`, so every trainer
    that reads its spec or reports waits; once per process (the variable is
    removed).  The wait is the scheduler's one database commit.
    """
    value = os.environ.pop(GATE_ENV, None)
    if not value:
        return
    try:
        fd = int(value)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return  # not the scheduler's pipe (a process that closed it and reused the number)
    except (ValueError, OSError):
        return
    try:
        go = os.read(fd, 1) == GO
    except OSError:
        go = False
    finally:
        os.close(fd)
    if not go:
        print("blueno: the scheduler stopped before it recorded this trainer; the job runs again later, "
              "so this process exits without doing anything", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_NOT_RECORDED)


def read_spec(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """This attempt's job spec: ``path``, else ``$BLUENO_JOB`` (after :func:`await_go`)."""
    if path is None:
        await_go()
    chosen = path or os.environ.get(JOB_ENV)
    if not chosen:
        raise ProtocolError(f"no job spec: ${JOB_ENV} is not set (is this process run by a Blueno scheduler?)")
    spec = json.loads(Path(chosen).read_text())
    if spec.get("v", 0) > PROTOCOL_VERSION:
        raise ProtocolError(f"{chosen}: job spec version {spec['v']}; this Blueno reads {PROTOCOL_VERSION}")
    return spec


def writer_from_env() -> EventWriter:
    """The writer the scheduler set up for this process (``$BLUENO_EVENTS``), or one that discards."""
    await_go()
    path = os.environ.get(EVENTS_ENV)
    return EventWriter(FileSink(path) if path else NullSink())
