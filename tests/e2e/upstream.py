"""The tool upstream behind Envoy: a real HTTP server that records every request it receives and
answers with a JSON echo of it.

The end-to-end tests use the record to check what the upstream saw (audit headers present, spoofed
ones and the token gone, the normalised path); the demo, and envoy/docker-compose.yaml's `demo-tool`
service, run it standalone:  python tests/e2e/upstream.py --port 18002

Standard library only (the docker-compose service runs it in a bare python image).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class ReceivedRequest:
    """One request as the upstream received it. Header names are lower case; a header sent twice
    appears twice."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def header(self, name: str) -> str | None:
        """The value of a header expected at most once (fails loudly on duplicates)."""
        values = self.header_values(name)
        assert len(values) <= 1, f"header {name} arrived {len(values)} times: {values}"
        return values[0] if values else None

    def headers_with_prefix(self, prefix: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for n, v in self.headers:
            if n.startswith(prefix.lower()):
                found.setdefault(n, []).append(v)
        return found

    def as_json(self) -> dict:
        return {
            "method": self.method,
            "path": self.path,
            "headers": [[n, v] for n, v in self.headers],
            "body_bytes": len(self.body),
        }


class _EchoHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that Envoy can keep its upstream connections open.
    protocol_version = "HTTP/1.1"
    server: "_RecordingServer"

    def _handle(self) -> None:
        body = self._read_body()
        received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers=[(n.lower(), v) for n, v in self.headers.items()],
            body=body,
        )
        self.server.record(received)
        # `?status=NNN` lets a test check that the audit record carries the upstream's own status.
        status = 200
        query = parse_qs(urlsplit(self.path).query)
        if query.get("status", [""])[0].isdigit():
            status = int(query["status"][0])
        payload = json.dumps({"tool": self.server.name, "received": received.as_json()}, indent=2).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers end with an empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class names it so)
        if self.server.verbose:
            sys.stderr.write(f"{self.server.name}: {format % args}\n")


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str, verbose: bool):
        super().__init__(address, _EchoHandler)
        self.name = name
        self.verbose = verbose
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(request)

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)


class Upstream:
    """A recording echo server on 127.0.0.1, served from a background thread.

    `port=0` picks a free port. Use as a context manager, or call start()/stop()."""

    def __init__(self, port: int = 0, name: str = "demo-tool", verbose: bool = False):
        self._server = _RecordingServer(("127.0.0.1", port), name, verbose)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-upstream", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "Upstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "Upstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def received(self) -> list[ReceivedRequest]:
        return self._server.received()

    def received_with(self, header: str, value: str) -> list[ReceivedRequest]:
        """The requests that carried `header: value` (tests tag each call with a unique id)."""
        return [r for r in self.received() if value in r.header_values(header)]


def main() -> None:
    parser = argparse.ArgumentParser(description="intentgate demo tool: echoes every request as JSON")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18002)
    args = parser.parse_args()
    server = _RecordingServer((args.host, args.port), "demo-tool", verbose=True)
    print(f"demo-tool listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
