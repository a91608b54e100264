"""A real MCP server (official Python SDK, `mcp==2.3.0`) for the end-to-end tests: a ticket desk with
tools of four risk classes, served over Streamable HTTP on 127.0.0.1.

Tools (real results, in-memory state per server instance):
    search_tickets(query)                          read        -> matching tickets
    update_ticket(ticket_id, status)               write       -> the updated ticket
    refund_payment(ticket_id, amount, currency)    payment     -> a refund confirmation with the amount
    rotate_secret(name)                            credential  -> the new secret version (never a value)

Run it:
    python tests/e2e/mcp_tool_server.py --port 18080                 # JSON responses (default), stateless
    python tests/e2e/mcp_tool_server.py --port 18080 --sse           # text/event-stream responses
    python tests/e2e/mcp_tool_server.py --port 0 --record /tmp/r.jsonl --ready-file /tmp/ready.json
    options: --stateful (issue/require mcp-session-id; default stateless), --notify (a
    notifications/message event ahead of each tools/list and tools/call result), --check-host

Test hook: search_tickets(query="__jsonrpc_error__") answers with a JSON-RPC error (code -32010,
data {"reason": "backend_down"}) instead of a result, in a 200 response.

It prints one line `MCP_TOOL_SERVER_READY {"url": ..., "port": ..., ...}` on stdout once it accepts
connections (and writes the same JSON to --ready-file, atomically, when given). `--port 0` picks a
free port; the ready line says which.

--record FILE appends one JSON line per HTTP request that reached the server (written when the
response is finished): the request line, every header, the raw body, the JSON-RPC messages in it
(method, id, tool name, arguments) and the response (status, headers, raw body, the JSON-RPC
messages in it, whether JSON or SSE). `/healthz` is answered outside MCP and never recorded.

Import it:
    from mcp_tool_server import ToolServer, spawn_tool_server
    with ToolServer(mode="sse") as srv:                # uvicorn in a background thread
        srv.url; srv.records(); srv.tickets
    proc = spawn_tool_server(mode="json", record=path) # a subprocess, waited on until ready
    proc.url; proc.records(); proc.stop()
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_MARKER = "MCP_TOOL_SERVER_READY"
LOOPBACK = "127.0.0.1"
DEFAULT_PATH = "/mcp"
HEALTH_PATH = "/healthz"
MAX_RECORDED_BODY = 1024 * 1024
MODES = ("json", "sse")

TICKET_STATUSES = ("open", "pending", "resolved", "closed")


def _initial_tickets() -> list[dict[str, Any]]:
    return [
        {"id": "T-1001", "title": "Refund request for double charge", "customer": "alice@example.com",
         "status": "open", "amount_paid": 49.99, "currency": "EUR"},
        {"id": "T-1002", "title": "Cannot log in after password reset", "customer": "bob@example.com",
         "status": "open", "amount_paid": 0.0, "currency": "EUR"},
        {"id": "T-1003", "title": "Invoice shows wrong VAT number", "customer": "carol@example.com",
         "status": "pending", "amount_paid": 120.0, "currency": "USD"},
        {"id": "T-1004", "title": "Refund not received after cancellation", "customer": "dave@example.com",
         "status": "open", "amount_paid": 15.5, "currency": "GBP"},
        {"id": "T-1005", "title": "API key leaked in public repo", "customer": "erin@example.com",
         "status": "open", "amount_paid": 0.0, "currency": "EUR"},
    ]


@dataclass
class DeskState:
    """The in-memory state the tools work on; one per server instance, guarded by a lock because the
    thread-mode server and the test thread may both look at it."""

    tickets: list[dict[str, Any]] = field(default_factory=_initial_tickets)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, int] = field(default_factory=lambda: {"db-password": 3, "stripe-api-key": 1})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def find(self, ticket_id: str) -> dict[str, Any] | None:
        return next((t for t in self.tickets if t["id"] == ticket_id), None)


# ---------------------------------------------------------------------------------------------
# The MCP server
# ---------------------------------------------------------------------------------------------


JSONRPC_ERROR_QUERY = "__jsonrpc_error__"
JSONRPC_ERROR = {"code": -32010, "message": "ticket backend unavailable", "data": {"reason": "backend_down"}}


def build_mcp_server(state: DeskState, *, notify: bool = False):
    """A fresh `MCPServer` (a session manager can run only once, so each start needs its own).

    notify=True adds a middleware that sends one request-scoped `notifications/message` before the
    result of every tools/list and tools/call: on an SSE response that is an extra event ahead of the
    result, and on the 2026-07-28 wire it is what makes an SSE-mode server answer with
    text/event-stream at all (it answers application/json when a handler emits nothing).
    """
    from mcp import MCPError
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import LoggingMessageNotification, LoggingMessageNotificationParams, ToolAnnotations

    async def notify_first(ctx, call_next):
        if ctx.request_id is not None and ctx.method in ("tools/list", "tools/call"):
            note = LoggingMessageNotification(
                params=LoggingMessageNotificationParams(level="info", logger="ticket-desk",
                                                        data=f"handling {ctx.method}")
            )
            await ctx.session.send_notification(note, related_request_id=ctx.request_id)
        return await call_next(ctx)

    server = MCPServer("intentgate-e2e-ticket-desk", version="1.0.0", log_level="WARNING",
                       middleware=[notify_first] if notify else None)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True), meta={"risk": "read"})
    def search_tickets(query: str) -> list[dict[str, Any]]:
        """Search support tickets by words in their id, title or customer (case-insensitive)."""
        if query == JSONRPC_ERROR_QUERY:  # test hook: a JSON-RPC error (not an isError result)
            raise MCPError(**JSONRPC_ERROR)
        words = query.lower().split()
        with state.lock:
            hits = [
                dict(t)
                for t in state.tickets
                if all(w in f'{t["id"]} {t["title"]} {t["customer"]}'.lower() for w in words)
            ]
        return hits

    @server.tool(annotations=ToolAnnotations(destructive_hint=False), meta={"risk": "write"})
    def update_ticket(ticket_id: str, status: str) -> dict[str, Any]:
        """Set a ticket's status (open, pending, resolved or closed)."""
        if status not in TICKET_STATUSES:
            raise ToolError(f"unknown status {status!r}; expected one of {', '.join(TICKET_STATUSES)}")
        with state.lock:
            ticket = state.find(ticket_id)
            if ticket is None:
                raise ToolError(f"no ticket {ticket_id}")
            previous = ticket["status"]
            ticket["status"] = status
            return {"ticket_id": ticket_id, "previous_status": previous, "status": status}

    @server.tool(annotations=ToolAnnotations(destructive_hint=True), meta={"risk": "payment"})
    def refund_payment(ticket_id: str, amount: float, currency: str) -> dict[str, Any]:
        """Refund a payment for a ticket's customer."""
        if amount <= 0:
            raise ToolError("amount must be positive")
        with state.lock:
            ticket = state.find(ticket_id)
            if ticket is None:
                raise ToolError(f"no ticket {ticket_id}")
            refund = {
                "refund_id": f"RF-{len(state.refunds) + 1:04d}",
                "ticket_id": ticket_id,
                "customer": ticket["customer"],
                "amount": amount,
                "currency": currency.upper(),
                "status": "refunded",
                "message": f"Refunded {amount:.2f} {currency.upper()} to {ticket['customer']} for {ticket_id}",
            }
            state.refunds.append(refund)
            return refund

    @server.tool(annotations=ToolAnnotations(destructive_hint=True), meta={"risk": "credential"})
    def rotate_secret(name: str) -> dict[str, Any]:
        """Rotate a named secret; returns the new version number, never the secret itself."""
        with state.lock:
            version = state.secrets.get(name, 0) + 1
            state.secrets[name] = version
        return {"name": name, "version": version, "rotated": True}

    return server


