"""Locating a workspace: the folder that holds ``blueno.db``, data, models and logs.

Chosen by ``--home`` or ``$BLUENO_HOME``; otherwise the repository root when
Blueno runs from a checkout (where ``models/ logs/ credentials/`` live), else a
per-user data folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blueno import BluenoError
from blueno.settings_check import settings_problems

ENV_HOME = "BLUENO_HOME"
# What CUDA_VISIBLE_DEVICES accepts: an index, a GPU UUID or a MIG instance.
GPU_ID = re.compile(r"\d+|GPU-[0-9A-Fa-f-]+|MIG-[\w/-]+")
SETTINGS_FILE = "settings.toml"
SECRET_KEY = re.compile(r"(password|secret|token|api_key|webhook)", re.IGNORECASE)
log = logging.getLogger(__name__)
_warned: set[tuple[str, int]] = set()  # (path, mode) already warned about in this process

# Filesystems on which SQLite's WAL mode (shared memory between processes)
# does not work reliably.  Blueno refuses them instead of corrupting a queue.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "fuse.sshfs",
        "sshfs",
        "afs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
    }
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def check_secret_mode(path: Path) -> None:
    """Warn (once per read) when a secret file can be read by other users, with the fix."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077 and (str(path), mode) not in _warned:
        _warned.add((str(path), mode))
        log.warning("%s holds a secret but other users may read it (mode %o); run: chmod 600 %s",
                    path, mode, path)


def holds_secrets(settings: Mapping[str, Any]) -> bool:
    """Whether the settings hold a password, token or a URL with credentials (then the file is 0600)."""
    def walk(value: Any, key: str = "") -> bool:
        if isinstance(value, Mapping):
            return any(walk(v, str(k)) for k, v in value.items())
        if isinstance(value, list | tuple):
            return any(walk(v, key) for v in value)
        if isinstance(value, str) and value:
            return bool(SECRET_KEY.search(key) and not key.endswith("_file")) or bool(
                re.search(r"://[^/@\s]*:[^@\s]*@", value))
        return False

    return walk(settings)


def parse_gpu_ids(text: str, source: str = "--gpus") -> list[str]:
    """The GPUs a comma-separated list names (``0,1``; UUIDs too), or a BluenoError saying what is wrong.

    The settings dialog, the settings file and ``--gpus`` all go through here, so "abc"
    is refused where it is typed instead of becoming a slot that trains on the CPU.
    """
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise BluenoError(f"{source} {text!r} names no GPU; write GPU numbers separated by commas, e.g. 0,1")
    bad = [part for part in ids if not GPU_ID.fullmatch(part)]
    if bad:
        raise BluenoError(
            f"{source}: {', '.join(repr(b) for b in bad)} is not a GPU; write GPU numbers separated by "
            "commas (e.g. 0,1, as nvidia-smi numbers them) or leave it empty to use every GPU found"
        )
    if len(set(ids)) != len(ids):
        raise BluenoError(f"{source} {text!r} names a GPU twice; list each GPU once, e.g. 0,1")
    return ids


