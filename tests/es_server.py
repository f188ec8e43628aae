"""A small Elasticsearch stand-in for tests: real HTTP, real request and response shapes.

No Elasticsearch can be installed where Blueno's tests run, so the sync code is
driven with the official client against this server.  It implements the subset
Blueno calls (``GET /``, index templates, ``_bulk``, ``_doc``, ``_count``,
``_search``), sends the headers the client checks (``X-Elastic-Product``, the
compatible-with content type), applies an index template's ``dynamic: strict``
when it creates an index, honours external versioning, and keeps every
document in memory so tests can count them and look for duplicates.

Faults are switched on through :attr:`EsTestServer.faults`:

* :meth:`EsTestServer.down` really stops listening and closes open sockets;
  :meth:`EsTestServer.up` listens again on the same port;
* ``slow_s`` delays every request (client timeouts);
* ``request_429_fraction`` answers whole requests with 429, ``item_429_fraction``
  answers that share of bulk items with 429 (drawn per attempt: transient);
* ``reject_fraction`` / ``reject_ids`` reject documents with a 400 mapping error
  (decided by the document id, so a rejected document stays rejected);
* ``hold_bulks`` applies a bulk, then holds the response until the test lets it
  go (see :meth:`EsTestServer.next_held`): a client killed meanwhile has sent
  a bulk whose result it never saw.
"""

from __future__ import annotations

import fnmatch
import json
import queue
import random
import socket
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

VERSION = "9.1.0"
CONTENT_TYPE = "application/vnd.elasticsearch+json;compatible-with=9"
_SHARDS = {"total": 1, "successful": 1, "failed": 0}


@dataclass
class Faults:
    slow_s: float = 0.0
    request_429_fraction: float = 0.0
    item_429_fraction: float = 0.0
    reject_fraction: float = 0.0
    reject_ids: set[str] = field(default_factory=set)
    hold_bulks: bool = False