# ---------------------------------------------------------------------------------------------
# Request recording (plain ASGI middleware around the SDK's Starlette app)
# ---------------------------------------------------------------------------------------------


def _jsonrpc_summaries(payload: Any) -> list[dict[str, Any]]:
    """method / id / tool name / arguments (or result / error) of each JSON-RPC message in `payload`."""
    messages = payload if isinstance(payload, list) else [payload]
    out = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        s: dict[str, Any] = {}
        if "method" in m:
            s["kind"] = "request" if "id" in m else "notification"
            s["method"] = m["method"]
            params = m.get("params") or {}
            if m["method"] == "tools/call" and isinstance(params, dict):
                s["name"] = params.get("name")
                s["arguments"] = params.get("arguments")
        elif "error" in m:
            s["kind"] = "error"
            s["error"] = m["error"]
        else:
            s["kind"] = "response"
        if "id" in m:
            s["id"] = m["id"]
        out.append(s)
    return out


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Split a text/event-stream body into events: {"event", "id", "retry", "data"} (data joined)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        ev: dict[str, Any] = {"data": []}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                ev["data"].append(value)
            elif key in ("event", "id", "retry"):
                ev[key] = value
        ev["data"] = "\n".join(ev["data"])
        events.append(ev)
    return events


def _response_messages(content_type: str, body: str) -> list[Any]:
    if content_type.startswith("application/json"):
        try:
            return [json.loads(body)]
        except ValueError:
            return []
    if content_type.startswith("text/event-stream"):
        out = []
        for ev in parse_sse(body):
            if ev["data"]:
                try:
                    out.append(json.loads(ev["data"]))
                except ValueError:
                    pass
        return out
    return []


