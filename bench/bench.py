"""scripts/bench: intentgate side by side with Envoy's own filters, in one run.

For every configuration a fresh Envoy (`--concurrency 1`, admin and listener on 127.0.0.1, a
`direct_response` route, so no upstream) is started, checked (the request answers 200, a wrong token
401/403), warmed up with wrk, then measured for a fixed duration with wrk on loopback. Configurations are
interleaved: every round runs each configuration once, in an order rotated per round. Per measurement:

* RPS, p50, p99 from wrk (its `done()` hook prints them as JSON, see wrk.lua);
* Envoy CPU µs per request: utime+stime of the Envoy process (/proc/<pid>/stat, all threads) over the
  measured window, divided by the requests Envoy completed in that window (its
  `http.bench.downstream_rq_completed` counter, read just outside the CPU window);
* the CPU wrk used and the CPU the rest of the machine used meanwhile (/proc/stat), to show the noise.

The medians over the rounds go to target/bench/summary.json and a Markdown table to target/bench/table.md;
every single measurement goes to target/bench/raw.json. Only 127.0.0.1 is contacted. Every process started
here dies with this one (PR_SET_PDEATHSIG) and is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gzip
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
POLICY_PATH = BENCH_DIR / "policy.json"
WRK_SCRIPT = BENCH_DIR / "wrk.lua"
TEST_KEYS_PATH = REPO / "tests" / "fixtures" / "test-keys.json"

ISSUER = "https://issuer.test"
AUDIENCE = "https://tools.test/api"
SUBJECT = "spiffe://test/agent/bench"
CLIENT_ID = "support-bot"
SCOPE = "tickets:read"
# Tokens live this long (the bench policy allows exp - iat up to 86400) and are minted again when less
# than TOKEN_MIN_REMAINING_S of it is left.
TOKEN_LIFETIME_S = 86400 - 120
TOKEN_MIN_REMAINING_S = 3 * 3600
KID_FOR_ALG = {"ES256": "es256-1", "RS256": "rsa-1", "PS256": "rsa-1", "EdDSA": "ed25519-1"}
PUBLIC_KIDS = ["es256-1", "es384-1", "rsa-1", "ed25519-1"]
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}

HTTP_METHOD, HTTP_PATH = "GET", "/api/tickets"  # bench/policy.json: tool search_tickets, scope tickets:read
MCP_PATH = "/mcp"
MCP_HEADERS = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
    ("MCP-Protocol-Version", "2025-06-18"),
]
STAT_PREFIX = "bench"

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --- processes -------------------------------------------------------------------------------------

_LIVE: list[subprocess.Popen] = []
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # runs in the child between fork and exec: if this Python process dies, even by SIGKILL, the
    # kernel kills the child too
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
    _LIVE.append(p)
    return p


def stop(p: subprocess.Popen, grace_s: float = 5) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p in _LIVE:
        _LIVE.remove(p)


def stop_all() -> None:
    for p in list(_LIVE):
        stop(p)


def run_bounded(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    """A child that must finish within `timeout_s` (killed otherwise)."""
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise BenchError(f"timed out after {timeout_s:.0f} s: {shlex.join(cmd)}")
    finally:
        if p in _LIVE:
            _LIVE.remove(p)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


# --- HTTP on loopback ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port: int, method: str, path: str, headers=(), body: bytes | None = None, timeout_s=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# --- tokens ----------------------------------------------------------------------------------------

TEST_KEYS = {k["kid"]: k for k in json.loads(TEST_KEYS_PATH.read_text())["keys"]}


def public_jwks() -> dict:
    return {"keys": [{m: v for m, v in TEST_KEYS[k].items() if m not in PRIVATE_JWK_MEMBERS} for k in PUBLIC_KIDS]}


def mint(alg: str, now: int, jti: str, scope: str = SCOPE) -> str:
    kid = KID_FOR_ALG[alg]
    payload = {
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": AUDIENCE,
        "client_id": CLIENT_ID,
        "scope": scope,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_S,
        "jti": jti,
    }
    return jwt.encode(payload, jwt.PyJWK(TEST_KEYS[kid]).key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})


def _mint_batch(args: tuple[str, int, int, int]) -> list[str]:
    alg, now, start, count = args
    key = jwt.PyJWK(TEST_KEYS[KID_FOR_ALG[alg]]).key
    kid = KID_FOR_ALG[alg]
    out = []
    for i in range(start, start + count):
        payload = {
            "iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "client_id": CLIENT_ID, "scope": SCOPE,
            "iat": now, "exp": now + TOKEN_LIFETIME_S, "jti": f"bench-{alg.lower()}-{now}-{i:07d}",
        }
        out.append(jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"}))
    return out


def token_list(token_dir: Path, alg: str, count: int) -> Path:
    """A file of `count` distinct valid tokens (distinct jti), reused from an earlier run while they
    have TOKEN_MIN_REMAINING_S of life left."""
    path = token_dir / f"{alg.lower()}.txt"
    meta_path = token_dir / f"{alg.lower()}.json"
    now = int(time.time())
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["count"] >= count and meta["exp"] - now >= TOKEN_MIN_REMAINING_S and meta["iat"] <= now:
            return path
    t0 = time.monotonic()
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, os.cpu_count() or 1)
    chunk = (count + workers - 1) // workers
    jobs = [(alg, now, s, min(chunk, count - s)) for s in range(0, count, chunk)]
    with ProcessPoolExecutor(workers) as pool:
        tokens = [t for batch in pool.map(_mint_batch, jobs) for t in batch]
    assert len(set(tokens)) == count
    token_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    meta_path.write_text(json.dumps({"alg": alg, "count": count, "iat": now, "exp": now + TOKEN_LIFETIME_S}))
    log(f"  minted {count} {alg} tokens in {time.monotonic() - t0:.1f} s -> {path.relative_to(REPO)}")
    return path


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    mid = len(sig) // 2
    flipped = "A" if sig[mid] != "A" else "B"
    return f"{head}.{payload}.{sig[:mid]}{flipped}{sig[mid + 1:]}"


def mcp_body(tool: str = "search_tickets", size: int = 1024) -> bytes:
    """A JSON-RPC tools/call of exactly `size` bytes (padded in a string argument)."""
    msg = {
        "jsonrpc": "2.0",
        "id": 42,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {
                "query": "printer on the third floor is jammed again",
                "status": ["open", "pending"],
                "limit": 25,
                "amount": 10,
                "sort": {"field": "updated_at", "order": "desc"},
                "fields": ["id", "title", "status", "assignee", "updated_at", "priority"],
                "context": "",
            },
            "_meta": {"progressToken": "bench-progress-0001"},
        },
    }
    base = len(json.dumps(msg, separators=(",", ":")).encode())
    msg["params"]["arguments"]["context"] = ("customer reports intermittent paper feed failure; " * 40)[: size - base]
    body = json.dumps(msg, separators=(",", ":")).encode()
    assert len(body) == size, len(body)
    return body


# --- Envoy configurations --------------------------------------------------------------------------


def wasm_filter(wasm_path: Path, token_cache_entries: int) -> dict:
    policy = json.loads(POLICY_PATH.read_text())
    policy["token_cache"] = {"max_entries": token_cache_entries}
    return wasm_plugin("intentgate", wasm_path, json.dumps(policy))


def wasm_plugin(name: str, wasm_path: Path, configuration: str) -> dict:
    """Envoy's Wasm HTTP filter, set up the same way for intentgate and for the noop baselines."""
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "fail_open": False,
                # needed for JSON-RPC endpoints (the headers are paused while the body is read)
                "allow_on_headers_stop_iteration": True,
                "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm_path)}}},
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
            },
        },
    }


