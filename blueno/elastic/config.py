"""Where and how to reach Elasticsearch: ``[elasticsearch]`` settings, ``BLUENO_ES_*`` overrides.

Secrets (API key, password) stay out of ``repr`` and are redacted from every message.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from elasticsearch import Elasticsearch

from blueno import BluenoError
from blueno.workspace import Workspace, check_secret_mode

DEFAULT_API_KEY_FILE = "elasticsearch-api-key"  # in the workspace's credentials/ folder

# Environment variables override the settings file's [elasticsearch] section.
ENV_SETTINGS = {
    "BLUENO_ES_URL": "urls",
    "BLUENO_ES_API_KEY": "api_key",
    "BLUENO_ES_API_KEY_FILE": "api_key_file",
    "BLUENO_ES_USERNAME": "username",
    "BLUENO_ES_PASSWORD": "password",
    "BLUENO_ES_CA_CERTS": "ca_certs",
    "BLUENO_ES_VERIFY_CERTS": "verify_certs",
    "BLUENO_ES_INDEX_PREFIX": "index_prefix",
}
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class EsConfig:
    """Where and how to sync; tuning fields have defaults meant for a real cluster."""

    urls: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    index_prefix: str = "blueno"
    request_timeout: float = 30.0
    batch_runs: int = 100  # outbox rows claimed per pass
    bulk_docs: int = 1000  # documents per bulk request
    max_attempts: int = 10  # item-level failures (429, 5xx) before a row is parked
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    claim_timeout_s: float = 120.0  # another worker may resend a claimed row after this
    poll_s: float = 2.0

    @property
    def runs_index(self) -> str:
        return f"{self.index_prefix}-runs"

    @property
    def metrics_index(self) -> str:
        return f"{self.index_prefix}-metrics"

    def redact(self, text: str) -> str:
        """``text`` with every secret of this configuration replaced by ``***``."""
        for secret in (self.api_key, self.password):
            if secret:
                for form in {secret, quote(secret, safe=""), quote(secret)}:
                    text = text.replace(form, "***")
        return text

    def backoff(self, attempts: int) -> float:
        """Exponential, capped, with jitter so the boxes of a lab do not retry in step."""
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** min(max(attempts - 1, 0), 30))
        return delay * random.uniform(0.5, 1.0)

    def client(self) -> Elasticsearch:
        """The official client; 429 is left to the bulk helper, which backs off between tries."""
        options: dict[str, Any] = {
            "request_timeout": self.request_timeout,
            "max_retries": 1,
            "retry_on_timeout": False,
            "retry_on_status": (502, 503, 504),
            "verify_certs": self.verify_certs,
        }
        if self.ca_certs:
            options["ca_certs"] = self.ca_certs
        if self.api_key:
            options["api_key"] = self.api_key
        elif self.username:
            options["basic_auth"] = (self.username, self.password or "")
        return Elasticsearch(list(self.urls), **options)


_SETTINGS = {f.name for f in EsConfig.__dataclass_fields__.values()} | {"url", "api_key_file"}


def load_config(workspace: Workspace, environ: Mapping[str, str] | None = None) -> EsConfig | None:
    """The ``[elasticsearch]`` settings overridden by ``BLUENO_ES_*``; None when no URL is set."""
    env = os.environ if environ is None else environ
    section = dict(workspace.settings().get("elasticsearch", {}))
    unknown = sorted(set(section) - _SETTINGS)
    if unknown:
        raise BluenoError(
            f"{workspace.settings_path}: unknown key(s) {', '.join(unknown)} in [elasticsearch]. "
            f"Known keys: {', '.join(sorted(_SETTINGS))}."
        )
    section.update({key: env[var] for var, key in ENV_SETTINGS.items() if env.get(var)})
    raw_urls = section.pop("urls", None) or section.pop("url", None)
    section.pop("url", None)
    if not raw_urls:
        return None
    if isinstance(raw_urls, str):
        raw_urls = [u for u in (part.strip() for part in raw_urls.split(",")) if u]
    urls = []
    for raw in raw_urls:
        url, username, password = _split_userinfo(str(raw))
        urls.append(url)
        section.setdefault("username", username)
        section.setdefault("password", password)
    key_file = section.pop("api_key_file", None)
    default_key = workspace.credentials_dir / DEFAULT_API_KEY_FILE
    if key_file or (not section.get("api_key") and not section.get("username") and default_key.is_file()):
        section["api_key"] = _read_secret(workspace, key_file or default_key)
    if section.get("ca_certs"):
        section["ca_certs"] = str(_resolve(workspace, section["ca_certs"]))
    prefix = str(section.get("index_prefix", EsConfig.index_prefix))
    if not _INDEX_PREFIX.fullmatch(prefix):
        raise BluenoError(
            f"index_prefix {prefix!r} is not a valid Elasticsearch index name start: use lowercase "
            "letters, digits, '.', '_' or '-', beginning with a letter or digit."
        )
    try:
        return EsConfig(urls=tuple(urls), **{k: _coerce(k, v) for k, v in section.items() if v is not None})
    except ValueError as exc:
        raise BluenoError(f"[elasticsearch] settings: {exc}") from None


_AUTHORITY_TAIL = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?([/?#].*)?$", re.DOTALL)


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Move ``user:password@`` out of a URL so that no error message can ever show it.

    The userinfo is split off at the last ``@`` whose remainder is a plain
    ``host[:port][/path]``, so a password holding ``/``, ``?``, ``#`` or ``@``
    (which ``urlsplit`` would cut into path, query or fragment) is taken whole;
    percent-encoded user names and passwords are decoded.  Messages show only
    the scheme and host.
    """
    scheme, sep, rest = url.strip().partition("://")
    username = password = None
    if sep and "@" in rest:
        for at in [i for i, c in enumerate(rest) if c == "@"][::-1]:
            if _AUTHORITY_TAIL.fullmatch(rest[at + 1:]):
                userinfo, rest = rest[:at], rest[at + 1:]
                user, has_password, secret = userinfo.partition(":")
                username, password = unquote(user), (unquote(secret) if has_password else None)
                break
    host_match = _AUTHORITY_TAIL.fullmatch(rest) if sep else None
    shown = f"{scheme or '?'}://{host_match.group(1) if host_match else '?'}"
    if scheme not in ("http", "https") or host_match is None:
        raise BluenoError(f"Elasticsearch URL {shown}… is not http(s)://[user:password@]host[:port]; set "
                          "[elasticsearch] urls or BLUENO_ES_URL (a password may hold any character).")
    port = host_match.group(2)
    if port and not 0 < int(port[1:]) < 65536:
        raise BluenoError(f"Elasticsearch URL {shown}{port} has a port out of range; use 1-65535.")
    return f"{scheme}://{rest}", username, password


def _resolve(workspace: Workspace, path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else workspace.root / path


def _read_secret(workspace: Workspace, path: str | Path) -> str:
    resolved = _resolve(workspace, path)
    try:
        secret = resolved.read_text(encoding="utf-8").strip()
        check_secret_mode(resolved)
        return secret
    except OSError as exc:
        raise BluenoError(f"cannot read the Elasticsearch API key file {resolved}: {exc.strerror}.") from None


def _coerce(key: str, value: Any) -> Any:
    """Settings from TOML are typed already; from the environment they are strings."""
    default = EsConfig.__dataclass_fields__[key].default
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{key} must be true or false, not {value!r}")
        return text in ("1", "true", "yes")
    if isinstance(default, int | float) and not isinstance(value, int | float):
        try:
            return type(default)(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, not {value!r}") from None
    return value if isinstance(default, int | float) else str(value)
