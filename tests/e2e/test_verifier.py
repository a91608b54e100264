"""Host crypto offload: Envoy's BoringSSL `verify_signature` and the pure-Rust fallback accept and
refuse exactly the same tokens, and the audit record and metrics say which one checked."""

from __future__ import annotations

import pytest

from harness import Gateway, load_e2e_policy, start_gateway
from tokens import DROP, claims, compact, mint, tamper_signature

POLICY = load_e2e_policy()
ISSUER = POLICY["issuers"][0]["issuer"]
AUDIENCE = POLICY["audience"]
SUBJECT = "spiffe://test/agent/support-bot"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    """The same policy twice: `verifier: host` (the host must pass its self-test, or Envoy refuses
    the configuration) and `verifier: rust`."""
    started = {}
    try:
        for choice in ("host", "rust"):
            started[choice] = start_gateway(load_e2e_policy(verifier=choice), tmp_path_factory.mktemp(choice))
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


def read_claims(**overrides):
    return claims(ISSUER, AUDIENCE, SUBJECT, scope="tickets:read", client_id="support-bot", **overrides)


def token_suite() -> dict[str, tuple[str, int]]:
    """Name → (token, expected status): every algorithm the host can do, valid and broken, plus the
    algorithms only Rust can do (which must give the same answers through both gateways)."""
    suite: dict[str, tuple[str, int]] = {}
    for alg in ("ES256", "ES384", "RS256", "PS256", "EdDSA"):
        good = mint(read_claims(), alg=alg)
        suite[f"{alg} valid"] = (good, 200)
        suite[f"{alg} tampered signature"] = (tamper_signature(good), 401)
    # a valid signature over other claims, and a signature by another key under a known kid
    original = mint(read_claims(), alg="ES256")
    head, _, signature = original.split(".")
    other_payload = mint(read_claims(jti="other"), alg="ES256").split(".")[1]
    suite["ES256 signature of other claims"] = (f"{head}.{other_payload}.{signature}", 401)
    suite["ES256 by another key"] = (mint(read_claims(), alg="ES256", kid="es256-rotated"), 401)
    header = {"alg": "ES256", "kid": "es256-1", "typ": "at+jwt"}
    suite["ES256 signature truncated"] = (compact(header, read_claims(), b"\x01" * 63), 401)
    suite["ES256 all-zero signature"] = (compact(header, read_claims(), b"\x00" * 64), 401)
    suite["RS256 short signature"] = (
        compact({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}, read_claims(), b"\x07" * 255),
        401,
    )
    suite["ES256 no typ"] = (mint(read_claims(), alg="ES256", typ=DROP), 401)
    return suite


def test_both_verifiers_accept_and_refuse_the_same_tokens(gateways: dict[str, Gateway]):
    results: dict[str, dict[str, int]] = {}
    for name, (token, expected) in token_suite().items():
        results[name] = {choice: gw.call("GET", "/api/tickets", token).response.status for choice, gw in gateways.items()}
        assert results[name] == {"host": expected, "rust": expected}, (name, results[name])


def test_the_audit_and_metrics_say_which_verifier_checked(gateways: dict[str, Gateway]):
    host, rust = gateways["host"], gateways["rust"]
    for alg, expected_on_host in (("ES256", "host"), ("ES384", "host"), ("RS256", "host"), ("PS256", "rust"), ("EdDSA", "rust")):
        token = mint(read_claims(), alg=alg)
        on_host = host.call("GET", "/api/tickets", token)
        on_rust = rust.call("GET", "/api/tickets", token)
        assert on_host.audit()["signature_verifier"] == expected_on_host, alg
        assert on_rust.audit()["signature_verifier"] == "rust", alg
        # a cached token was not verified again: no verifier in its record
        again = host.call("GET", "/api/tickets", token)
        assert again.audit()["token_cache"] == "hit" and "signature_verifier" not in again.audit()
    assert host.envoy.stats().get("wasmcustom.intentgate.signature.host", 0) >= 3
    assert rust.envoy.stats().get("wasmcustom.intentgate.signature.host", 0) == 0
    assert rust.envoy.stats().get("wasmcustom.intentgate.signature.rust", 0) >= 5
    assert "signatures verified by the host" in host.envoy.log_text()


def test_the_token_cache_size_is_a_metric(gateways: dict[str, Gateway]):
    """The cache is bounded by entries and bytes, and its size is reported by the 1 s timer."""
    import time

    gateway = gateways["rust"]
    for alg in ("ES256", "EdDSA"):
        gateway.call("GET", "/api/tickets", mint(read_claims(), alg=alg))
    deadline = time.monotonic() + 5
    stats = gateway.envoy.stats()
    while time.monotonic() < deadline and stats.get("wasmcustom.intentgate.token_cache.entries", 0) < 2:
        time.sleep(0.2)
        stats = gateway.envoy.stats()
    assert stats.get("wasmcustom.intentgate.token_cache.entries", 0) >= 2
    assert stats.get("wasmcustom.intentgate.token_cache.bytes", 0) >= 2 * 256