NOOP_CRATE = "noop-filter"
NOOP_MODULE = REPO / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
WASM_OPT_FEATURES = [
    "--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals", "--enable-nontrapping-float-to-int",
    "--enable-reference-types", "--enable-multivalue",
]


def build_noop(dest: Path) -> None:
    """bench/noop-filter for wasm32-wasip1 (release profile), through wasm-opt -O3 like scripts/build."""
    log(f"building the noop baseline filter ({NOOP_CRATE})")
    res = run_bounded(["cargo", "build", "--release", "--locked", "--target", "wasm32-wasip1", "-p", NOOP_CRATE],
                      timeout_s=600)
    if res.returncode != 0 or not NOOP_MODULE.is_file():
        raise BenchError(f"building {NOOP_CRATE} failed:\n{res.stderr[-3000:]}")
    if shutil.which("wasm-opt"):
        res = run_bounded(["wasm-opt", "-O3", *WASM_OPT_FEATURES, str(NOOP_MODULE), "-o", str(dest)], timeout_s=300)
        if res.returncode != 0:
            raise BenchError(f"wasm-opt failed on {NOOP_MODULE}:\n{res.stderr[-3000:]}")
    else:
        shutil.copyfile(NOOP_MODULE, dest)


def jwt_authn_filter(cache: bool) -> dict:
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(public_jwks())},
        # like intentgate: the token does not go upstream
        "forward": False,
        # the payload as dynamic metadata under envoy.filters.http.jwt_authn / jwt_payload, for rbac
        "payload_in_metadata": "jwt_payload",
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1024}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


def rbac_filter() -> dict:
    """The tool rule of search_tickets (GET /api/tickets) and its scope, `tickets:read`, as one of the
    space-separated values of the token's `scope` claim (the whole-word regex refuses `tickets:readonly`;
    RE2 full match)."""
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "search_tickets": {
                        "permissions": [
                            {
                                "and_rules": {
                                    "rules": [
                                        {"header": {"name": ":method", "string_match": {"exact": HTTP_METHOD}}},
                                        {"url_path": {"path": {"exact": HTTP_PATH}}},
                                    ]
                                }
                            }
                        ],
                        "principals": [
                            {
                                "metadata": {
                                    "filter": "envoy.filters.http.jwt_authn",
                                    "path": [{"key": "jwt_payload"}, {"key": "scope"}],
                                    "value": {
                                        "string_match": {
                                            "safe_regex": {"regex": "(.* )?" + re.escape(SCOPE) + "( .*)?"}
                                        }
                                    },
                                }
                            }
                        ],
                    }
                },
            },
        },
    }


