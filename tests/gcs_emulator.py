"""gcp-storage-emulator as a subprocess on a free loopback port, for tests and the benchmark.

The real ``google-cloud-storage`` client talks to it through
``STORAGE_EMULATOR_HOST`` (it then uses anonymous credentials).  Use the
fixtures ``gcs_emulator`` (the URL) and ``gcs_bucket`` (a fresh ``gs://`` bucket)
by importing ``gcs_emulator_fixture, gcs_bucket_fixture`` into a test module,
or by listing this module in the root conftest's ``pytest_plugins``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest

# The emulator serves one request at a time (http.server.HTTPServer) and keeps the standard
# library's listen queue of 5. Blueno pushes and pulls on 8 connections at once, so on a loaded
# machine the extra connections' SYNs were dropped and a push failed with ConnectTimeout (seen in
# CI). Real Cloud Storage accepts every connection: the emulator is started with a deeper queue.
LAUNCH = (
    "import http.server, sys; http.server.HTTPServer.request_queue_size = 128; "
    "from gcp_storage_emulator.__main__ import main; sys.argv[0] = 'gcp-storage-emulator'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_emulator() -> Iterator[str]:
    """Start the emulator in memory; yields its URL; stops it (by its own pid) afterwards."""
    port = free_port()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
             "--quiet"],
            stdout=subprocess.DEVNULL, stderr=errors,
        )
        try:
            _wait_for(port, process, errors)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(port: int, process: subprocess.Popen, errors: IO[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                errors.seek(0)
                raise RuntimeError(f"gcp-storage-emulator did not start: {errors.read()!r}") from None
            time.sleep(0.05)


# Named fixtures (``name=``) so a module can import them without its test arguments shadowing the import.
@pytest.fixture(scope="session", name="gcs_emulator")
def gcs_emulator_fixture() -> Iterator[str]:
    with running_emulator() as url:
        yield url


@pytest.fixture(name="gcs_bucket")
def gcs_bucket_fixture(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the emulator; returns ``gs://<bucket>/blueno``."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.Client(project="blueno-emulator").create_bucket(name)
    return f"gs://{name}/blueno"
