"""Small HTTP servers on 127.0.0.1 that the lifecycle tests start and steer while Envoy talks to them:

* `ControlServer`: serves JSON documents (a JWKS, an OIDC discovery document, a SPIFFE trust bundle,
  a revocation feed) at fixed paths, counts every request per path, and can misbehave per path
  (`Mode`: close the connection without answering, answer too slowly, answer garbage, answer an
  oversized body, answer an error status) or as a whole (`down()`: the port refuses connections
  until `up()`);
* `ScriptedUpstream`: the tool upstream behind Envoy. Like upstream.py's recording echo server
  (`?status=NNN` picks the status), and it can add response headers per path, as an orchestrator
  behind the gateway would (the trusted revoke header).

Standard library only. Every server listens on 127.0.0.1 and answers with `Connection: close`
where it matters (ControlServer), so that `down()` really means "no answer": Envoy cannot reuse a
pooled connection to a server that is supposed to be gone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tokens import public_jwk
from upstream import ReceivedRequest


class Mode(Enum):
    OK = "ok"
    # accept, read the request, close the connection without a byte of answer
    CLOSE = "close"
    # answer correctly, but only after `slow_s` (past the fetch timeout)
    SLOW = "slow"
    # 200 with a body that is not JSON
    GARBAGE = "garbage"
    # 200 with the valid document padded far past any sane size cap
    OVERSIZED = "oversized"
    # `status` (500 by default) with a small JSON body
    ERROR = "error"


@dataclass
class Site:
    """One document at one path and how it is served."""

    document: dict | bytes
    cache_control: str | None = None
    mode: Mode = Mode.OK
    status: int = 500
    slow_s: float = 1.5
    oversize_bytes: int = 256 * 1024
    # monotonic times of the requests received
    hits: list[float] = field(default_factory=list)

    def body(self) -> bytes:
        if isinstance(self.document, bytes):
            return self.document
        return json.dumps(self.document).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (the base class names it so)
        control = self.server.control
        self.close_connection = True
        path = urlsplit(self.path).path
        with control.lock:
            control.requests.append((time.monotonic(), self.command, self.path, self.headers.get("host", "")))
            site = control.sites.get(path)
            if site is not None:
                site.hits.append(time.monotonic())
                mode, status, slow_s, oversize, body = (
                    site.mode,
                    site.status,
                    site.slow_s,
                    site.oversize_bytes,
                    site.body(),
                )
                cache_control = site.cache_control
        if site is None:
            self._send(404, b'{"error":"not_found"}')
            return
        if mode is Mode.CLOSE:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode is Mode.SLOW:
            time.sleep(slow_s)
        if mode is Mode.GARBAGE:
            self._send(200, b"<html><body>502 Bad Gateway (not a key set)</body></html>", "text/html")
            return
        if mode is Mode.ERROR:
            self._send(status, b'{"error":"server_error"}')
            return
        if mode is Mode.OVERSIZED:
            document = json.loads(body)
            document["padding"] = "x" * oversize
            body = json.dumps(document).encode()
        self._send(200, body, cache_control=cache_control)

    def _send(self, status: int, body: bytes, content_type: str = "application/json", cache_control=None) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            if cache_control:
                self.send_header("cache-control", cache_control)
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client (Envoy) gave up first: a slow answer past its timeout

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Envoy opens one connection per fetch, several at once on its first tick: the default backlog
    # of 5 would drop some of them (a connect timeout, i.e. a failure the test did not ask for)
    request_queue_size = 128

    def __init__(self, port: int, control: "ControlServer"):
        self.control = control
        super().__init__(("127.0.0.1", port), _Handler)


class ControlServer:
    """A document server whose behaviour the test controls. `port=0` picks a free port; the port
    stays the same across `down()`/`up()`. Start it `up` (default) or `down` (for a cold start
    against a server that is not there yet)."""

    def __init__(self, name: str, port: int = 0):
        self.name = name
        self.lock = threading.Lock()
        self.sites: dict[str, Site] = {}
        # (monotonic time, method, target, host) of every request, any path
        self.requests: list[tuple[float, str, str, str]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if port == 0:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port

    # lifecycle

    def up(self) -> "ControlServer":
        if self._server is None:
            self._server = _Server(self.port, self)
            self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}", daemon=True)
            self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections to the port are refused until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        self.down()

    # content and behaviour

    def serve(self, path: str, document: dict | bytes, cache_control: str | None = None) -> Site:
        with self.lock:
            site = self.sites.get(path)
            if site is None:
                site = self.sites[path] = Site(document, cache_control)
            else:
                site.document, site.cache_control = document, cache_control
            return site

    def set_document(self, path: str, document: dict | bytes) -> None:
        with self.lock:
            self.sites[path].document = document

    def set_mode(self, path: str, mode: Mode, **settings) -> None:
        with self.lock:
            site = self.sites[path]
            site.mode = mode
            for name, value in settings.items():
                setattr(site, name, value)

    def count(self, path: str) -> int:
        with self.lock:
            site = self.sites.get(path)
            return len(site.hits) if site else 0

    def hits(self, path: str) -> list[float]:
        with self.lock:
            return list(self.sites[path].hits)

    def wait_count(self, path: str, at_least: int, timeout_s: float) -> int:
        """Wait until `path` was requested at least `at_least` times; the count then (or at timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            n = self.count(path)
            if n >= at_least or time.monotonic() >= deadline:
                return n
            time.sleep(0.02)


# --- documents -------------------------------------------------------------------------------------


def jwks(*kids: str, use: str | None = None) -> dict:
    """A JWKS with the public halves of the named test keys."""
    keys = []
    for kid in kids:
        key = public_jwk(kid)
        if use is not None:
            key["use"] = use
        keys.append(key)
    return {"keys": keys}


def spiffe_bundle(*kids: str, refresh_hint_s: int, x509_kids: tuple[str, ...] = ()) -> dict:
    """A SPIFFE trust bundle: JWT-SVID keys (`use: jwt-svid`), X.509-SVID keys that a JWT verifier
    must skip, and the refresh hint."""
    keys = jwks(*kids, use="jwt-svid")["keys"] + jwks(*x509_kids, use="x509-svid")["keys"]
    return {"keys": keys, "spiffe_sequence": 1, "spiffe_refresh_hint": refresh_hint_s}


def discovery(issuer: str, jwks_uri: str) -> dict:
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }


