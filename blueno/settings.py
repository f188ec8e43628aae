"""The settings a user edits (slots, Cloud Storage, Elasticsearch) read and written in one place.

The app's settings dialog and the engine read the same keys through here and
:mod:`blueno.elastic.config`: ``[elasticsearch] urls`` (a list; the older
single ``url`` is still read, and replaced by ``urls`` on the next save).
The API key is a secret: it goes to ``credentials/elasticsearch-api-key``
(owner-only), never into settings.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blueno.workspace import Workspace

API_KEY_FILE = "elasticsearch-api-key"  # = blueno.elastic.config.DEFAULT_API_KEY_FILE (checked by a test)


@dataclass
class UserSettings:
    """What the settings dialog shows and saves."""

    slots: int = 1  # CPU slots when no GPU is listed
    gpus: str = ""  # "0,1": one slot per GPU; empty: detect
    gcs_bucket: str = ""
    gcs_credentials: str = ""
    es_urls: list[str] = field(default_factory=list)
    es_key_stored: bool = False


def _urls(value: object) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(part).strip() for part in value if str(part).strip()]
    return []


def read_settings(workspace: Workspace) -> UserSettings:
    """The user-editable settings (touches the disk: call it off a GUI thread)."""
    current = workspace.settings()
    scheduler, gcs, elastic = (current.get(name, {}) for name in ("scheduler", "gcs", "elasticsearch"))
    return UserSettings(
        slots=int(scheduler.get("slots", 1)),
        gpus=str(scheduler.get("gpus", "")),
        gcs_bucket=str(gcs.get("bucket", "")),
        gcs_credentials=str(gcs.get("credentials", "")),
        es_urls=_urls(elastic.get("urls") or elastic.get("url")),
        es_key_stored=(workspace.credentials_dir / API_KEY_FILE).is_file(),
    )


def write_settings(workspace: Workspace, settings: UserSettings, api_key: str = "") -> None:
    """Save ``settings`` into settings.toml (other keys kept) and a new API key into its own file."""
    gpus = settings.gpus.strip()
    workspace.save_settings({
        "scheduler": {"slots": None if gpus else settings.slots, "gpus": gpus},
        "gcs": {"bucket": settings.gcs_bucket.strip(), "credentials": settings.gcs_credentials.strip()},
        "elasticsearch": {"urls": [u for u in settings.es_urls if u.strip()] or None, "url": None},
    })
    if api_key.strip():
        workspace.save_secret(API_KEY_FILE, api_key)
