"""Credentials that live and die with the task, end to end through a real Envoy: remote key sets
(rotation, the unknown-kid debounce, failing key servers, cold start, OIDC discovery, SPIFFE bundles),
the revocation feed and its staleness, task completion (by a completing call and by a trusted upstream
header), single-use tokens, and all of it shared by the workers of an Envoy with `--concurrency 2`.

The key server and the feed server are control_servers.ControlServer instances on 127.0.0.1 that the
tests steer (documents, failure modes, down/up) and whose request counts are the fetch counts. Three
Envoys (envoy/lifecycle.yaml) are shared by the tests of each group; every test uses its own issuer,
task ids and tokens, so that no test depends on another having run.
"""

from __future__ import annotations

import json
import re
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest

from control_servers import ControlServer, Mode, ScriptedUpstream, discovery, feed, jwks, spiffe_bundle
from harness import (
    parallel,
    AUDIT_MARKER,
    REPO,
    Call,
    Envoy,
    Gateway,
    free_port,
    http_request,
    wait_until,
    wasm_path,
)
from tokens import claims, mint, new_jti, private_key, public_jwk

TEMPLATE = REPO / "envoy" / "lifecycle.yaml"
AUDIENCE = "https://tools.test/api"
AGENT = "spiffe://test/agent/lifecycle-bot"
ACR = "urn:test:mfa"
REVOKE_HEADER = "x-intentgate-revoke-txn"
ALL_SCOPES = "docs:read docs:write tasks:complete invoices:pay"

TOOLS = [
    {
        "name": "read_doc",
        "action": "docs.read",
        "risk": "read",
        "scopes": ["docs:read"],
        "match": [{"methods": ["GET"], "path_template": "/docs/{id}"}],
    },
    {
        "name": "write_doc",
        "action": "docs.write",
        "risk": "write",
        "scopes": ["docs:write"],
        "match": [{"methods": ["PUT"], "path_template": "/docs/{id}"}],
    },
    {
        "name": "complete_task",
        "action": "tasks.complete",
        "risk": "write",
        "scopes": ["tasks:complete"],
        "match": [{"methods": ["POST"], "path_template": "/tasks/{txn}/complete"}],
        "completes_task": True,
    },
    {
        "name": "pay_invoice",
        "action": "invoices.pay",
        "risk": "payment",
        "scopes": ["invoices:pay"],
        "match": [{"methods": ["POST"], "path": "/invoices/pay"}],
        "single_use": True,
    },
]


# --- policy and tokens -------------------------------------------------------------------------------


def remote_issuer(
    issuer: str,
    path: str,
    *,
    discovery_doc: bool = False,
    timeout_ms: int = 500,
    max_bytes: int = 16384,
    min_refresh_s: int = 1,
    max_refresh_s: int = 3600,
    debounce_s: int = 5,
) -> dict:
    return {
        "issuer": issuer,
        "remote_jwks": {
            "cluster": "keys",
            "path": path,
            "authority": "keys.test",
            "discovery": discovery_doc,
            "timeout_ms": timeout_ms,
            "max_bytes": max_bytes,
            "min_refresh_s": min_refresh_s,
            "max_refresh_s": max_refresh_s,
            "unknown_kid_debounce_s": debounce_s,
        },
        "algorithms": ["ES256"],
        "max_ttl_s": 900,
    }


def inline_issuer(issuer: str) -> dict:
    return {
        "issuer": issuer,
        "jwks": {"keys": [public_jwk("es256-1"), public_jwk("es384-1")]},
        "algorithms": ["ES256", "ES384"],
        "max_ttl_s": 900,
    }


def lifecycle_policy(issuers: list[dict], revocation: dict | None = None) -> dict:
    policy = {
        "audience": AUDIENCE,
        "issuers": issuers,
        "tools": TOOLS,
        "step_up": {"acr_values": [ACR], "max_age_s": 300},
    }
    if revocation is not None:
        policy["revocation"] = revocation
    return policy


def new_task() -> str:
    return f"task-{uuid.uuid4().hex[:12]}"


def token(issuer: str, kid: str = "es256-1", *, txn=None, sub: str = AGENT, scope: str = ALL_SCOPES, **extra) -> str:
    """A valid token of `issuer` for every tool of TOOLS (step-up included), signed by `kid`."""
    now = int(time.time())
    alg = {"es384-1": "ES384"}.get(kid, "ES256")
    # a kid that is not a test key (a made-up one) is signed with the rotated key
    signing_kid = kid if kid in ("es256-1", "es256-rotated", "es384-1") else "es256-rotated"
    payload = claims(
        issuer,
        AUDIENCE,
        sub,
        now=now,
        scope=scope,
        txn=new_task() if txn is None else txn,
        acr=ACR,
        auth_time=now,
        **extra,
    )
    if signing_kid == kid:
        return mint(payload, alg=alg, kid=kid)
    return _mint_with_kid(payload, signing_kid, kid)


def _mint_with_kid(payload: dict, signing_kid: str, header_kid: str) -> str:
    headers = {"kid": header_kid, "typ": "at+jwt"}
    return jwt.encode(payload, private_key(signing_kid), algorithm="ES256", headers=headers)