def feed(*entries: dict) -> dict:
    return {"revoked": list(entries)}


# --- the tool upstream ----------------------------------------------------------------------------


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_UpstreamServer"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers=[(n.lower(), v) for n, v in self.headers.items()],
            body=body,
        )
        upstream = self.server.upstream
        with upstream.lock:
            upstream.requests.append(received)
            extra = list(upstream.response_headers.get(urlsplit(self.path).path, []))
        status = 200
        query = parse_qs(urlsplit(self.path).query)
        if query.get("status", [""])[0].isdigit():
            status = int(query["status"][0])
        payload = json.dumps({"tool": "scripted-upstream", "path": self.path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: "ScriptedUpstream"):
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)


class ScriptedUpstream:
    """A recording upstream with the interface harness.Gateway uses (`received_with`, `stop`), that
    answers `?status=NNN` with that status and adds the response headers set for a path."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.response_headers: dict[str, list[tuple[str, str]]] = {}
        self._server = _UpstreamServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-upstream", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "ScriptedUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_response_header(self, path: str, name: str, value: str) -> None:
        with self.lock:
            self.response_headers.setdefault(path, []).append((name, value))

    def received(self) -> list[ReceivedRequest]:
        with self.lock:
            return list(self.requests)

    def received_with(self, header: str, value: str) -> list[ReceivedRequest]:
        return [r for r in self.received() if value in r.header_values(header)]
