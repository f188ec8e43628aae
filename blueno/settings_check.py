"""Shape checks of the settings file's sections, shared by the code that saves settings and each reader.

Pure functions over parsed TOML (no I/O, no Blueno imports), so the workspace
can check settings when they are saved and a reader (the notifier, in the
scheduler's loop) when they are read, without either importing the other.
Messages never quote a URL: webhook URLs carry their token.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

NOTIFY_BOOLEAN_KEYS = ("on_job_failed", "on_experiment_finished", "enabled")


def url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a webhook URL (only http and https, with a host and a valid port), or None.

    The answer never quotes the URL: it carries the webhook's token.
    """
    if not isinstance(url, str) or not url.strip():
        return "the webhook URL is not a text value"
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "the webhook URL has an invalid port or address"
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        return f"the webhook URL must start with https:// (or http://), not {shown}"
    if not parts.hostname:
        return "the webhook URL has no host"
    return None


def notify_problems(section: object) -> list[str]:
    """What is wrong with a ``[notify]`` section (checked when settings are saved and when read)."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"[notify] must be a table (a [notify] section with webhook_url = ...), not a {type(section).__name__}"]
    problems = [f"[notify] {key} must be true or false" for key in NOTIFY_BOOLEAN_KEYS
                if key in section and not isinstance(section[key], bool)]
    if section.get("webhook_url") not in (None, "") and (problem := url_problem(section["webhook_url"])):
        problems.append(f"[notify] webhook_url: {problem}")
    if "webhook_url_file" in section:
        name = section["webhook_url_file"]
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            problems.append("[notify] webhook_url_file must be a file name inside credentials/")
    return problems


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """Shape problems of the known sections (tables where tables belong, a valid [notify])."""
    problems = [f"[{name}] must be a table, not a {type(settings[name]).__name__}"
                for name in ("gcs", "elasticsearch", "scheduler", "tensorboard") if name in settings
                and not isinstance(settings[name], dict)]
    board = settings.get("tensorboard")
    if isinstance(board, dict) and "enabled" in board and not isinstance(board["enabled"], bool):
        problems.append("[tensorboard] enabled must be true or false")
    return problems + notify_problems(settings.get("notify"))