# --- Envoy with the lifecycle template ---------------------------------------------------------------


# Envoy's default log line: [time][thread id][level][logger] ... message
LOG_THREAD = re.compile(r"^\[[^\]]*\]\[(\d+)\]")


@dataclass
class Lab:
    """One Envoy with the lifecycle template, its upstream, key server and feed server."""

    gateway: Gateway
    keys: ControlServer
    feed: ControlServer
    upstream: ScriptedUpstream
    started_at: float = field(default_factory=time.monotonic)

    @property
    def envoy(self) -> Envoy:
        return self.gateway.envoy

    def call(self, method: str, target: str, tok: str | None, **kwargs) -> Call:
        return self.gateway.call(method, target, tok, **kwargs)

    def metric(self, name: str) -> int:
        return self.envoy.stats().get(f"wasmcustom.intentgate.{name}", 0)

    def log_lines(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.envoy.log_text().splitlines() if regex.search(line)]

    def wait_log(self, pattern: str, more_than: int, timeout_s: float) -> list[str]:
        """Wait until more than `more_than` log lines match `pattern`; the lines then."""

        def found() -> list[str] | None:
            lines = self.log_lines(pattern)
            return lines if len(lines) > more_than else None

        lines = wait_until(found, timeout_s)
        if lines is None:
            raise AssertionError(
                f"no new log line matching {pattern!r} within {timeout_s}s; log tail:\n{self.envoy.log_tail(30)}"
            )
        return lines

    def threads_of(self, audit_ids: set[str]) -> set[str]:
        """The Envoy worker threads that wrote the audit lines with these ids."""
        threads = set()
        for line in self.envoy.log_text().splitlines():
            if AUDIT_MARKER in line:
                record = json.loads(line.split(AUDIT_MARKER, 1)[1])
                match = LOG_THREAD.match(line)
                if record.get("audit_id") in audit_ids and match:
                    threads.add(match.group(1))
        return threads

    def stop(self) -> None:
        self.gateway.stop()
        self.keys.stop()
        self.feed.stop()


def start_lab(
    policy: dict, keys: ControlServer, feed_server: ControlServer, workdir: Path, concurrency: int = 1
) -> Lab:
    upstream = ScriptedUpstream().start()
    try:
        admin_port, listen_port = free_port(), free_port()
        config = string.Template(TEMPLATE.read_text()).substitute(
            LISTEN_PORT=listen_port,
            ADMIN_PORT=admin_port,
            UPSTREAM_PORT=upstream.port,
            KEYS_PORT=keys.port,
            REVOCATIONS_PORT=feed_server.port,
            WASM_PATH=json.dumps(str(wasm_path())),
            POLICY_JSON=json.dumps(json.dumps(policy)),
        )
        envoy = Envoy(config, admin_port, listen_port, workdir, concurrency=concurrency).start()
    except BaseException:
        upstream.stop()
        keys.stop()
        feed_server.stop()
        raise
    return Lab(Gateway(envoy, upstream), keys, feed_server, upstream)


def first_refusal(make_call, timeout_s: float) -> Call | None:
    """Repeat a call until it is not a 200: that call, or None at the deadline."""

    def refused() -> Call | None:
        c = make_call()
        return c if c.response.status != 200 else None

    return wait_until(refused, timeout_s)


def reason_of(c: Call) -> str | None:
    return c.response.header("x-intentgate-reason")


def assert_denied(c: Call, status: int, reason: str) -> None:
    response = c.response
    assert (response.status, reason_of(c)) == (status, reason), (response.status, response.headers, response.body)
    assert response.json()["reason"] == reason
    assert c.forwarded is None, "a denied call reached the upstream"
    if status == 401:
        challenge = response.header("www-authenticate") or ""
        assert 'error="invalid_token"' in challenge and f'error_description="{reason}"' in challenge, challenge
    if status == 503:
        assert response.json()["error"] == "temporarily_unavailable"
        assert response.header("www-authenticate") is None


def assert_allowed(c: Call) -> None:
    response = c.response
    assert response.status == 200, (response.status, response.headers, response.body)
    assert c.forwarded is not None


# =================================================================================================
# Remote key sets: one Envoy, one issuer per scenario (each with its own schedule and debounce)
# =================================================================================================

ROTATION, FLOOD, FLAKY, OIDC, SPIFFE = (
    "https://rotation.test",
    "https://flood.test",
    "https://flaky.test",
    "https://oidc.test",
    "https://spiffe.test",
)
CONCURRENT, ABANDONED = "https://concurrent.test", "https://abandoned.test"
FLOOD_DEBOUNCE_S = 3
FLAKY_TIMEOUT_MS = 300
FLAKY_MAX_BYTES = 4096