def buffer_filter() -> dict:
    """Reads the whole request body before the route answers. Without it a direct_response answers a
    POST before its body was read, and Envoy then closes the connection (one connection per request)."""
    return {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 65536,
        },
    }


def bootstrap(admin_port: int, listen_port: int, http_filters: list[dict]) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": STAT_PREFIX,
                                        # as envoy/e2e.yaml, for every configuration
                                        "normalize_path": True,
                                        "merge_slashes": True,
                                        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                                        "route_config": {
                                            "name": "bench",
                                            "virtual_hosts": [
                                                {
                                                    "name": "bench",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": "ok\n"},
                                                            },
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": http_filters
                                        + [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters."
                                                    "http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


@dataclass
class Config:
    name: str
    description: str
    filters: str  # "none", "buffer", "jwt", "jwt+rbac", "intentgate", "wasm_noop", "wasm_noop_headers"
    request: str  # "http" or "mcp"
    tokens: str  # "one" (the same token every request) or "cycle" (a fresh token every request)
    alg: str = "ES256"
    jwt_cache: bool = False
    token_cache_entries: int = 1024
    log_level: str = "info"  # info: intentgate's audit line (one per request) is written, as in production

    def http_filters(self, wasm_path: Path, noop_path: Path | None) -> list[dict]:
        if self.filters == "none":
            return []
        if self.filters == "buffer":
            return [buffer_filter()]
        if self.filters == "jwt":
            return [jwt_authn_filter(self.jwt_cache)]
        if self.filters == "jwt+rbac":
            return [jwt_authn_filter(self.jwt_cache), rbac_filter()]
        if self.filters == "intentgate":
            return [wasm_filter(wasm_path, self.token_cache_entries)]
        if self.filters == "wasm_noop":
            return [wasm_plugin("noop", noop_path, "")]
        if self.filters == "wasm_noop_headers":
            return [wasm_plugin("noop", noop_path, "headers")]
        raise ValueError(self.filters)


CONFIGS = [
    Config("floor", "Envoy, no filter (GET /api/tickets, token header sent)", "none", "http", "one"),
    Config("wasm_noop", "Envoy's Wasm filter (same V8 runtime and filter config) with bench/noop-filter: "
           "every callback returns Continue, no host call — the proxy-wasm plumbing per request", "wasm_noop",
           "http", "one"),
    Config("wasm_noop_headers", "as wasm_noop, but the filter reads all request headers (one host call) and "
           "sets one header (one host call)", "wasm_noop_headers", "http", "one"),
    Config("floor_mcp", "Envoy with the buffer filter only (reads the body, as intentgate does), the MCP POST "
           "(1 KiB body)", "buffer", "mcp", "one"),
    Config("native_jwt", "jwt_authn (no cache) + rbac, ES256, fresh token per request", "jwt+rbac", "http", "cycle"),
    Config("native_jwt_rs256", "jwt_authn (no cache) + rbac, RS256, fresh token per request", "jwt+rbac", "http",
           "cycle", alg="RS256"),
    Config("native_jwt_cached", "jwt_authn with jwt_cache_config, ES256, one token", "jwt", "http", "one",
           jwt_cache=True),
    Config("native_chain_cached", "jwt_authn with jwt_cache_config + rbac, ES256, one token", "jwt+rbac", "http",
           "one", jwt_cache=True),
    Config("intentgate_es256_cold", "intentgate, ES256, fresh token per request, token cache off", "intentgate",
           "http", "cycle", token_cache_entries=0),
    Config("intentgate_rs256_cold", "intentgate, RS256, fresh token per request, token cache off", "intentgate",
           "http", "cycle", alg="RS256", token_cache_entries=0),
    Config("intentgate_ps256_cold", "intentgate, PS256, fresh token per request, token cache off", "intentgate",
           "http", "cycle", alg="PS256", token_cache_entries=0),
    Config("intentgate_eddsa_cold", "intentgate, EdDSA, fresh token per request, token cache off", "intentgate",
           "http", "cycle", alg="EdDSA", token_cache_entries=0),
    Config("intentgate_es256_cached", "intentgate, ES256, one token (cache hit)", "intentgate", "http", "one"),
    Config("intentgate_es256_cached_nolog", "as intentgate_es256_cached, Envoy at --log-level warning (no audit "
           "line): what the audit line costs", "intentgate", "http", "one", log_level="warning"),
    Config("intentgate_mcp_cached", "intentgate, MCP tools/call POST 1 KiB, ES256, one token", "intentgate", "mcp",
           "one"),
]
REQUIRED = [
    "floor", "native_jwt", "native_jwt_cached", "native_chain_cached", "intentgate_es256_cold",
    "intentgate_rs256_cold", "intentgate_eddsa_cold", "intentgate_es256_cached", "intentgate_mcp_cached",
]

# (name, numerator, denominator, goal: numerator's CPU/request <= goal x denominator's); None: for information
RATIOS = [
    ("intentgate_es256_cold / native_jwt", "intentgate_es256_cold", "native_jwt", 1.25),
    ("intentgate_rs256_cold / native_jwt", "intentgate_rs256_cold", "native_jwt", 1.25),
    ("intentgate_rs256_cold / native_jwt_rs256", "intentgate_rs256_cold", "native_jwt_rs256", None),
    ("intentgate_es256_cached / native_chain_cached", "intentgate_es256_cached", "native_chain_cached", 1.2),
    ("intentgate_es256_cached / floor", "intentgate_es256_cached", "floor", 1.5),
    ("intentgate_mcp_cached / floor", "intentgate_mcp_cached", "floor", 2.0),
    ("intentgate_mcp_cached / floor_mcp", "intentgate_mcp_cached", "floor_mcp", None),
    ("intentgate_es256_cached_nolog / floor", "intentgate_es256_cached_nolog", "floor", None),
    ("wasm_noop / floor", "wasm_noop", "floor", None),
    ("wasm_noop_headers / floor", "wasm_noop_headers", "floor", None),
    ("intentgate_es256_cached / wasm_noop", "intentgate_es256_cached", "wasm_noop", None),
    ("native_jwt / floor", "native_jwt", "floor", None),
    ("native_chain_cached / floor", "native_chain_cached", "floor", None),
]


# --- Envoy process ---------------------------------------------------------------------------------


class Envoy:
    def __init__(self, envoy_bin: str, cfg: Config, wasm_path: Path, noop_path: Path | None, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin_port, self.port = free_port(), free_port()
        self.config_path = workdir / "envoy.yaml"  # JSON is YAML
        self.config_path.write_text(
            json.dumps(bootstrap(self.admin_port, self.port, cfg.http_filters(wasm_path, noop_path)), indent=1)
        )
        self.log_path = workdir / "envoy.log"
        self.cmd = [
            envoy_bin, "-c", str(self.config_path), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", cfg.log_level, "--log-path", str(self.log_path),
        ]
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30) -> "Envoy":
        with open(self.workdir / "envoy.stdout", "wb") as out:
            self.process = spawn(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.cfg.name}: Envoy exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if http_request(self.admin_port, "GET", "/ready", timeout_s=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.cfg.name}: Envoy not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log_tail(self, n: int = 30) -> str:
        lines = []
        for p in (self.workdir / "envoy.stdout", self.log_path):
            if p.is_file():
                lines += p.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines[-n:])

    def cpu_ticks(self) -> int:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)

    def counters(self) -> dict[str, int]:
        status, body = http_request(self.admin_port, "GET", "/stats?usedonly&filter=" + "|".join([
            rf"^http\.{STAT_PREFIX}\.downstream_(rq_(completed|[1-5]xx)|cx_total|cx_destroy_local|cx_destroy_remote)$",
            rf"^http\.{STAT_PREFIX}\.(jwt_authn|rbac)\.", r"^wasmcustom\.intentgate\.(token_cache|decision)\.",
        ]))
        if status != 200:
            raise BenchError(f"admin /stats answered {status}")
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out


# --- requests and checks ---------------------------------------------------------------------------


@dataclass
class Traffic:
    token: str  # the single token of "one" configurations, and the first of a list
    tokens_file: Path | None  # a fresh token per request
    body_file: Path | None


def request_headers(cfg: Config, token: str | None) -> list[tuple[str, str]]:
    headers = list(MCP_HEADERS) if cfg.request == "mcp" else []
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


def send(envoy: Envoy, cfg: Config, token: str | None, method: str | None = None, path: str | None = None,
         body: bytes | None = None) -> int:
    if cfg.request == "mcp":
        method, path = method or "POST", path or MCP_PATH
        body = body if body is not None else mcp_body()
    else:
        method, path = method or HTTP_METHOD, path or HTTP_PATH
    status, _ = http_request(envoy.port, method, path, request_headers(cfg, token), body)
    return status


def verify(envoy: Envoy, cfg: Config, traffic: Traffic, extra_tokens: dict[str, str], cycle_tokens: list[str]):
    """The configuration must really do its work: the measured request answers 200, and for the auth
    configurations a wrong token is refused. Raises BenchError otherwise."""
    checks: list[tuple[str, int, int]] = []  # (what, expected, got)
    before = envoy.counters()

    def check(what: str, expected: int, got: int):
        checks.append((what, expected, got))

    check("the measured request", 200, send(envoy, cfg, traffic.token))
    for i in (len(cycle_tokens) // 2, len(cycle_tokens) - 1) if cycle_tokens else ():
        check(f"token #{i} of the list", 200, send(envoy, cfg, cycle_tokens[i]))
    if cfg.filters not in ("none", "buffer", "wasm_noop", "wasm_noop_headers"):
        check("no token", 401, send(envoy, cfg, None))
        check("tampered signature", 401, send(envoy, cfg, tamper(traffic.token)))
        check("signed by an unknown key under kid es256-1", 401, send(envoy, cfg, extra_tokens["rotated"]))
    if cfg.filters in ("jwt+rbac", "intentgate"):
        check("token without the scope (tickets:write)", 403, send(envoy, cfg, extra_tokens["no_scope"]))
        check("scope tickets:readonly (not tickets:read)", 403, send(envoy, cfg, extra_tokens["readonly"]))
        if cfg.request == "http":
            check("POST /api/tickets (method not in the rule)", 403, send(envoy, cfg, traffic.token, method="POST",
                                                                        body=b""))
            check("GET /api/admin (no tool rule)", 403, send(envoy, cfg, traffic.token, path="/api/admin"))
        else:
            check("tools/call refund_payment (not in the task)", 403,
                  send(envoy, cfg, traffic.token, body=mcp_body("refund_payment")))
    bad = [c for c in checks if c[1] != c[2]]
    # and the refusals came from the filter that should give them
    after = envoy.counters()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    n401 = sum(1 for _, exp, _ in checks if exp == 401)
    n403 = sum(1 for _, exp, _ in checks if exp == 403)
    expect_counters = {
        "jwt": {f"http.{STAT_PREFIX}.jwt_authn.denied": n401},
        "jwt+rbac": {f"http.{STAT_PREFIX}.jwt_authn.denied": n401, f"http.{STAT_PREFIX}.rbac.denied": n403},
        "intentgate": {"wasmcustom.intentgate.decision.deny": n401 + n403},
    }.get(cfg.filters, {})
    for counter, n in expect_counters.items():
        checks.append((f"counter {counter}", n, delta.get(counter, 0)))
    bad = [c for c in checks if c[1] != c[2]]
    if bad:
        raise BenchError(
            f"{cfg.name}: the configuration does not behave as it must, refusing to measure it:\n"
            + "\n".join(f"  {what}: expected {exp}, got {got}" for what, exp, got in bad)
            + f"\nEnvoy log tail:\n{envoy.log_tail()}"
        )
    return [f"{what}: {got}" for what, _, got in checks]


# --- wrk -------------------------------------------------------------------------------------------


def wrk_command(envoy: Envoy, cfg: Config, traffic: Traffic, duration_s: float, connections: int,
                offset: int) -> list[str]:
    method = "POST" if cfg.request == "mcp" else HTTP_METHOD
    path = MCP_PATH if cfg.request == "mcp" else HTTP_PATH
    headers = list(MCP_HEADERS) if cfg.request == "mcp" else []
    if cfg.tokens == "one":
        headers.append(("Authorization", f"Bearer {traffic.token}"))
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration_s))}s", "--latency", "--timeout", "5s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{envoy.port}{path}", "--",
        method,
        str(traffic.body_file) if cfg.request == "mcp" else "-",
        str(traffic.tokens_file) if cfg.tokens == "cycle" else "-",
        str(offset),
    ] + [f"{n}: {v}" for n, v in headers]