class Recorder:
    """Keeps every record in memory and, when given a path, appends it as a JSON line there."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._seq = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False)
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
                    f.flush()

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records a server wrote to its --record file (complete lines only)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line being written right now
                pass
    return out


class RecordingMiddleware:
    """Buffers each HTTP request body (then replays it to the app) and tees the response, writing one
    record per request when the response is finished (or the app gives up on it)."""

    def __init__(self, app: Callable, recorder: Recorder, skip_paths: tuple[str, ...] = (HEALTH_PATH,)):
        self.app = app
        self.recorder = recorder
        self.skip_paths = skip_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        seq = self.recorder.next_seq()
        started = time.time()
        chunks: list[bytes] = []
        disconnected = False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay_receive():
            nonlocal replayed
            if not replayed:
                replayed = True
                if disconnected:
                    return {"type": "http.disconnect"}
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        response: dict[str, Any] = {"status": None, "headers": [], "body": bytearray(), "complete": False}
        written = False

        def write() -> None:
            nonlocal written
            if written:
                return
            written = True
            text = body.decode("utf-8", "replace")
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            headers = dict(response["headers"])
            ctype = headers.get("content-type", "")
            resp_text = bytes(response["body"][:MAX_RECORDED_BODY]).decode("utf-8", "replace")
            resp_messages = _response_messages(ctype, resp_text)
            record = {
                "seq": seq,
                "time": started,
                "http_method": scope["method"],
                "path": scope["path"],
                "query": scope.get("query_string", b"").decode("latin-1"),
                "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in scope["headers"]],
                "body": text,
                "jsonrpc": _jsonrpc_summaries(parsed) if parsed is not None else [],
                "response": {
                    "status": response["status"],
                    "headers": [list(h) for h in response["headers"]],
                    "content_type": ctype,
                    "complete": response["complete"],
                    "body": resp_text,
                    "jsonrpc": [s for m in resp_messages for s in _jsonrpc_summaries(m)],
                },
            }
            self.recorder.add(record)

        async def tee_send(message):
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = [
                    (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message.get("headers", [])
                ]
            elif message["type"] == "http.response.body":
                if len(response["body"]) < MAX_RECORDED_BODY:
                    response["body"].extend(message.get("body", b""))
                if not message.get("more_body", False):
                    response["complete"] = True
            await send(message)
            if response["complete"]:
                write()

        try:
            await self.app(scope, replay_receive, tee_send)
        finally:
            write()


# ---------------------------------------------------------------------------------------------
# App assembly and serving
# ---------------------------------------------------------------------------------------------


def build_app(
    state: DeskState,
    recorder: Recorder,
    *,
    mode: str = "json",
    stateless: bool = True,
    path: str = DEFAULT_PATH,
    check_host: bool = False,
    notify: bool = False,
):
    """The ASGI app: the SDK's Streamable HTTP Starlette app, plus /healthz, wrapped in the recorder.

    `mode="json"` answers each POST with one `application/json` body; `mode="sse"` answers with a
    `text/event-stream` body. `check_host=False` turns the SDK's DNS-rebinding Host/Origin check off
    (it would otherwise answer 421 to a Host other than 127.0.0.1:*/localhost:*, e.g. one an Envoy
    route rewrote); the server binds 127.0.0.1 only either way.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    server = build_mcp_server(state, notify=notify)

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def healthz(request: Request):
        return JSONResponse({"ok": True, "mode": mode, "stateless": stateless})

    security = None if check_host else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path=path,
        json_response=(mode == "json"),
        stateless_http=stateless,
        transport_security=security,
        host=LOOPBACK,
    )
    return RecordingMiddleware(app, recorder)