@pytest.fixture(scope="module")
def keys_lab(tmp_path_factory):
    keys = ControlServer("keys").up()
    keys.serve("/rotation/jwks", jwks("es256-1"))
    keys.serve("/flood/jwks", jwks("es256-1"))
    # refreshed every second (max-age=1, clamped to min_refresh_s=1): failures show up quickly
    keys.serve("/flaky/jwks", jwks("es256-1"), cache_control="public, max-age=1")
    keys.serve("/oidc/.well-known/openid-configuration", discovery(OIDC, "http://keys.test/oidc/keys.json"))
    keys.serve("/oidc/keys.json", jwks("es256-1"))
    keys.serve("/spiffe/bundle", spiffe_bundle("es256-1", refresh_hint_s=7, x509_kids=("es256-rotated",)))
    keys.serve("/concurrent/jwks", jwks("es256-1"))
    keys.serve("/abandoned/jwks", jwks("es256-1"))
    unused_feed = ControlServer("unused-feed")
    policy = lifecycle_policy(
        [
            remote_issuer(ROTATION, "/rotation/jwks", debounce_s=5),
            remote_issuer(FLOOD, "/flood/jwks", debounce_s=FLOOD_DEBOUNCE_S),
            remote_issuer(FLAKY, "/flaky/jwks", timeout_ms=FLAKY_TIMEOUT_MS, max_bytes=FLAKY_MAX_BYTES, debounce_s=1),
            remote_issuer(OIDC, "/oidc/.well-known/openid-configuration", discovery_doc=True),
            remote_issuer(SPIFFE, "/spiffe/bundle", min_refresh_s=5, max_refresh_s=600),
            remote_issuer(CONCURRENT, "/concurrent/jwks", debounce_s=5),
            # lease: 2 * 1 s + 2 s = 4 s
            remote_issuer(ABANDONED, "/abandoned/jwks", timeout_ms=1000, debounce_s=1),
        ]
    )
    lab = start_lab(policy, keys, unused_feed, tmp_path_factory.mktemp("lifecycle-keys"))
    try:
        # every issuer's first key set arrives from the schedule (the first tick, one second in)
        for issuer in (ROTATION, FLOOD, FLAKY, OIDC, SPIFFE, CONCURRENT, ABANDONED):
            lab.wait_log(rf"intentgate: keys of {re.escape(issuer)}: ", 0, 10)
        # Even with one worker, Envoy runs the plugin's root context on the main thread too, and that
        # VM often wins the fetch; the worker installs the shared key set on its next tick (1 s).
        # Without this wait, a first call in that second starts a redundant unknown-kid fetch.
        time.sleep(1.2)
        yield lab
    finally:
        lab.stop()


def test_rotated_key_works_on_first_use_after_one_fetch(keys_lab: Lab):
    lab = keys_lab
    assert lab.keys.count("/rotation/jwks") == 1, "one scheduled fetch at start, none since (max_refresh_s 3600)"
    assert_allowed(lab.call("GET", "/docs/1", token(ROTATION)))
    refreshes = lab.metric("keys.unknown_kid_refresh")

    # the issuer publishes its new key, then signs with it
    lab.keys.set_document("/rotation/jwks", jwks("es256-1", "es256-rotated"))
    first = lab.call("GET", "/docs/1", token(ROTATION, "es256-rotated"))
    assert_allowed(first)
    assert first.audit()["reason"] == "scope_granted"
    assert lab.keys.count("/rotation/jwks") == 2, "exactly one extra fetch, made while the first call waited"
    assert lab.metric("keys.unknown_kid_refresh") == refreshes + 1

    # both keys keep working without another fetch
    assert_allowed(lab.call("GET", "/docs/2", token(ROTATION, "es256-rotated")))
    assert_allowed(lab.call("GET", "/docs/3", token(ROTATION, "es256-1")))
    assert lab.keys.count("/rotation/jwks") == 2


def test_concurrent_first_calls_with_a_rotated_key(keys_lab: Lab):
    """One worker: the first calls with a rotated key arrive together. One of them fetches; the others
    must not be refused while that fetch is in flight (the rotation gap, agentgateway#2798)."""
    lab = keys_lab
    path = "/concurrent/jwks"
    assert lab.keys.count(path) == 1
    lab.keys.set_document(path, jwks("es256-1", "es256-rotated"))
    calls = parallel(10, lambda i: lab.call("GET", f"/docs/{i}", token(CONCURRENT, "es256-rotated")))
    outcomes = sorted((c.response.status, reason_of(c) or "") for c in calls)
    assert lab.keys.count(path) == 2, "one fetch for the rotation"
    assert outcomes == [(200, "")] * 10, f"first calls with the rotated key: {outcomes}"


def test_abandoned_first_call_does_not_waste_the_refresh(keys_lab: Lab):
    """The client of the call that triggered the unknown-kid refresh gives up before the key server
    answers. The keys it fetched (or a new fetch) must serve the next call with that kid."""
    lab = keys_lab
    path = "/abandoned/jwks"
    lab.keys.set_document(path, jwks("es256-1", "es256-rotated"))
    lab.keys.set_mode(path, Mode.SLOW, slow_s=0.5)  # within timeout_ms = 1000
    fetches = lab.keys.count(path)
    try:
        with pytest.raises(TimeoutError):
            http_request(
                lab.envoy.listen_port,
                "GET",
                "/docs/1",
                [("authorization", f"Bearer {token(ABANDONED, 'es256-rotated')}")],
                timeout_s=0.2,
            )
    finally:
        lab.keys.set_mode(path, Mode.OK)
    assert lab.keys.wait_count(path, fetches + 1, timeout_s=2) == fetches + 1, "the refresh reached the key server"
    # past the answer, one tick and the unknown-kid debounce (1 s)
    time.sleep(1.6)
    later = lab.call("GET", "/docs/1", token(ABANDONED, "es256-rotated"))
    assert later.response.status == 200, (
        f"{later.response.status} {reason_of(later)}: the rotated key served by the key server "
        f"{lab.keys.count(path) - fetches} time(s) is still unknown"
    )