def _checkout_root() -> Path | None:
    """The repository root when this package runs from a source checkout."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "blueno").is_dir():
        return root
    return None


def _user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "blueno"


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path``, from /proc/mounts (Linux only)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    path = path.resolve()
    best: tuple[int, str] | None = None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        try:
            path.relative_to(mount_point)
        except ValueError:
            continue
        if best is None or len(mount_point) > best[0]:
            best = (len(mount_point), parts[2])
    return best[1] if best else None


@dataclass(frozen=True)
class Workspace:
    """A workspace folder and the paths inside it."""

    root: Path

    @classmethod
    def locate(cls, home: str | os.PathLike[str] | None = None) -> Workspace:
        """``home`` if given, else ``$BLUENO_HOME``, else the checkout, else a user folder."""
        chosen = home or os.environ.get(ENV_HOME) or _checkout_root() or _user_data_dir()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "blueno.db"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def zoo_dir(self) -> Path:
        """User models: every ``*.py`` here may register models with the zoo."""
        return self.root / "zoo"

    @property
    def transforms_dir(self) -> Path:
        """User preprocessing transforms (not ``etl/``: in a checkout that is the package itself)."""
        return self.root / "transforms"

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def scheduler_lock_path(self) -> Path:
        return self.root / ".scheduler.lock"

    def run_dir(self, run_id: int) -> Path:
        return self.models_dir / f"run-{run_id}"

    def run_log(self, run_id: int) -> Path:
        return self.logs_dir / f"run-{run_id}.log"

    def git_commit(self) -> str | None:
        """``git rev-parse HEAD`` of the workspace when it is a checkout: what code a run was made with."""
        if not (self.root / ".git").exists():
            return None
        try:
            result = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() or None if result.returncode == 0 else None

    def ensure(self) -> Workspace:
        """Create the folders; refuse a network filesystem with the reason."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BluenoError(
                f"cannot create the workspace folder {self.root}: {exc.strerror}. "
                f"Choose another with --home DIR or ${ENV_HOME}."
            ) from None
        fstype = filesystem_type(self.root)
        if fstype in NETWORK_FILESYSTEMS:
            raise BluenoError(
                f"the workspace {self.root} is on a network filesystem ({fstype}). "
                "SQLite's WAL mode, which keeps the job queue safe between processes, "
                "does not work there. Put the workspace on a local disk (--home DIR); "
                "datasets can still live on the network and be imported with --link."
            )
        for folder in (self.data_dir, self.models_dir, self.logs_dir):
            folder.mkdir(exist_ok=True)
        self._credentials_folder()
        self.sweep_scratch()
        return self

    def sweep_scratch(self) -> list[str]:
        """Remove the scratch folders (``data/.tmp-<purpose>-<pid>-…``) of processes that died (a SIGKILL,
        a power cut), at every start-up; returns their names.

        One whose process is alive is an import or pull under way and stays.  A
        name without a pid (made by an older Blueno) is removed once it is an hour old.
        """
        removed = []
        try:
            entries = list(os.scandir(self.data_dir))
        except OSError:
            return removed
        for entry in entries:
            if not entry.name.startswith(".tmp-") or not entry.is_dir(follow_symlinks=False):
                continue
            parts = entry.name.split("-")
            pid = int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None
            try:
                if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
                    continue
                if pid is None and time.time() - entry.stat(follow_symlinks=False).st_mtime < 3600:
                    continue
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
        return removed

    def _credentials_folder(self) -> Path:
        """``credentials/``, created (or tightened to) mode 0700: only its owner may list or enter it."""
        self.credentials_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.credentials_dir.stat().st_mode) & 0o077:
            os.chmod(self.credentials_dir, 0o700)
        return self.credentials_dir

    def settings(self) -> dict[str, Any]:
        """The settings file as a dict (empty when there is none)."""
        try:
            text = self.settings_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            settings = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BluenoError(f"{self.settings_path}: {exc}. Fix the TOML syntax there.") from None
        if holds_secrets(settings):
            check_secret_mode(self.settings_path)
        return settings

    def save_settings(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Merge ``changes`` (section → key → value; "" or None removes the key) into the settings file.

        Values are checked first (``[scheduler] gpus``: :func:`parse_gpu_ids`), so a bad one
        leaves the file as it was.  The file is edited with tomlkit, so the user's comments
        and layout survive, and written to a temporary file and renamed, so a crash never
        leaves half a file.
        """
        import tomlkit

        gpus = (changes.get("scheduler") or {}).get("gpus")
        if gpus not in ("", None):
            parse_gpu_ids(str(gpus), source=f"{self.settings_path.name} [scheduler] gpus")
        self.settings()  # a file that does not parse is reported, not overwritten
        try:
            document = tomlkit.parse(self.settings_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            document = tomlkit.document()
        for section, values in changes.items():
            if section not in document:
                document.add(section, tomlkit.table())
            table = document[section]
            for key, value in values.items():
                if value in ("", None):
                    table.pop(key, None)
                else:
                    table[key] = value
            if not table:
                document.pop(section)
        merged = document.unwrap()
        problems = settings_problems(merged)
        if problems:
            raise BluenoError(f"settings not saved: {'; '.join(problems)}.")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(tomlkit.dumps(document))
        os.chmod(tmp, 0o600 if holds_secrets(merged) else 0o644)  # URLs with passwords, tokens: owner only
        os.replace(tmp, self.settings_path)
        return merged

    def save_secret(self, name: str, value: str) -> Path:
        """Write a secret to ``credentials/NAME``, readable by its owner only (0600, also when it existed)."""
        path = self._credentials_folder() / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value.strip() + "\n")
        return path

    def open_store(self):  # -> blueno.store.Store (imported lazily to keep this module light)
        from blueno.store import Store

        self.ensure()
        return Store(self.db_path)