@dataclass
class Doc:
    source: dict[str, Any]
    version: int
    seq_no: int


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class EsState:
    """Indices, templates and a log of every request, shared across down/up cycles."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.templates: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, dict[str, Doc]] = {}
        self.mappings: dict[str, dict[str, Any]] = {}
        self.created_from_template: dict[str, str | None] = {}
        self.writes: Counter[tuple[str, str]] = Counter()
        self.requests: list[Request] = []
        self.seq_no = 0

    def docs(self, pattern: str) -> dict[str, dict[str, Any]]:
        """Every document (id -> source) in the indices matching ``pattern``."""
        with self.lock:
            return {
                doc_id: doc.source
                for index, docs in self.indices.items()
                if fnmatch.fnmatchcase(index, pattern)
                for doc_id, doc in docs.items()
            }

    def create_index(self, index: str) -> None:
        """Auto-create an index the way Elasticsearch does: from the best matching template."""
        matching = [
            (body.get("priority", 0), name, body)
            for name, body in self.templates.items()
            if any(fnmatch.fnmatchcase(index, p) for p in body.get("index_patterns", []))
        ]
        if matching:
            _, name, body = max(matching, key=lambda m: m[0])
            self.mappings[index] = body.get("template", {}).get("mappings", {})
            self.created_from_template[index] = name
        else:
            self.mappings[index] = {}
            self.created_from_template[index] = None
        self.indices[index] = {}


def rejected_by_id(doc_id: str, fraction: float) -> bool:
    return fraction > 0 and zlib.crc32(doc_id.encode()) / 2**32 < fraction


def _strict_violation(mapping: dict[str, Any], source: dict[str, Any]) -> str | None:
    if mapping.get("dynamic") != "strict":
        return None
    for key in source:
        if key not in mapping.get("properties", {}):
            return (
                f"[1:2] mapping set to strict, dynamic introduction of [{key}] "
                "within [_doc] is not allowed"
            )
    return None


def _matches(source: dict[str, Any], query: dict[str, Any] | None) -> bool:
    """``match_all`` and ``term``/``terms`` on (dotted) top-level fields: enough for tests."""
    if not query or "match_all" in query:
        return True
    if "term" in query:
        ((name, value),) = query["term"].items()
        value = value["value"] if isinstance(value, dict) else value
        return _field(source, name) == value
    if "terms" in query:
        ((name, values),) = query["terms"].items()
        return _field(source, name) in values
    raise ValueError(f"query not supported by the test server: {query}")


def _field(source: dict[str, Any], name: str) -> Any:
    value: Any = source
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _respond(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, kind: str, reason: str) -> None:
        self._respond(status, {"error": {"type": kind, "reason": reason}, "status": status})

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with owner.state.lock:
            owner.state.requests.append(
                Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        if owner.faults.slow_s:
            time.sleep(owner.faults.slow_s)
        if owner.api_key and self.headers.get("Authorization") != f"ApiKey {owner.api_key}":
            self._error(401, "security_exception", "unable to authenticate with provided credentials")
            return
        if owner.rng.random() < owner.faults.request_429_fraction:
            self._error(429, "es_rejected_execution_exception", "rejected execution: queue capacity reached")
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        payload = json.loads(body) if body and parts[-1:] != ["_bulk"] else None
        try:
            self._route(parts, payload, body)
        except (ValueError, KeyError) as exc:
            self._error(400, "parsing_exception", str(exc))

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def _route(self, parts: list[str], payload: Any, body: bytes) -> None:
        method = self.command
        if not parts:
            self._respond(200, {
                "name": "es-test-server", "cluster_name": "blueno-tests", "cluster_uuid": "test",
                "version": {"number": VERSION, "build_flavor": "default", "lucene_version": "10.0.0",
                            "minimum_wire_compatibility_version": "8.18.0",
                            "minimum_index_compatibility_version": "8.0.0"},
                "tagline": "You Know, for Search",
            })
        elif parts[0] == "_index_template" and len(parts) == 2:
            self._index_template(method, parts[1], payload)
        elif parts[-1] == "_bulk":
            self._bulk(parts[0] if len(parts) == 2 else None, body)
        elif len(parts) == 3 and parts[1] == "_doc" and method in ("GET", "HEAD"):
            self._get_doc(parts[0], parts[2])
        elif len(parts) == 2 and parts[1] in ("_count", "_search"):
            self._search(parts[0], parts[1], payload or {})
        else:
            self._error(400, "illegal_argument_exception",
                        f"test server: no handler for {method} /{'/'.join(parts)}")

    def _index_template(self, method: str, name: str, payload: Any) -> None:
        state = self.server.owner.state
        with state.lock:
            if method == "PUT":
                state.templates[name] = payload
                self._respond(200, {"acknowledged": True})
            elif name in state.templates:
                template = {"name": name, "index_template": state.templates[name]}
                self._respond(200, {"index_templates": [template]})
            else:
                self._error(404, "resource_not_found_exception",
                            f"index template matching [{name}] not found")

    def _bulk(self, default_index: str | None, body: bytes) -> None:
        owner = self.server.owner
        lines = [line for line in body.split(b"\n") if line.strip()]
        started = time.monotonic()
        items: list[dict[str, Any]] = []
        position = 0
        with owner.state.lock:
            while position < len(lines):
                action = json.loads(lines[position])
                ((op, meta),) = action.items()
                if op not in ("index", "create"):
                    raise ValueError(f"test server: bulk action [{op}] not supported")
                source = json.loads(lines[position + 1])
                position += 2
                items.append({op: self._bulk_item(meta.get("_index", default_index), meta, source)})
        response = {
            "errors": any(item[op]["status"] >= 300 for item in items for op in item),
            "took": int((time.monotonic() - started) * 1000),
            "items": items,
        }
        if owner.faults.hold_bulks:
            release = threading.Event()
            owner.held.put(release)
            release.wait(30)
        self._respond(200, response)

    def _bulk_item(self, index: str, meta: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
        owner = self.server.owner
        state = owner.state
        doc_id = meta.get("_id") or uuid.uuid4().hex
        base = {"_index": index, "_id": doc_id}
        if owner.rng.random() < owner.faults.item_429_fraction:
            return {**base, "status": 429, "error": {
                "type": "es_rejected_execution_exception",
                "reason": "rejected execution of coordinating operation"}}
        if doc_id in owner.faults.reject_ids or rejected_by_id(doc_id, owner.faults.reject_fraction):
            return {**base, "status": 400, "error": {
                "type": "document_parsing_exception",
                "reason": "[1:42] failed to parse field [value] of type [double] in document with id "
                          f"'{doc_id}'. Preview of field's value: 'not-a-number'"}}
        if index not in state.indices:
            state.create_index(index)
        violation = _strict_violation(state.mappings[index], source)
        if violation:
            return {**base, "status": 400, "error": {"type": "strict_dynamic_mapping_exception",
                                                    "reason": violation}}
        existing = state.indices[index].get(doc_id)
        version_type = meta.get("version_type", "internal")
        if version_type in ("external", "external_gte"):
            version = int(meta["version"])
            stale = existing is not None and (
                version < existing.version or (version_type == "external" and version == existing.version)
            )
            if stale:
                return {**base, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, current version [{existing.version}] is "
                              f"higher or equal to the one provided [{version}]"}}
        else:
            version = existing.version + 1 if existing else 1
        if meta.get("op_type") == "create" and existing is not None:
            return {**base, "status": 409, "error": {"type": "version_conflict_engine_exception",
                                                    "reason": f"[{doc_id}]: document already exists"}}
        state.seq_no += 1
        state.indices[index][doc_id] = Doc(source, version, state.seq_no)
        state.writes[(index, doc_id)] += 1
        return {**base, "_version": version, "result": "updated" if existing else "created",
                "_shards": _SHARDS, "_seq_no": state.seq_no, "_primary_term": 1,
                "status": 200 if existing else 201}

    def _get_doc(self, index: str, doc_id: str) -> None:
        state = self.server.owner.state
        with state.lock:
            doc = state.indices.get(index, {}).get(doc_id)
        if doc is None:
            self._respond(404, {"_index": index, "_id": doc_id, "found": False})
        else:
            self._respond(200, {"_index": index, "_id": doc_id, "_version": doc.version,
                                "_seq_no": doc.seq_no,
                                "_primary_term": 1, "found": True, "_source": doc.source})

    def _search(self, pattern: str, endpoint: str, payload: dict[str, Any]) -> None:
        state = self.server.owner.state
        with state.lock:
            hits = [
                (index, doc_id, doc)
                for index, docs in state.indices.items()
                if any(fnmatch.fnmatchcase(index, p) for p in pattern.split(","))
                for doc_id, doc in docs.items()
                if _matches(doc.source, payload.get("query"))
            ]
        if endpoint == "_count":
            self._respond(200, {"count": len(hits), "_shards": {**_SHARDS, "skipped": 0}})
            return
        size = int(payload.get("size", 10))
        self._respond(200, {
            "took": 1, "timed_out": False, "_shards": {**_SHARDS, "skipped": 0},
            "hits": {
                "total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0,
                "hits": [{"_index": i, "_id": d, "_score": 1.0, "_source": doc.source}
                         for i, d, doc in hits[:size]],
            },
        })


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: EsTestServer, port: int) -> None:
        self.owner = owner
        self.open_sockets: set[socket.socket] = set()
        super().__init__((owner.host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (killed, timed out) is part of the tests


class EsTestServer:
    """An in-memory Elasticsearch for tests; ``url`` is where the client should point."""

    def __init__(self, *, api_key: str | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.api_key = api_key
        self.faults = Faults()
        self.state = EsState()
        self.rng = random.Random(0)
        self.held: queue.Queue[threading.Event] = queue.Queue()
        self.port = 0
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def up(self) -> EsTestServer:
        """Listen (again, on the same port after :meth:`down`)."""
        self._httpd = _HttpServer(self, self.port)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="es-test-server", daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening and cut every open connection: clients see 'connection refused'."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for sock in list(httpd.open_sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def next_held(self, timeout: float = 30) -> threading.Event:
        """The next bulk applied while ``hold_bulks`` is on; set the event to let its answer go."""
        return self.held.get(timeout=timeout)

    def docs(self, pattern: str = "*") -> dict[str, dict[str, Any]]:
        return self.state.docs(pattern)

    def bodies(self) -> bytes:
        """Every request body received, concatenated: what was sent over the wire."""
        with self.state.lock:
            return b"\n".join(r.body for r in self.state.requests)