def _uvicorn_server(app, port: int, log_level: str):
    import uvicorn

    config = uvicorn.Config(
        app,
        host=LOOPBACK,
        port=port,
        log_level=log_level,
        access_log=log_level in ("debug", "info"),
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def _bound_port(server) -> int:
    for s in server.servers:
        for sock in s.sockets:
            return sock.getsockname()[1]
    raise RuntimeError("uvicorn has no listening socket")


class ToolServer:
    """The server in a background thread of this process (its own event loop).

        with ToolServer(mode="json") as srv:
            ... srv.url ... srv.records() ... srv.state.refunds ...
    """

    def __init__(
        self,
        *,
        port: int = 0,
        mode: str = "json",
        stateless: bool = True,
        path: str = DEFAULT_PATH,
        record: str | os.PathLike[str] | None = None,
        check_host: bool = False,
        notify: bool = False,
        log_level: str = "warning",
    ):
        self.state = DeskState()
        self.recorder = Recorder(record)
        self.mode = mode
        self.stateless = stateless
        self.path = path
        self._app = build_app(self.state, self.recorder, mode=mode, stateless=stateless, path=path,
                              check_host=check_host, notify=notify)
        self._server = _uvicorn_server(self._app, port, log_level)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        return self.recorder.records()

    def start(self, timeout_s: float = 15) -> "ToolServer":
        def run() -> None:
            try:
                asyncio.run(self._server.serve())
            except BaseException as e:  # surfaced by start()
                self._error = e

        self._thread = threading.Thread(target=run, name="mcp-tool-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"MCP tool server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("MCP tool server did not start in time")
            time.sleep(0.02)
        self.port = _bound_port(self._server)
        return self

    def stop(self, timeout_s: float = 10) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)

    def __enter__(self) -> "ToolServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ToolServerProcess:
    """The server as a subprocess (`spawn_tool_server`). Output goes to `log_path`."""

    def __init__(self, proc: subprocess.Popen, info: dict[str, Any], record: Path | None, log_path: Path):
        self.proc = proc
        self.info = info
        self.url: str = info["url"]
        self.port: int = info["port"]
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.record_path = record
        self.log_path = log_path

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record_path) if self.record_path else []

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)

    def __enter__(self) -> "ToolServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn_tool_server(
    *,
    port: int = 0,
    mode: str = "json",
    stateless: bool = True,
    path: str = DEFAULT_PATH,
    record: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    check_host: bool = False,
    notify: bool = False,
    python: str = sys.executable,
    timeout_s: float = 20,
) -> ToolServerProcess:
    """Start `python mcp_tool_server.py ...` and wait until it accepts connections."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mcp-tool-server-"))
    wd.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    ready = wd / f"mcp-tool-server-{tag}.ready.json"
    log_path = wd / f"mcp-tool-server-{tag}.log"
    cmd = [python, str(Path(__file__).resolve()), "--port", str(port), "--path", path, "--ready-file", str(ready),
           "--sse" if mode == "sse" else "--json-response", "--stateless" if stateless else "--stateful"]
    if record:
        cmd += ["--record", str(record)]
    if check_host:
        cmd.append("--check-host")
    if notify:
        cmd.append("--notify")
    log = log_path.open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"MCP tool server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"MCP tool server not ready in {timeout_s}s:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return ToolServerProcess(proc, info, Path(record) if record else None, log_path)


async def _serve_cli(args: argparse.Namespace) -> None:
    state = DeskState()
    recorder = Recorder(args.record)
    app = build_app(state, recorder, mode=args.mode, stateless=args.stateless, path=args.path,
                    check_host=args.check_host, notify=args.notify)
    server = _uvicorn_server(app, args.port, args.log_level)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises the startup error
            raise SystemExit("MCP tool server stopped before it started")
        await asyncio.sleep(0.02)
    port = _bound_port(server)
    info = {"url": f"http://{LOOPBACK}:{port}{args.path}", "port": port, "host": LOOPBACK, "path": args.path,
            "mode": args.mode, "stateless": args.stateless, "notify": args.notify, "record": args.record,
            "pid": os.getpid()}
    if args.ready_file:
        tmp = Path(args.ready_file).with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, args.ready_file)
    print(f"{READY_MARKER} {json.dumps(info)}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=18080, help="TCP port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--path", default=DEFAULT_PATH, help="the MCP endpoint path (default /mcp)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json-response", dest="mode", action="store_const", const="json",
                   help="answer POSTs with application/json (default)")
    g.add_argument("--sse", dest="mode", action="store_const", const="sse",
                   help="answer POSTs with text/event-stream")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--stateless", dest="stateless", action="store_true", help="no mcp-session-id (default)")
    s.add_argument("--stateful", dest="stateless", action="store_false", help="issue and require mcp-session-id")
    p.add_argument("--record", help="append one JSON line per received HTTP request to this file")
    p.add_argument("--ready-file", help="write the ready JSON here once listening")
    p.add_argument("--check-host", action="store_true",
                   help="keep the SDK's DNS-rebinding Host/Origin check (off by default)")
    p.add_argument("--notify", action="store_true",
                   help="send a notifications/message ahead of each tools/list and tools/call result")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(mode="json", stateless=True)
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve_cli(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