def run_wrk(cmd: list[str], duration_s: float) -> tuple[dict, str]:
    res = run_bounded(cmd, timeout_s=duration_s + 60)
    m = re.search(r"^BENCH_RESULT (\{.*\})$", res.stdout, re.M)
    if res.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({res.returncode}): {shlex.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return json.loads(m.group(1)), res.stdout


def proc_stat_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def measure(envoy: Envoy, cfg: Config, traffic: Traffic, duration_s: float, warmup_s: float,
            connections: int, n_tokens: int) -> dict:
    # warm-up (its own part of the token list), then the measured window
    warm, _ = run_wrk(wrk_command(envoy, cfg, traffic, warmup_s, connections, offset=n_tokens // 2), warmup_s)
    if warm["errors"]["status"]:
        raise BenchError(f"{cfg.name}: {warm['errors']['status']} non-2xx answers during the warm-up\n"
                         f"{envoy.log_tail()}")
    cmd = wrk_command(envoy, cfg, traffic, duration_s, connections, offset=0)
    c0 = envoy.counters()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = proc_stat_busy()
    t0 = envoy.cpu_ticks()
    w0 = time.monotonic()
    wrk, wrk_text = run_wrk(cmd, duration_s)
    w1 = time.monotonic()
    t1 = envoy.cpu_ticks()
    busy1, total1 = proc_stat_busy()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1 = envoy.counters()

    delta = {k: c1.get(k, 0) - c0.get(k, 0) for k in set(c0) | set(c1)}
    completed = delta.get(f"http.{STAT_PREFIX}.downstream_rq_completed", 0)
    ok = delta.get(f"http.{STAT_PREFIX}.downstream_rq_2xx", 0)
    errors = wrk["errors"]
    if errors["status"] or completed - ok > 0:
        raise BenchError(f"{cfg.name}: non-2xx answers while measuring (wrk: {errors['status']}, Envoy: "
                         f"{completed - ok} of {completed})\n{envoy.log_tail()}")
    if completed <= 0 or wrk["requests"] <= 0:
        raise BenchError(f"{cfg.name}: no requests completed\n{wrk_text}")
    if errors["connect"] or errors["timeout"]:
        raise BenchError(f"{cfg.name}: wrk connection errors {errors}\n{wrk_text}")

    envoy_cpu_s = (t1 - t0) / CLK_TCK
    wrk_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    wall_s = w1 - w0
    ncpu = os.cpu_count() or 1
    machine_busy_s = (busy1 - busy0) / CLK_TCK
    result = {
        "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
        "p50_us": wrk["latency_us"]["p50"],
        "p99_us": wrk["latency_us"]["p99"],
        "cpu_us_per_req": envoy_cpu_s * 1e6 / completed,
        "requests_wrk": wrk["requests"],
        "requests_envoy": completed,
        "envoy_cpu_s": envoy_cpu_s,
        "envoy_cpu_util": envoy_cpu_s / wall_s,
        "wrk_cpu_util": wrk_cpu_s / wall_s,
        # everything else on the machine (other users, kernel softirq work not charged to either)
        "other_cpu_cores": max(0.0, machine_busy_s - envoy_cpu_s - wrk_cpu_s) / wall_s,
        "machine_cpu_cores": (total1 - total0) / CLK_TCK / wall_s if ncpu else 0,
        "wrk_read_errors": errors["read"] + errors["write"],
        "latency_us": wrk["latency_us"],
        "counters": {k: v for k, v in sorted(delta.items()) if v},
    }
    # the token cache must have done what the configuration says
    hits = delta.get("wasmcustom.intentgate.token_cache.hit", 0)
    if cfg.filters == "intentgate":
        if cfg.tokens == "cycle" and hits:
            raise BenchError(f"{cfg.name}: {hits} token cache hits in a cold configuration")
        if cfg.tokens == "one" and hits < 0.99 * completed:
            raise BenchError(f"{cfg.name}: only {hits} token cache hits for {completed} requests")
        result["token_cache_hit_ratio"] = hits / completed
    return result


# --- report ----------------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else None


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for name, runs in results.items():
        if not runs:
            continue
        cpu = [r["cpu_us_per_req"] for r in runs]
        out[name] = {
            "rps": round(median([r["rps"] for r in runs]), 1),
            "p50_us": median([r["p50_us"] for r in runs]),
            "p99_us": median([r["p99_us"] for r in runs]),
            "cpu_us_per_req": round(median(cpu), 2),
            "cpu_us_per_req_rounds": [round(x, 2) for x in cpu],
            "envoy_cpu_util": round(median([r["envoy_cpu_util"] for r in runs]), 3),
            "wrk_cpu_util": round(median([r["wrk_cpu_util"] for r in runs]), 3),
            "other_cpu_cores": round(median([r["other_cpu_cores"] for r in runs]), 3),
            "rounds": len(runs),
        }
    return out


def ratios(summary: dict[str, dict], results: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for label, num, den, goal in RATIOS:
        if num not in summary or den not in summary:
            continue
        value = summary[num]["cpu_us_per_req"] / summary[den]["cpu_us_per_req"]
        per_round = [a["cpu_us_per_req"] / b["cpu_us_per_req"] for a, b in zip(results[num], results[den])]
        entry = {
            "metric": "cpu_us_per_req",
            "numerator": num,
            "denominator": den,
            "value": round(value, 3),
            "per_round": [round(x, 3) for x in per_round],
            "rps_ratio": round(summary[num]["rps"] / summary[den]["rps"], 3),
        }
        if goal is not None:
            entry["goal"] = goal
            entry["met"] = value <= goal
        out[label] = entry
    return out


def fmt_us(x) -> str:
    return "–" if x is None else (f"{x / 1000:.2f} ms" if x >= 10000 else f"{x:.0f} µs")


def table(summary: dict, ratio: dict, configs: list[Config], meta: dict) -> str:
    floor = summary.get("floor", {}).get("cpu_us_per_req")
    lines = [
        f"`{meta['command']}` — {meta['date']} — {meta['rounds']} rounds × {meta['duration_s']} s "
        f"(+{meta['warmup_s']} s warm-up), wrk -t1 -c{meta['connections']}, one Envoy worker, "
        f"{meta['machine']['nproc']} × {meta['machine']['cpu_model']}",
        "",
        "| configuration | RPS | p50 | p99 | Envoy CPU µs/req | × floor | over floor | CPU µs/req per round "
        "| Envoy / wrk / other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for cfg in configs:
        s = summary.get(cfg.name)
        if not s:
            continue
        x_floor = f"{s['cpu_us_per_req'] / floor:.2f}" if floor else "–"
        over = f"{s['cpu_us_per_req'] - floor:+.1f} µs" if floor else "–"
        lines.append(
            f"| `{cfg.name}` | {s['rps']:,.0f} | {fmt_us(s['p50_us'])} | {fmt_us(s['p99_us'])} | "
            f"**{s['cpu_us_per_req']:.1f}** | {x_floor} | {over} | "
            f"{' / '.join(f'{x:.0f}' for x in s['cpu_us_per_req_rounds'])} | "
            f"{s['envoy_cpu_util']:.0%} / {s['wrk_cpu_util']:.0%} / {s['other_cpu_cores']:.2f} cores |"
        )
    lines += ["", "| ratio (Envoy CPU per request, medians) | value | per round | goal |", "|---|---:|---|---|"]
    for label, r in ratio.items():
        goal = (f"≤ {r['goal']} {'met' if r['met'] else '**not met**'}") if "goal" in r else "(information)"
        lines.append(f"| {label} | {r['value']:.2f} | {' / '.join(f'{x:.2f}' for x in r['per_round'])} | {goal} |")
    lines += [
        "",
        f"Module: `dist/intentgate.wasm` {meta['wasm_bytes']:,} bytes "
        f"({'under' if meta['wasm_bytes'] < 1 << 20 else '**over**'} 1 MiB), {meta['wasm_gzip_bytes']:,} gzip -9. "
        f"Envoy {meta['versions']['envoy']}, {meta['versions']['rustc']}, {meta['versions']['wrk']}.",
        "",
        "Configurations:",
    ]
    for cfg in configs:
        if cfg.name in summary:
            lines.append(f"- `{cfg.name}`: {cfg.description}")
    return "\n".join(lines) + "\n"


# --- machine ---------------------------------------------------------------------------------------


def machine_info() -> dict:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def versions(envoy_bin: str) -> dict:
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"

    envoy = first_line([envoy_bin, "--version"])
    m = re.search(r"version: \S+/([\d.]+)/\S+/\S+/(\S+)", envoy)
    return {
        "envoy": f"{m.group(1)} ({m.group(2)})" if m else envoy,
        "rustc": first_line(["rustc", "--version"]),
        "wrk": " ".join(first_line(["wrk", "-v"]).split()[:2]),
        "python": platform.python_version(),
    }


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__.split("\n\n")[0],
        epilog="scripts/bench also takes --no-build: measure the module as it is, without scripts/build. "
        "Configurations: " + ", ".join(c.name for c in CONFIGS))
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every configuration once (3)")
    ap.add_argument("--duration", type=int, default=5, help="measured seconds per configuration and round (5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement (2, at least 1)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    ap.add_argument("--tokens", type=int, default=20000, help="distinct tokens per algorithm for the cold runs")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round x 2 s, 1 s warm-up, 2000 tokens")
    ap.add_argument("--only", help="comma-separated configuration names (default: all)")
    ap.add_argument("--keep-logs", action="store_true", help="keep each Envoy's log (large: one audit line per request)")
    ap.add_argument("--out", default=str(REPO / "target" / "bench"), help="output directory (target/bench)")
    ap.add_argument("--wasm", help="the module to measure (dist/intentgate.wasm, or $INTENTGATE_WASM)", default=os.environ.get("INTENTGATE_WASM") or str(REPO / "dist" / "intentgate.wasm"))
    ap.add_argument("--noop-wasm", help="the noop baseline module (default: build bench/noop-filter)")
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN"), help="Envoy binary ($ENVOY_BIN)")
    ap.add_argument("--command", default="scripts/bench", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.tokens = 1, 2, 1, 2000
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0 or not 1 <= args.connections <= 1000:
        ap.error("need --rounds >= 1, --duration >= 1, --warmup >= 0, 1 <= --connections <= 1000")
    if args.warmup < 1:
        args.warmup = 1  # wrk runs at least one second
    configs = CONFIGS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - {c.name for c in CONFIGS}
        if unknown:
            ap.error(f"unknown configuration(s): {', '.join(sorted(unknown))}; known: "
                     + ", ".join(c.name for c in CONFIGS))
        configs = [c for c in CONFIGS if c.name in names]
    if not args.envoy:
        ap.error("no Envoy binary: set ENVOY_BIN or pass --envoy (scripts/bench does this)")
    if not shutil.which("wrk"):
        raise BenchError("wrk is not installed (scripts/bench installs it with apt-get)")

    out = Path(args.out)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    # one copy of the module for the whole run: a rebuild meanwhile cannot change what is measured
    src_wasm = Path(args.wasm)
    if not src_wasm.is_file():
        raise BenchError(f"{src_wasm} is missing: run scripts/build")
    wasm_path = run_dir / "intentgate.wasm"
    shutil.copyfile(src_wasm, wasm_path)
    wasm_bytes = wasm_path.read_bytes()
    noop_path = None
    if any(c.filters.startswith("wasm_noop") for c in configs):
        noop_path = run_dir / "noop.wasm"
        if args.noop_wasm:
            shutil.copyfile(args.noop_wasm, noop_path)
        else:
            build_noop(noop_path)

    machine, vers = machine_info(), versions(args.envoy)
    meta = {
        "command": args.command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "machine": machine,
        "versions": vers,
        "wasm_bytes": len(wasm_bytes),
        "wasm_gzip_bytes": len(gzip.compress(wasm_bytes, 9, mtime=0)),
        "wasm_sha256": hashlib.sha256(wasm_bytes).hexdigest(),
        "noop_wasm_bytes": noop_path.stat().st_size if noop_path else None,
    }
    log(f"machine: {machine['nproc']} cores, {machine['cpu_model']}, kernel {machine['kernel']}, "
        f"load average {' '.join(machine['loadavg_at_start'])}")
    log(f"versions: Envoy {vers['envoy']}; {vers['rustc']}; {vers['wrk']}; Python {vers['python']}")
    log(f"module: {src_wasm} {meta['wasm_bytes']} bytes ({meta['wasm_gzip_bytes']} gzip), "
        f"sha256 {meta['wasm_sha256'][:16]}…")
    per_config = args.warmup + args.duration + 3
    # everything is bounded: the whole run may take at most twice the plan plus 10 minutes (token minting)
    signal.alarm(int(2 * len(configs) * args.rounds * per_config + 600))
    log(f"plan: {len(configs)} configurations × {args.rounds} rounds × ({args.warmup:g} s warm-up + "
        f"{args.duration:g} s) ≈ {len(configs) * args.rounds * per_config / 60:.1f} min")

    # tokens
    token_dir = out / "tokens"
    now = int(time.time())
    lists: dict[str, Path] = {}
    for alg in sorted({c.alg for c in configs if c.tokens == "cycle"}):
        lists[alg] = token_list(token_dir, alg, args.tokens)
    cycle_tokens = {alg: p.read_text().split() for alg, p in lists.items()}
    one_token = {alg: mint(alg, now, f"bench-one-{alg.lower()}-{now}") for alg in KID_FOR_ALG}
    # a token signed by a key the gateway does not know, under a known kid
    rotated_key = jwt.PyJWK(TEST_KEYS["es256-rotated"]).key
    extra_tokens = {
        "no_scope": mint("ES256", now, f"bench-noscope-{now}", scope="tickets:write"),
        "readonly": mint("ES256", now, f"bench-readonly-{now}", scope="tickets:readonly other:x"),
        "rotated": jwt.encode(
            {"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "client_id": CLIENT_ID, "scope": SCOPE, "iat": now,
             "exp": now + 600, "jti": f"bench-rotated-{now}"},
            rotated_key, algorithm="ES256", headers={"kid": "es256-1", "typ": "at+jwt"}),
    }
    body_file = run_dir / "mcp-body.json"
    body_file.write_bytes(mcp_body())

    results: dict[str, list[dict]] = {c.name: [] for c in configs}
    raw: list[dict] = []
    for rnd in range(args.rounds):
        order = configs[rnd % len(configs):] + configs[: rnd % len(configs)]
        log(f"\nround {rnd + 1}/{args.rounds}")
        for cfg in order:
            if cfg.tokens == "cycle":
                traffic = Traffic(cycle_tokens[cfg.alg][0], lists[cfg.alg], body_file)
                ctoks = cycle_tokens[cfg.alg]
            else:
                traffic = Traffic(one_token[cfg.alg], None, body_file)
                ctoks = []
            envoy = Envoy(args.envoy, cfg, wasm_path, noop_path, run_dir / cfg.name)
            try:
                envoy.start()
                checks = verify(envoy, cfg, traffic, extra_tokens, ctoks)
                r = measure(envoy, cfg, traffic, args.duration, args.warmup, args.connections,
                            len(ctoks) or 1)
            finally:
                envoy.stop()
            # the audit log of a good run is large and of no further use
            if not args.keep_logs:
                envoy.log_path.unlink(missing_ok=True)
            results[cfg.name].append(r)
            raw.append({"round": rnd + 1, "config": cfg.name, "checks": checks, **r})
            extra = f" cache hits {r['token_cache_hit_ratio']:.0%}" if "token_cache_hit_ratio" in r else ""
            log(f"  {cfg.name:<24} {r['rps']:>9,.0f} rps  p50 {fmt_us(r['p50_us']):>8}  p99 "
                f"{fmt_us(r['p99_us']):>8}  {r['cpu_us_per_req']:7.1f} µs/req  (Envoy {r['envoy_cpu_util']:.0%}, "
                f"wrk {r['wrk_cpu_util']:.0%}, other {r['other_cpu_cores']:.2f} cores){extra}")

    summary = summarize(results)
    ratio = ratios(summary, results)
    text = table(summary, ratio, configs, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    doc = {**{k: meta[k] for k in ("wasm_bytes", "wasm_gzip_bytes")}, **summary, "ratios": ratio,
           "meta": meta, "missing": [n for n in REQUIRED if n not in summary]}
    (out / "summary.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (out / "raw.json").write_text(json.dumps({"meta": meta, "measurements": raw}, indent=1, ensure_ascii=False))
    log("\n" + text)
    log(f"wrote {out / 'table.md'}, {out / 'summary.json'}, {out / 'raw.json'}")
    return 0


def _on_signal(signum, _frame):
    if signum == signal.SIGALRM:
        raise BenchError("the run exceeded its time limit (twice the plan + 10 min)")
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGALRM):
        signal.signal(s, _on_signal)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"\nscripts/bench: ABORTED: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"\nscripts/bench: interrupted ({e})", file=sys.stderr, flush=True)
        sys.exit(130)
    finally:
        stop_all()