def test_unknown_kid_flood_is_debounced(keys_lab: Lab):
    lab = keys_lab
    path = "/flood/jwks"
    before = lab.keys.count(path)
    started = time.monotonic()
    calls = [lab.call("GET", "/docs/1", token(FLOOD, f"made-up-{uuid.uuid4().hex[:8]}")) for _ in range(30)]
    elapsed = time.monotonic() - started
    for c in calls:
        assert_denied(c, 401, "kid_unknown")
    assert elapsed < FLOOD_DEBOUNCE_S, f"the flood took {elapsed:.1f}s, longer than one debounce window"
    assert lab.keys.count(path) - before == 1, "30 unknown kids within one debounce window: one fetch"

    # the debounce is a window, not a ban: once it has passed, an unknown kid may fetch again
    time.sleep(max(0.0, FLOOD_DEBOUNCE_S + 1.1 - (time.monotonic() - started)))
    assert_denied(lab.call("GET", "/docs/1", token(FLOOD, "made-up-after-window")), 401, "kid_unknown")
    assert lab.keys.count(path) - before == 2
    # the issuer's real key was never in doubt
    assert_allowed(lab.call("GET", "/docs/1", token(FLOOD)))


FAILURES = {
    # name: (mode, settings, the error the filter logs). Envoy answers a dispatch that got no response
    # itself: 503 when the connection failed or was closed, 504 when the timeout passed.
    "down": (None, {}, r"(status 503|timeout)"),  # the whole key server: connection refused
    "close": (Mode.CLOSE, {}, r"(status 503|timeout)"),
    "slow": (Mode.SLOW, {"slow_s": 1.0}, r"(timeout|status 504)"),
    "garbage": (Mode.GARBAGE, {}, r"malformed"),
    "oversized": (Mode.OVERSIZED, {"oversize_bytes": 4 * FLAKY_MAX_BYTES}, r"too_large"),
    "error_500": (Mode.ERROR, {"status": 500}, r"status 500"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_failed_key_fetch_keeps_the_last_good_keys(keys_lab: Lab, failure: str):
    lab = keys_lab
    mode, settings, code = FAILURES[failure]
    pattern = rf"fetching keys of {re.escape(FLAKY)} failed \({code}\); keeping the last good data"
    logged = len(lab.log_lines(pattern))
    failed = lab.metric("keys.fetch_failed")
    fetches = lab.keys.count("/flaky/jwks")
    if mode is None:
        lab.keys.down()
    else:
        lab.keys.set_mode("/flaky/jwks", mode, **settings)
    try:
        lab.wait_log(pattern, logged, timeout_s=6)
        assert lab.metric("keys.fetch_failed") > failed
        assert lab.keys.count("/flaky/jwks") > fetches or mode is None
        # fresh tokens (no verification cache): the last good key set still verifies them
        for i in range(3):
            assert_allowed(lab.call("GET", f"/docs/{i}", token(FLAKY)))
        # and the filter keeps retrying (backoff capped at min_refresh_s = 1 s)
        lab.wait_log(pattern, logged + 1, timeout_s=6)
        assert_allowed(lab.call("GET", "/docs/9", token(FLAKY)))
    finally:
        lab.keys.up()
        lab.keys.set_mode("/flaky/jwks", Mode.OK)


def test_empty_key_set_trusts_nothing(keys_lab: Lab):
    lab = keys_lab
    pattern = rf"intentgate: keys of {re.escape(FLAKY)}: 0 key\(s\)"
    seen = len(lab.log_lines(pattern))
    lab.keys.set_document("/flaky/jwks", {"keys": []})
    try:
        lab.wait_log(pattern, seen, timeout_s=6)
        # the worker that serves requests picks the shared set up on its next tick (within a second)
        denied = first_refusal(lambda: lab.call("GET", "/docs/1", token(FLAKY)), 3)
        assert denied is not None, "an empty key set still verified tokens"
        assert_denied(denied, 401, "kid_unknown")
    finally:
        lab.keys.set_document("/flaky/jwks", jwks("es256-1"))
    lab.wait_log(rf"intentgate: keys of {re.escape(FLAKY)}: 1 key\(s\)", 0, timeout_s=6)
    assert wait_until(lambda: lab.call("GET", "/docs/1", token(FLAKY)).response.status == 200, 6)


def test_oidc_discovery_leads_to_the_key_set(keys_lab: Lab):
    lab = keys_lab
    assert lab.keys.count("/oidc/.well-known/openid-configuration") >= 1
    assert lab.keys.count("/oidc/keys.json") >= 1, "the jwks_uri of the discovery document was fetched"
    first = [r for r in lab.keys.requests if r[2].startswith("/oidc/")][:2]
    assert [r[2] for r in first] == ["/oidc/.well-known/openid-configuration", "/oidc/keys.json"]
    assert all(r[3] == "keys.test" for r in first), "the configured authority is sent"
    assert_allowed(lab.call("GET", "/docs/1", token(OIDC)))
    assert_denied(lab.call("GET", "/docs/1", token(OIDC, "es256-rotated")), 401, "kid_unknown")


def test_spiffe_bundle_is_a_key_set(keys_lab: Lab):
    lab = keys_lab
    # one jwt-svid key used, the x509-svid key skipped; the refresh hint (7 s, within 5..600) honoured
    assert lab.log_lines(rf"intentgate: keys of {re.escape(SPIFFE)}: 1 key\(s\), 1 skipped, next refresh in 7s")
    assert_allowed(lab.call("GET", "/docs/1", token(SPIFFE)))
    # the X.509-SVID key signs nothing a JWT verifier accepts
    assert_denied(lab.call("GET", "/docs/1", token(SPIFFE, "es256-rotated")), 401, "kid_unknown")


# =================================================================================================
# Cold start, the revocation feed, completion and single use: one Envoy with an inline-key issuer,
# a remote issuer whose key server is down at start, and a feed
# =================================================================================================

ISSUER, COLD = "https://issuer.test", "https://cold.test"
FEED_MAX_STALENESS_S = 2


@pytest.fixture(scope="module")
def revocation_lab(tmp_path_factory):
    keys = ControlServer("cold-keys")  # not listening: connections are refused
    keys.serve("/cold/jwks", jwks("es256-1"))
    feed_server = ControlServer("feed").up()
    feed_server.serve("/revocations", feed())
    policy = lifecycle_policy(
        [inline_issuer(ISSUER), remote_issuer(COLD, "/cold/jwks", min_refresh_s=1, debounce_s=1)],
        revocation={
            "feed": {
                "cluster": "revocations",
                "path": "/revocations",
                "authority": "revocations.test",
                "poll_s": 1,
                "timeout_ms": 300,
                "max_staleness_s": FEED_MAX_STALENESS_S,
                "stale_min_risk": "write",
            },
            "revoke_header": REVOKE_HEADER,
        },
    )
    lab = start_lab(policy, keys, feed_server, tmp_path_factory.mktemp("lifecycle-revocation"))
    try:
        if not wait_until(lambda: lab.metric("revocation_feed.fetch_ok") >= 1, 10):
            raise AssertionError(f"the feed was never fetched; log tail:\n{lab.envoy.log_tail(30)}")
        yield lab
    finally:
        lab.stop()


def wait_feed_fresh(lab: Lab, timeout_s: float = 8) -> None:
    """Feed up and fetched: a write call passes."""
    lab.feed.up()
    ok = wait_until(
        lambda: lab.call("PUT", "/docs/fresh", token(ISSUER), body=b"{}").response.status == 200, timeout_s
    )
    assert ok, f"a write call never passed; log tail:\n{lab.envoy.log_tail(30)}"


def test_cold_start_without_keys_is_503_then_recovers(revocation_lab: Lab):
    lab = revocation_lab
    assert not lab.keys.is_up
    lab.wait_log(rf"fetching keys of {re.escape(COLD)} failed", 0, timeout_s=6)
    assert lab.metric("keys.fetch_failed") >= 1

    denied = lab.call("GET", "/docs/1", token(COLD))
    assert_denied(denied, 503, "keys_unavailable")
    assert denied.response.header("cache-control") == "no-store"
    assert denied.audit()["reason"] == "keys_unavailable"
    # the inline issuer is not affected
    assert_allowed(lab.call("GET", "/docs/1", token(ISSUER)))

    # the key server comes up: the next scheduled retry (backoff capped at min_refresh_s = 1 s) gets
    # the keys, without any request asking for them
    lab.keys.up()
    assert lab.keys.wait_count("/cold/jwks", 1, timeout_s=6) >= 1, "no retry reached the key server"
    lab.wait_log(rf"intentgate: keys of {re.escape(COLD)}: 1 key\(s\)", 0, timeout_s=3)
    assert_allowed(lab.call("GET", "/docs/1", token(COLD)))


def test_feed_revokes_a_task_and_nothing_else(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    revoked_task, other_task, expired_task = new_task(), new_task(), new_task()
    revoked_jti = new_jti()
    revoked_agent = f"spiffe://test/agent/rogue-{uuid.uuid4().hex[:6]}"
    cached = token(ISSUER, txn=revoked_task)
    by_jti = token(ISSUER, jti=revoked_jti)
    by_agent = token(ISSUER, sub=revoked_agent)
    by_kid = token(ISSUER, "es384-1")
    other = token(ISSUER, txn=other_task)
    expired = token(ISSUER, txn=expired_task)
    for tok in (cached, by_jti, by_agent, by_kid, other, expired):
        assert_allowed(lab.call("GET", "/docs/1", tok))

    now = int(time.time())
    polls = lab.feed.count("/revocations")
    lab.feed.set_document(
        "/revocations",
        feed(
            {"txn": revoked_task, "expires_at": now + 600},
            {"jti": revoked_jti},
            {"sub": revoked_agent, "expires_at": now + 600},
            {"kid": "es384-1", "expires_at": now + 600},
            {"txn": expired_task, "expires_at": now - 10},
        ),
    )
    try:
        refused = first_refusal(lambda: lab.call("GET", "/docs/1", cached), 5)
        assert refused is not None, "the revoked task was never refused"
        assert lab.feed.count("/revocations") > polls
        assert_denied(refused, 401, "task_revoked")
        assert refused.audit()["token_cache"] == "hit", "revocation applies to cached verifications"
        assert_denied(lab.call("GET", "/docs/1", token(ISSUER, txn=revoked_task)), 401, "task_revoked")
        assert_denied(lab.call("GET", "/docs/1", by_jti), 401, "token_revoked")
        assert_denied(lab.call("GET", "/docs/1", by_agent), 401, "agent_revoked")
        assert_denied(lab.call("GET", "/docs/1", by_kid), 401, "key_revoked")
        # other tasks, an entry that had already expired, the other key: unaffected
        assert_allowed(lab.call("GET", "/docs/1", other))
        assert_allowed(lab.call("PUT", "/docs/1", token(ISSUER, txn=other_task), body=b"{}"))
        assert_allowed(lab.call("GET", "/docs/1", expired))
        assert lab.metric("revocation_feed.fetch_ok") >= 2
    finally:
        lab.feed.set_document("/revocations", feed())


def test_stale_feed_refuses_writes_and_allows_reads(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    revoked_task = new_task()
    revoked = token(ISSUER, txn=revoked_task)
    lab.feed.set_document("/revocations", feed({"txn": revoked_task}))
    try:
        assert wait_until(lambda: lab.call("GET", "/docs/1", revoked).response.status == 401, 5)
        failed = lab.metric("revocation_feed.fetch_failed")
        lab.feed.down()
        # within max_staleness_s of the last good poll, writes still pass on the last list
        assert_allowed(lab.call("PUT", "/docs/1", token(ISSUER), body=b"{}"))
        refused = first_refusal(lambda: lab.call("PUT", "/docs/1", token(ISSUER), body=b"{}"), FEED_MAX_STALENESS_S + 4)
        assert refused is not None, "writes were never refused on a stale feed"
        assert_denied(refused, 503, "revocation_feed_stale")
        assert lab.metric("revocation_feed.fetch_failed") > failed
        assert lab.log_lines(r"fetching revocation feed failed")
        # everything at or above `write` is refused; reads are not
        assert_denied(lab.call("POST", "/invoices/pay", token(ISSUER), body=b"{}"), 503, "revocation_feed_stale")
        assert_allowed(lab.call("GET", "/docs/1", token(ISSUER)))
        # the last good list still applies
        assert_denied(lab.call("GET", "/docs/1", revoked), 401, "task_revoked")
    finally:
        lab.feed.set_document("/revocations", feed())
        wait_feed_fresh(lab)


def test_malformed_feed_keeps_the_last_list(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    revoked_task = new_task()
    revoked = token(ISSUER, txn=revoked_task)
    lab.feed.set_document("/revocations", feed({"txn": revoked_task}))
    pattern = r"fetching revocation feed failed \(malformed\); keeping the last good data"
    logged = len(lab.log_lines(pattern))
    try:
        assert wait_until(lambda: lab.call("GET", "/docs/1", revoked).response.status == 401, 5)
        failed = lab.metric("revocation_feed.fetch_failed")
        lab.feed.set_mode("/revocations", Mode.GARBAGE)
        lab.wait_log(pattern, logged, timeout_s=4)
        assert lab.metric("revocation_feed.fetch_failed") > failed
        assert_denied(lab.call("GET", "/docs/1", revoked), 401, "task_revoked")
        assert_allowed(lab.call("GET", "/docs/1", token(ISSUER)))
    finally:
        lab.feed.set_mode("/revocations", Mode.OK)
        lab.feed.set_document("/revocations", feed())
        wait_feed_fresh(lab)


def test_completing_call_ends_the_task_for_every_token(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    task, other_task = new_task(), new_task()
    cached, unseen, completer = token(ISSUER, txn=task), token(ISSUER, txn=task), token(ISSUER, txn=task)
    assert_allowed(lab.call("GET", "/docs/1", cached))
    assert lab.call("GET", "/docs/1", cached).audit()["token_cache"] == "hit"
    completed = lab.metric("tasks.completed")

    done = lab.call("POST", f"/tasks/{task}/complete", completer, body=b"{}")
    assert_allowed(done)
    assert lab.metric("tasks.completed") == completed + 1

    after = lab.call("GET", "/docs/1", cached)
    assert_denied(after, 401, "task_completed")
    assert after.audit()["token_cache"] == "hit"
    assert_denied(lab.call("GET", "/docs/1", unseen), 401, "task_completed")
    assert_denied(lab.call("GET", "/docs/1", token(ISSUER, txn=task)), 401, "task_completed")
    assert_denied(lab.call("POST", f"/tasks/{task}/complete", completer, body=b"{}"), 401, "task_completed")
    assert_allowed(lab.call("GET", "/docs/1", token(ISSUER, txn=other_task)))


def test_failed_completing_call_does_not_end_the_task(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    task = new_task()
    worker = token(ISSUER, txn=task)
    completed = lab.metric("tasks.completed")
    failed = lab.call("POST", f"/tasks/{task}/complete?status=500", token(ISSUER, txn=task), body=b"{}")
    assert failed.response.status == 500 and failed.forwarded is not None, "the upstream's own answer"
    assert lab.metric("tasks.completed") == completed
    assert_allowed(lab.call("GET", "/docs/1", worker))
    # the task can still be completed for real
    assert_allowed(lab.call("POST", f"/tasks/{task}/complete", token(ISSUER, txn=task), body=b"{}"))
    assert_denied(lab.call("GET", "/docs/1", worker), 401, "task_completed")


def test_trusted_upstream_header_ends_a_task(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    ended_task, caller_task = new_task(), new_task()
    ended = token(ISSUER, txn=ended_task)
    assert_allowed(lab.call("GET", "/docs/1", ended))

    # an agent cannot end a task by sending the header itself
    assert_allowed(lab.call("GET", "/docs/2", token(ISSUER, txn=caller_task), headers=[(REVOKE_HEADER, ended_task)]))
    assert_allowed(lab.call("GET", "/docs/1", ended))

    # the orchestrator behind the gateway ends it while answering another task's call
    lab.upstream.add_response_header(f"/docs/end-{ended_task}", REVOKE_HEADER, ended_task)
    completed = lab.metric("tasks.completed")
    signal = lab.call("GET", f"/docs/end-{ended_task}", token(ISSUER, txn=caller_task))
    assert_allowed(signal)
    assert signal.response.header(REVOKE_HEADER) is None, "the trusted header is not passed on to the agent"
    assert lab.metric("tasks.completed") == completed + 1

    assert_denied(lab.call("GET", "/docs/1", ended), 401, "task_completed")
    assert_denied(lab.call("GET", "/docs/1", token(ISSUER, txn=ended_task)), 401, "task_completed")
    assert_allowed(lab.call("GET", "/docs/1", token(ISSUER, txn=caller_task)))


def test_single_use_token_pays_once(revocation_lab: Lab):
    lab = revocation_lab
    wait_feed_fresh(lab)
    payment = token(ISSUER)
    assert_allowed(lab.call("POST", "/invoices/pay", payment, body=b'{"amount": 20}'))
    replay = lab.call("POST", "/invoices/pay", payment, body=b'{"amount": 20}')
    assert_denied(replay, 401, "token_already_used")
    assert replay.audit()["reason"] == "token_already_used"
    assert_allowed(lab.call("POST", "/invoices/pay", token(ISSUER), body=b'{"amount": 20}'))


# =================================================================================================
# Two workers: one fetch serves both, and what one worker records holds on the other
# =================================================================================================

ROT_A, ROT_B, ROT_C, SCHED = "https://rot-a.test", "https://rot-b.test", "https://rot-c.test", "https://sched.test"
SCHED_MAX_AGE_S = 2
BURST = 20


@pytest.fixture(scope="module")
def workers_lab(tmp_path_factory):
    keys = ControlServer("worker-keys").up()
    keys.serve("/rot-a/jwks", jwks("es256-1"))
    keys.serve("/rot-b/jwks", jwks("es256-1"))
    keys.serve("/rot-c/jwks", jwks("es256-1"))
    keys.serve("/sched/jwks", jwks("es256-1"), cache_control=f"max-age={SCHED_MAX_AGE_S}")
    # a key server that takes its time: the fetch stays in flight while the other VMs tick
    keys.set_mode("/sched/jwks", Mode.SLOW, slow_s=0.4)
    unused_feed = ControlServer("unused-feed")
    policy = lifecycle_policy(
        [
            remote_issuer(ROT_A, "/rot-a/jwks", debounce_s=30),
            remote_issuer(ROT_B, "/rot-b/jwks", debounce_s=30),
            remote_issuer(ROT_C, "/rot-c/jwks", debounce_s=30),
            remote_issuer(SCHED, "/sched/jwks", timeout_ms=1500, min_refresh_s=1, max_refresh_s=3600),
        ]
    )
    lab = start_lab(policy, keys, unused_feed, tmp_path_factory.mktemp("lifecycle-workers"), concurrency=2)
    try:
        for issuer in (ROT_A, ROT_B, ROT_C, SCHED):
            lab.wait_log(rf"intentgate: keys of {re.escape(issuer)}: ", 0, 10)
        # both workers have synced the shared key sets (one tick)
        time.sleep(1.2)
        yield lab
    finally:
        lab.stop()


def burst(lab: Lab, make_call) -> list[Call]:
    """BURST calls at once, one connection each; asserts both workers took part."""
    calls = parallel(BURST, make_call)
    ids = {c.audit_id for c in calls if c.audit_id}
    assert len(ids) == BURST
    threads = lab.threads_of(ids)
    if len(threads) < 2:
        # the audit line is written at stream end, just after the response: give the log a moment
        time.sleep(0.3)
        threads = lab.threads_of(ids)
    assert len(threads) == 2, f"{BURST} connections landed on worker threads {threads}: not both workers"
    return calls


def test_workers_share_one_fetch_per_rotation(workers_lab: Lab):
    lab = workers_lab
    assert lab.keys.count("/rot-a/jwks") == 1, "one fetch at start for both workers"
    lab.keys.set_document("/rot-a/jwks", jwks("es256-1", "es256-rotated"))
    assert_allowed(lab.call("GET", "/docs/1", token(ROT_A, "es256-rotated")))
    assert lab.keys.count("/rot-a/jwks") == 2
    time.sleep(1.2)  # one tick: the other worker picks up the shared key set
    calls = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", token(ROT_A, "es256-rotated")))
    assert [c.response.status for c in calls] == [200] * BURST
    assert lab.keys.count("/rot-a/jwks") == 2, "the other worker did not fetch again"


def test_rotated_key_works_at_once_on_every_worker(workers_lab: Lab):
    """The first calls with a rotated key arrive on both workers at the same moment."""
    lab = workers_lab
    assert lab.keys.count("/rot-b/jwks") == 1
    lab.keys.set_document("/rot-b/jwks", jwks("es256-1", "es256-rotated"))
    calls = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", token(ROT_B, "es256-rotated")))
    statuses = sorted((c.response.status, reason_of(c) or "") for c in calls)
    fetches = lab.keys.count("/rot-b/jwks") - 1
    assert fetches == 1, f"{fetches} fetches for one rotation"
    assert statuses == [(200, "")] * BURST, f"first calls with the rotated key: {statuses}"


def test_key_fetched_by_one_worker_works_at_once_on_the_other(workers_lab: Lab):
    """One call fetches the rotated key; the calls right after it, on both workers, use it."""
    lab = workers_lab
    assert lab.keys.count("/rot-c/jwks") == 1
    lab.keys.set_document("/rot-c/jwks", jwks("es256-1", "es256-rotated"))
    assert_allowed(lab.call("GET", "/docs/0", token(ROT_C, "es256-rotated")))
    calls = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", token(ROT_C, "es256-rotated")))
    outcomes = sorted((c.response.status, reason_of(c) or "") for c in calls)
    assert lab.keys.count("/rot-c/jwks") == 2, "one fetch for the rotation"
    assert outcomes == [(200, "")] * BURST, f"calls right after the first: {outcomes}"


def test_one_token_on_many_connections(workers_lab: Lab):
    lab = workers_lab
    before = {p: lab.keys.count(p) for p in ("/rot-a/jwks", "/rot-b/jwks")}
    shared = token(ROT_A)
    calls = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", shared))
    calls += parallel(BURST, lambda i: lab.call("GET", f"/docs/{i}", shared))
    assert [c.response.status for c in calls] == [200] * (2 * BURST)
    assert {p: lab.keys.count(p) for p in before} == before, "known keys: no fetch"


def test_single_use_holds_across_workers(workers_lab: Lab):
    lab = workers_lab
    payment = token(ROT_A)
    calls = burst(lab, lambda i: lab.call("POST", "/invoices/pay", payment, body=b'{"amount": 20}'))
    outcomes = sorted((c.response.status, reason_of(c) or "") for c in calls)
    assert outcomes == [(200, "")] + [(401, "token_already_used")] * (BURST - 1), outcomes
    forwarded = [c for c in calls if c.forwarded is not None]
    assert len(forwarded) == 1, "the upstream was paid once"


def test_completion_reaches_every_worker(workers_lab: Lab):
    lab = workers_lab
    task = new_task()
    cached = token(ROT_A, txn=task)
    # the token is verified and cached on both workers
    warm = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", cached))
    assert [c.response.status for c in warm] == [200] * BURST
    assert_allowed(lab.call("POST", f"/tasks/{task}/complete", token(ROT_A, txn=task), body=b"{}"))
    fresh = [token(ROT_A, txn=task) for _ in range(BURST)]
    calls = burst(lab, lambda i: lab.call("GET", f"/docs/{i}", cached if i % 2 else fresh[i]))
    outcomes = sorted((c.response.status, reason_of(c) or "") for c in calls)
    assert outcomes == [(401, "task_completed")] * BURST, outcomes


def test_scheduled_refresh_is_shared(workers_lab: Lab):
    """Cache-Control max-age=2 sets the schedule; with two workers (and the main thread) ticking every
    second, the key server still sees one fetch per interval, never two close together, even though
    each fetch takes 0.4 s."""
    lab = workers_lab
    wait = 8 - (time.monotonic() - lab.started_at)
    if wait > 0:
        time.sleep(wait)
    hits = lab.keys.hits("/sched/jwks")
    span = hits[-1] - hits[0]
    gaps = [b - a for a, b in zip(hits, hits[1:])]
    assert len(hits) >= 3, f"only {len(hits)} scheduled fetches in {time.monotonic() - lab.started_at:.1f}s"
    assert min(gaps) >= 0.9, f"two fetches {min(gaps):.2f}s apart: the workers did not share ({gaps})"
    assert len(hits) <= span / SCHED_MAX_AGE_S + 2, f"{len(hits)} fetches in {span:.1f}s"
    assert lab.log_lines(rf"intentgate: keys of {re.escape(SCHED)}: 1 key\(s\), 0 skipped, next refresh in 2s")
    assert lab.log_lines(rf"intentgate: keys of {re.escape(ROT_A)}: 1 key\(s\), 0 skipped, next refresh in 3600s")
