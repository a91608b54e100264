"""intentgate end to end: a real Envoy running dist/intentgate.wasm, in front of a real upstream, on
loopback. Each test asserts what the agent got (status, challenge, body), what the upstream got (or
that it got nothing) and what the audit log says.

The filter contract under test is token-profile.md (§2–§5 checks, §8 responses, §10 audit) and
issue 2. Tokens are minted with PyJWT unless a test says otherwise.
"""

from __future__ import annotations

import copy
import json
import time

import jwt
import pytest

from harness import Call, Envoy, Gateway, load_e2e_policy
from tokens import (
    DROP,
    KID_FOR_ALG,
    TEST_KEYS,
    claims,
    compact,
    hs256_with_secret,
    mint,
    private_key,
    public_key_pem,
    replace_payload,
    tamper_signature,
    token_sha256,
    tool_call_entry,
)
from upstream import Upstream

POLICY = load_e2e_policy()
AUDIENCE = POLICY["audience"]
RESOURCE_METADATA = POLICY["resource_metadata"]
ISSUER = "https://issuer.test"
HMAC_ISSUER = "https://hmac-issuer.test"
AGENT = "spiffe://test/agent/support-bot"
CLIENT = "support-bot"
ORCHESTRATOR = "spiffe://test/agent/orchestrator"
MFA = "urn:test:mfa"
TXN = "task-7f3a"

PREFIX = "x-intentgate-"
AUDIT_HEADER_SUFFIXES = [
    "subject", "client-id", "actor", "txn", "tool", "action", "risk",
    "decision", "reason", "mode", "audit-id", "token-sha256",
]
AUDIT_RECORD_KEYS = {
    "audit_id", "mode", "decision", "enforced", "reason", "rule", "http.request.method", "url.path",
    "gen_ai.tool.name", "action", "risk", "iss", "sub", "client_id", "actor", "act_chain", "txn", "jti",
    "token_sha256", "token_cache", "http.response.status_code", "responder", "duration_ms",
}


# --- tokens and expectations -----------------------------------------------------------------------


def agent_claims(issuer: str = ISSUER, **overrides) -> dict:
    """A valid token's claims for the support agent; add the grant (scope / authorization_details)."""
    overrides.setdefault("client_id", CLIENT)
    return claims(issuer, AUDIENCE, AGENT, **overrides)


def read_claims(**overrides) -> dict:
    return agent_claims(**{"scope": "tickets:read", **overrides})


def read_token(**overrides) -> str:
    return mint(read_claims(**overrides))


# (tool, action, risk) of the catalog in envoy/policies/e2e.json
SEARCH = ("search_tickets", "tickets.search", "read")
ROTATE = ("rotate_secret", "secrets.rotate", "credential")
REFUND = ("refund_payment", "payments.refund", "payment")


def entry(tool_name: str, tool_action: str, risk: str, **overrides) -> dict:
    """An authorization_details entry granting the tool; `overrides` (location, action, identifier,
    privileges) break one field on purpose."""
    fields = {"location": AUDIENCE, "action": tool_action, "identifier": tool_name, "privileges": [risk]}
    fields.update(overrides)
    return tool_call_entry(fields["location"], fields["action"], fields["identifier"], fields["privileges"])


def stepped_up(**overrides) -> dict:
    """Claims of a freshly stepped-up authentication (RFC 9470)."""
    return {"acr": MFA, "auth_time": int(time.time()) - 10, **overrides}


def challenge(error: str | None = None, description: str | None = None, **params: str) -> str:
    """The exact WWW-Authenticate value of token-profile.md §8 for this policy."""
    parts = [f'resource_metadata="{RESOURCE_METADATA}"']
    if error is not None:
        parts += [f'error="{error}"', f'error_description="{description}"']
    parts += [f'{name}="{value}"' for name, value in params.items()]
    return "Bearer " + ", ".join(parts)


def assert_token_not_echoed(call: Call) -> None:
    if call.token:
        assert call.token not in call.response.body.decode(errors="replace")
        assert all(call.token not in value for _, value in call.response.headers)


def assert_denied(call: Call, status: int, reason: str, error: str | None, **challenge_params: str) -> dict:
    """A denial exactly as token-profile.md §8 says, never forwarded, audited. Returns the audit record."""
    response = call.response
    assert response.status == status, (response.status, response.body)
    assert response.header("www-authenticate") == challenge(error, error and reason, **challenge_params)
    assert (response.header("content-type") or "").startswith("application/json")
    assert response.json() == {"error": error or "unauthorized", "reason": reason}
    assert response.header("x-intentgate-reason") == reason
    assert response.header("x-intentgate-audit-id")
    assert call.forwarded is None, "a denied request reached the upstream"
    assert_token_not_echoed(call)
    record = call.audit()
    assert (record["decision"], record["enforced"], record["reason"]) == ("deny", True, reason)
    assert (record["responder"], record["http.response.status_code"]) == ("intentgate", status)
    assert record["mode"] == "enforce"
    return record


def assert_allowed(call: Call, tool: str, action: str, risk: str, reason: str) -> tuple:
    """Forwarded once with the filter's audit headers. Returns (what the upstream saw, audit record)."""
    assert call.response.status == 200, (call.response.status, call.response.body)
    seen = call.forwarded
    assert seen is not None, "an allowed request did not reach the upstream"
    expected = {"tool": tool, "action": action, "risk": risk, "decision": "allow", "reason": reason, "mode": "enforce"}
    assert {k: seen.header(PREFIX + k) for k in expected} == expected
    assert seen.header("authorization") is None
    assert_token_not_echoed(call)
    record = call.audit()
    assert (record["decision"], record["enforced"], record["reason"]) == ("allow", True, reason)
    assert (record["gen_ai.tool.name"], record["action"], record["risk"]) == (tool, action, risk)
    assert (record["responder"], record["http.response.status_code"]) == ("upstream", 200)
    return seen, record


# --- allowed calls ---------------------------------------------------------------------------------


def test_allowed_read_by_scope_carries_every_audit_header(gateway: Gateway):
    token = mint(agent_claims(scope="tickets:read", txn=TXN, act={"sub": ORCHESTRATOR}))
    call = gateway.call("GET", "/api/tickets?q=printer", token)

    seen, record = assert_allowed(call, "search_tickets", "tickets.search", "read", "scope_granted")
    assert seen.method == "GET"
    assert seen.path == "/api/tickets?q=printer"
    audit_headers = seen.headers_with_prefix(PREFIX)
    assert sorted(audit_headers) == sorted(PREFIX + s for s in AUDIT_HEADER_SUFFIXES)
    assert all(len(values) == 1 for values in audit_headers.values()), audit_headers
    assert seen.header(PREFIX + "subject") == AGENT
    assert seen.header(PREFIX + "client-id") == CLIENT
    assert seen.header(PREFIX + "actor") == ORCHESTRATOR
    assert seen.header(PREFIX + "txn") == TXN
    assert seen.header(PREFIX + "token-sha256") == token_sha256(token)[:16]
    assert seen.header(PREFIX + "audit-id") == record["audit_id"]
    # the agent gets the upstream's own answer
    assert call.response.json()["received"]["path"] == "/api/tickets?q=printer"


def test_allowed_read_by_authorization_details(gateway: Gateway):
    token = mint(agent_claims(authorization_details=[entry("get_ticket", "tickets.get", "read")]))
    call = gateway.call("GET", "/api/tickets/T-1", token)
    assert_allowed(call, "get_ticket", "tickets.get", "read", "authorization_details_granted")


def test_allowed_write_with_txn(gateway: Gateway):
    token = mint(agent_claims(txn=TXN, authorization_details=[entry("update_ticket", "tickets.update", "write")]))
    body = json.dumps({"status": "closed"}).encode()
    call = gateway.call("PUT", "/api/tickets/T-1", token, [("content-type", "application/json")], body)

    seen, record = assert_allowed(call, "update_ticket", "tickets.update", "write", "authorization_details_granted")
    assert seen.header(PREFIX + "txn") == TXN
    assert record["txn"] == TXN
    assert seen.body == body


def test_allowed_write_by_scope_with_txn(gateway: Gateway):
    token = mint(agent_claims(scope="tickets:write", txn=TXN))
    call = gateway.call("PATCH", "/api/tickets/T-2", token, body=b"{}")
    assert_allowed(call, "update_ticket", "tickets.update", "write", "scope_granted")


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256", "PS256", "EdDSA", "HS256"])
def test_every_algorithm_allowed_end_to_end(gateway: Gateway, alg: str):
    issuer = HMAC_ISSUER if alg == "HS256" else ISSUER
    token = mint(agent_claims(issuer, scope="tickets:read"), alg=alg)
    assert jwt.get_unverified_header(token)["alg"] == alg
    _, record = assert_allowed(gateway.call("GET", "/api/tickets", token), *SEARCH, "scope_granted")
    assert record["iss"] == issuer


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256", "RS256"])
def test_tokens_minted_by_the_project_signer(gateway: Gateway, project_minter, alg: str):
    payload = agent_claims(scope="tickets:read")
    token = project_minter.mint(payload, alg=alg)
    # an independent verifier accepts the project's token: the signer speaks standard JOSE
    public = private_key(KID_FOR_ALG[alg]).public_key()
    assert jwt.decode(token, public, algorithms=[alg], audience=AUDIENCE)["jti"] == payload["jti"]
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": KID_FOR_ALG[alg], "typ": "at+jwt"}
    assert_allowed(gateway.call("GET", "/api/tickets", token), *SEARCH, "scope_granted")


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_typ_compared_as_a_media_type(gateway: Gateway, typ: str):
    token = mint(agent_claims(scope="tickets:read"), typ=typ)
    assert_allowed(gateway.call("GET", "/api/tickets", token), *SEARCH, "scope_granted")


def test_audience_array_containing_the_gateway(gateway: Gateway):
    token = mint(read_claims(aud=["https://other.test", AUDIENCE]))
    assert_allowed(gateway.call("GET", "/api/tickets", token), *SEARCH, "scope_granted")


# --- the task does not cover the call --------------------------------------------------------------


def test_scope_miss_gets_insufficient_scope_challenge(gateway: Gateway):
    call = gateway.call("PUT", "/api/tickets/T-1", read_token(txn=TXN), body=b"{}")
    record = assert_denied(call, 403, "scope_insufficient", "insufficient_scope", scope="tickets:write")
    # the token itself was fine: the audit says who asked for what
    assert (record["sub"], record["gen_ai.tool.name"], record["risk"]) == (AGENT, "update_ticket", "write")


@pytest.mark.parametrize(
    "broken",
    [
        {"location": "https://other.test/api"},
        {"action": "tickets.search"},
        {"identifier": "search_tickets"},
        {"privileges": ["read"]},
    ],
    ids=["location", "action", "identifier", "privileges"],
)
def test_authorization_details_entry_must_match_every_field(gateway: Gateway, broken: dict):
    grant = entry("update_ticket", "tickets.update", "write", **broken)
    token = mint(agent_claims(txn=TXN, authorization_details=[grant]))
    call = gateway.call("PUT", "/api/tickets/T-1", token, body=b"{}")
    assert_denied(call, 403, "scope_insufficient", "insufficient_scope", scope="tickets:write")


def test_authorization_details_of_another_type_grant_nothing(gateway: Gateway):
    other = dict(entry("get_ticket", "tickets.get", "read"), type="urn:example:something-else")
    call = gateway.call("GET", "/api/tickets/T-1", mint(agent_claims(authorization_details=[other])))
    assert_denied(call, 403, "scope_insufficient", "insufficient_scope", scope="tickets:read")


def test_write_without_txn(gateway: Gateway):
    token = mint(agent_claims(authorization_details=[entry("update_ticket", "tickets.update", "write")]))
    call = gateway.call("PUT", "/api/tickets/T-1", token, body=b"{}")
    assert_denied(call, 403, "txn_required", "insufficient_scope")


def test_unknown_tool(gateway: Gateway):
    call = gateway.call("DELETE", "/api/tickets/T-1", read_token())
    record = assert_denied(call, 403, "tool_unknown", "insufficient_scope")
    assert record["gen_ai.tool.name"] is None


@pytest.mark.parametrize(
    "authentication",
    [
        {},
        {"acr": "urn:test:password", "auth_time": "fresh"},
        {"acr": MFA, "auth_time": "stale"},
        {"acr": MFA},
    ],
    ids=["no-acr", "weak-acr", "stale-auth-time", "no-auth-time"],
)
def test_high_risk_call_without_fresh_acr_gets_step_up_challenge(gateway: Gateway, authentication: dict):
    now = int(time.time())
    times = {"fresh": now - 10, "stale": now - 3600}
    if "auth_time" in authentication:
        authentication = dict(authentication, auth_time=times[authentication["auth_time"]])
    token = mint(agent_claims(txn=TXN, authorization_details=[entry(*ROTATE)], **authentication))
    call = gateway.call("POST", "/api/secrets/db-password/rotate", token, body=b"")
    assert_denied(
        call, 401, "step_up_required", "insufficient_user_authentication", acr_values=MFA, max_age="300"
    )


def test_high_risk_call_with_fresh_acr_is_allowed(gateway: Gateway):
    token = mint(agent_claims(txn=TXN, authorization_details=[entry(*ROTATE)], **stepped_up()))
    call = gateway.call("POST", "/api/secrets/db-password/rotate", token, body=b"")
    assert_allowed(call, *ROTATE, "authorization_details_granted")


def test_payment_needs_step_up_too(gateway: Gateway):
    grant = {"txn": TXN, "authorization_details": [entry(*REFUND)]}
    denied = gateway.call("POST", "/api/payments/refund", mint(agent_claims(**grant)), body=b"{}")
    assert_denied(denied, 401, "step_up_required", "insufficient_user_authentication", acr_values=MFA, max_age="300")
    allowed = gateway.call("POST", "/api/payments/refund", mint(agent_claims(**grant, **stepped_up())), body=b"{}")
    assert_allowed(allowed, *REFUND, "authorization_details_granted")


# --- the token is not acceptable -------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _signed(header_extra: dict | None = None, drop: tuple = (), kid_key: str = "es256-1", **claim_overrides) -> str:
    """ES256 by hand, for headers PyJWT would not write."""
    header = {"alg": "ES256", "kid": "es256-1", "typ": "at+jwt", **(header_extra or {})}
    for member in drop:
        header.pop(member)
    return compact(header, read_claims(**claim_overrides), sign_with=kid_key)


def _hs256_with_public_key(kid: str) -> str:
    """Algorithm confusion: HS256 keyed with the PEM of a public key the gateway trusts under `kid`."""
    return hs256_with_secret({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, read_claims(), public_key_pem(kid))


INVALID_TOKENS = [
    # the issue's list
    ("expired", lambda: read_token(iat=_now() - 600, exp=_now() - 60), "token_expired"),
    ("nbf-in-future", lambda: read_token(nbf=_now() + 600, exp=_now() + 800), "token_not_yet_valid"),
    ("wrong-aud", lambda: mint(read_claims(aud="https://other.test/api")), "audience_mismatch"),
    ("wrong-iss", lambda: mint(agent_claims("https://evil.test", scope="tickets:read")), "issuer_unknown"),
    ("alg-none", lambda: compact({"alg": "none", "kid": "es256-1", "typ": "at+jwt"}, read_claims()), "alg_not_allowed"),
    ("hs256-with-rsa-public-key-as-secret", lambda: _hs256_with_public_key("rsa-1"), "alg_not_allowed"),
    ("hs256-with-ec-public-key-as-secret", lambda: _hs256_with_public_key("es256-1"), "alg_not_allowed"),
    ("tampered-signature", lambda: tamper_signature(read_token()), "signature_invalid"),
    ("tampered-claims", lambda: replace_payload(read_token(), read_claims(scope="tickets:write")), "signature_invalid"),
    ("unknown-kid", lambda: mint(agent_claims(scope="tickets:read"), kid="es256-rotated"), "kid_unknown"),
    ("lifetime-over-max-ttl", lambda: read_token(iat=_now(), exp=_now() + 901), "lifetime_too_long"),
    # every other reason code of token-profile.md §2–§3
    ("not-three-segments", lambda: "abc.def", "token_malformed"),
    ("bad-characters", lambda: read_token() + "!", "token_malformed"),
    ("header-not-json", lambda: "bm90anNvbg.e30.AAAA", "token_malformed"),
    ("too-large", lambda: "a" * 9000, "token_too_large"),
    ("es256-at-hmac-issuer", lambda: mint(agent_claims(HMAC_ISSUER, scope="tickets:read")), "alg_not_allowed"),
    ("alg-not-pinned-by-key", lambda: _signed({"alg": "ES384"}, kid_key="es384-1"), "alg_key_mismatch"),
    ("kid-missing", lambda: _signed(drop=("kid",)), "kid_missing"),
    ("crit", lambda: _signed({"crit": ["exp"], "exp": 1}), "crit_unsupported"),
    ("typ-jwt", lambda: mint(agent_claims(scope="tickets:read"), typ="JWT"), "typ_invalid"),
    ("typ-missing", lambda: mint(agent_claims(scope="tickets:read"), typ=DROP), "typ_invalid"),
    ("exp-missing", lambda: read_token(exp=DROP), "exp_missing"),
    ("iat-missing", lambda: read_token(iat=DROP), "iat_missing"),
    ("iat-in-future", lambda: read_token(iat=_now() + 600, exp=_now() + 800), "iat_in_future"),
    ("jti-missing", lambda: read_token(jti=DROP), "jti_missing"),
    ("jti-too-long", lambda: read_token(jti="j" * 300), "jti_invalid"),
    ("sub-missing", lambda: read_token(sub=DROP), "sub_missing"),
    ("subject-outside-prefix", lambda: read_token(sub="spiffe://elsewhere/agent/x"), "subject_not_allowed"),
    ("client-not-allowed", lambda: read_token(client_id="rogue-bot"), "client_not_allowed"),
    ("exp-not-a-number", lambda: read_token(exp="soon"), "claims_invalid"),
    ("act-without-sub", lambda: read_token(act={"client_id": "x"}), "claims_invalid"),
]


@pytest.mark.parametrize("make_token, reason", [pytest.param(f, r, id=i) for i, f, r in INVALID_TOKENS])
def test_invalid_token_is_rejected(gateway: Gateway, make_token, reason: str):
    token = make_token()
    call = gateway.call("GET", "/api/tickets", token)
    record = assert_denied(call, 401, reason, "invalid_token")
    # nothing about an unverified token is trusted into the audit, but its hash is there
    assert (record["sub"], record["iss"], record["jti"]) == (None, None, None)
    assert record["token_sha256"] == token_sha256(token)


def test_no_token_gets_bare_challenge(gateway: Gateway):
    call = gateway.call("GET", "/api/tickets")
    assert call.response.header("www-authenticate") == f'Bearer resource_metadata="{RESOURCE_METADATA}"'
    record = assert_denied(call, 401, "token_missing", None)
    assert record["token_sha256"] is None


def test_other_scheme_is_not_a_credential(gateway: Gateway):
    call = gateway.call("GET", "/api/tickets", headers=[("authorization", "Basic YWdlbnQ6c2VjcmV0")])
    assert_denied(call, 401, "token_missing", None)


def test_two_authorization_headers_are_refused(gateway: Gateway):
    # Envoy joins repeated Authorization headers into one value ("Bearer a,Bearer b") before any
    # filter runs; a comma is never part of a bearer credential, so the filter refuses it as two.
    token = read_token()
    headers = [("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")]
    call = gateway.call("GET", "/api/tickets", headers=headers)
    assert_denied(call, 400, "authorization_invalid", "invalid_request")


# --- the request path ------------------------------------------------------------------------------


def test_path_is_normalised_before_classification_and_forwarding(gateway: Gateway):
    call = gateway.call("GET", "/api//tickets/./T-9", read_token())
    seen, record = assert_allowed(call, "get_ticket", "tickets.get", "read", "scope_granted")
    assert seen.path == "/api/tickets/T-9"
    assert record["url.path"] == "/api/tickets/T-9"
    assert record["rule"] == "tools[1].match[0]"


def test_query_survives_normalisation_untouched(gateway: Gateway):
    call = gateway.call("GET", "/api//tickets?q=a%2Fb&page=2", read_token())
    seen, _ = assert_allowed(call, "search_tickets", "tickets.search", "read", "scope_granted")
    assert seen.path == "/api/tickets?q=a%2Fb&page=2"


def test_dot_segments_cannot_smuggle_a_call_past_the_catalog(gateway: Gateway):
    # looks like a ticket path, is a secret rotation once resolved: it must be judged as one
    call = gateway.call("POST", "/api/tickets/T-1/../../secrets/db/rotate", read_token(), body=b"")
    record = assert_denied(call, 403, "scope_insufficient", "insufficient_scope", scope="secrets:rotate")
    assert (record["gen_ai.tool.name"], record["url.path"]) == ("rotate_secret", "/api/secrets/db/rotate")


@pytest.mark.parametrize("target", [
    "/api/tickets/a%2Fb", "/api/tickets/a%2fb", "/api/tickets/a%5Cb", "/api/tickets/a%5cb",
])
def test_encoded_separator_in_path_is_refused(gateway: Gateway, target: str):
    call = gateway.call("GET", target, read_token())
    assert_denied(call, 400, "path_invalid", "invalid_request")


def test_encoded_nul_in_path_never_reaches_the_upstream(gateway: Gateway):
    # Envoy's own path normalisation refuses %00 (a bare 400) before the filter runs; the filter's
    # check for it is covered by the core's unit tests.
    call = gateway.call("GET", "/api/tickets/a%00b", read_token())
    assert call.response.status == 400
    assert call.forwarded is None


# --- headers in and out ----------------------------------------------------------------------------


def test_spoofed_audit_headers_are_removed_before_the_upstream(gateway: Gateway):
    spoofed = [
        ("x-intentgate-decision", "allow"),
        ("x-intentgate-subject", "spiffe://test/agent/admin"),
        ("X-IntentGate-Risk", "none"),
        ("x-intentgate-reason", "scope_granted"),
        # the token has no txn and no act: the filter sets no such header, so only removal helps
        ("x-intentgate-txn", "task-spoofed"),
        ("x-intentgate-actor", "spiffe://test/agent/admin"),
        # not one of the filter's headers, but it has the prefix: an agent must not invent audit facts
        ("x-intentgate-approved-by", "security-team"),
    ]
    call = gateway.call("GET", "/api/tickets/T-3", read_token(), headers=spoofed + [("x-request-note", "kept")])
    seen = call.forwarded
    assert seen is not None
    for name in ("txn", "actor", "approved-by"):
        assert seen.header_values(PREFIX + name) == [], name
    seen, _ = assert_allowed(call, "get_ticket", "tickets.get", "read", "scope_granted")
    assert seen.header(PREFIX + "subject") == AGENT
    assert seen.header(PREFIX + "risk") == "read"
    assert all(len(v) == 1 for v in seen.headers_with_prefix(PREFIX).values())
    assert seen.header("x-request-note") == "kept"


def test_spoofed_headers_cannot_turn_a_dry_run_denial_into_an_allow(dry_run_gateway: Gateway):
    # dry_run forwards the denial, so the upstream view shows what a spoofer would achieve
    spoofed = [
        ("x-intentgate-decision", "allow"),
        ("x-intentgate-reason", "scope_granted"),
        ("x-intentgate-approved-by", "security-team"),
    ]
    call = dry_run_gateway.call("PUT", "/api/tickets/T-1", read_token(txn=TXN), headers=spoofed, body=b"{}")
    seen = call.forwarded
    assert seen is not None
    assert seen.header_values(PREFIX + "decision") == ["deny"]
    assert seen.header_values(PREFIX + "reason") == ["scope_insufficient"]
    assert seen.header_values(PREFIX + "approved-by") == []


def test_token_is_not_forwarded(gateway: Gateway):
    call = gateway.call("GET", "/api/tickets", read_token(), headers=[("x-request-note", "kept")])
    seen, _ = assert_allowed(call, "search_tickets", "tickets.search", "read", "scope_granted")
    assert seen.header("authorization") is None
    assert call.token not in json.dumps(seen.headers)
    assert seen.header("x-request-note") == "kept"


def test_custom_prefix_and_forwarded_authorization_when_configured(custom_audit_gateway: Gateway):
    token = read_token()
    spoofed = [("x-gw-decision", "allow"), ("x-gw-subject", "spiffe://test/agent/admin"), ("x-gw-txn", "task-spoofed")]
    headers = spoofed + [("x-intentgate-decision", "allow")]
    call = custom_audit_gateway.call("GET", "/api/tickets", token, headers=headers)
    assert call.response.status == 200
    seen = call.forwarded
    assert seen is not None
    assert seen.header("authorization") == f"Bearer {token}"
    # all of the filter's headers but actor and txn: this token has neither
    expected = sorted("x-gw-" + s for s in AUDIT_HEADER_SUFFIXES if s not in ("actor", "txn"))
    assert sorted(seen.headers_with_prefix("x-gw-")) == expected
    assert seen.header("x-gw-decision") == "allow"
    assert seen.header("x-gw-subject") == AGENT
    # the default prefix means nothing to this gateway: it is just another header
    assert seen.header("x-intentgate-decision") == "allow"
    record = custom_audit_gateway.envoy.audit_record(seen.header("x-gw-audit-id"))
    assert record["decision"] == "allow"


# --- the audit record ------------------------------------------------------------------------------


def test_audit_record_of_an_allowed_call(gateway: Gateway):
    act = {"sub": ORCHESTRATOR, "act": {"sub": "spiffe://test/agent/planner"}}
    token = mint(read_claims(txn=TXN, act=act))
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    # the upstream answers 207 here, so the audit must carry the upstream's status, not a constant
    call = gateway.call("GET", "/api/tickets?status=207", token)
    assert call.response.status == 207
    record = call.audit()
    assert AUDIT_RECORD_KEYS <= set(record), AUDIT_RECORD_KEYS - set(record)
    expected = {
        "mode": "enforce", "decision": "allow", "enforced": True, "reason": "scope_granted",
        "rule": "tools[0].match[0]", "http.request.method": "GET", "url.path": "/api/tickets",
        "gen_ai.tool.name": "search_tickets", "action": "tickets.search", "risk": "read",
        "iss": ISSUER, "sub": AGENT, "client_id": CLIENT, "actor": ORCHESTRATOR,
        "act_chain": [ORCHESTRATOR, "spiffe://test/agent/planner"], "txn": TXN, "jti": jti,
        "token_sha256": token_sha256(token), "token_cache": "miss",
        "http.response.status_code": 207, "responder": "upstream",
    }
    assert {k: record[k] for k in expected} == expected
    assert isinstance(record["duration_ms"], int) and 0 <= record["duration_ms"] < 10_000
    assert record["audit_id"] == call.forwarded.header(PREFIX + "audit-id")


def test_audit_record_of_a_denied_call(gateway: Gateway):
    call = gateway.call("POST", "/api/payments/refund", read_token(txn=TXN), body=b"{}")
    record = assert_denied(call, 403, "scope_insufficient", "insufficient_scope", scope="payments:refund")
    assert (record["gen_ai.tool.name"], record["risk"]) == ("refund_payment", "payment")
    assert record["rule"] == "tools[4].match[0]"
    assert (record["sub"], record["txn"], record["token_cache"]) == (AGENT, TXN, "miss")
    assert isinstance(record["duration_ms"], int)


def test_audit_ids_are_unique(gateway: Gateway):
    token = read_token()
    ids = {gateway.call("GET", "/api/tickets", token).audit_id for _ in range(3)}
    ids |= {gateway.call("GET", "/api/tickets").audit_id for _ in range(3)}
    assert len(ids) == 6 and None not in ids


def test_verified_tokens_are_cached_and_failures_are_not(gateway: Gateway):
    token = read_token()
    first, second = (gateway.call("GET", "/api/tickets", token) for _ in range(2))
    assert (first.audit()["token_cache"], second.audit()["token_cache"]) == ("miss", "hit")
    # a cached token is still judged per call: the same token, a tool it does not grant
    third = gateway.call("PUT", "/api/tickets/T-1", token, body=b"{}")
    assert third.audit()["token_cache"] == "hit"
    assert third.response.status == 403

    bad = tamper_signature(read_token())
    failures = [gateway.call("GET", "/api/tickets", bad).audit() for _ in range(2)]
    assert [(r["reason"], r["token_cache"]) for r in failures] == [("signature_invalid", "miss")] * 2


def test_cached_token_still_expires(gateway: Gateway):
    now = _now()
    token = read_token(iat=now - 60, exp=now - 28)  # valid for 2 more seconds thanks to the 30 s skew
    first = gateway.call("GET", "/api/tickets", token)
    assert first.response.status == 200
    assert gateway.call("GET", "/api/tickets", token).audit()["token_cache"] == "hit"
    time.sleep(3)
    assert_denied(gateway.call("GET", "/api/tickets", token), 401, "token_expired", "invalid_token")


# --- dry_run -----------------------------------------------------------------------------------------


def test_dry_run_lets_a_denied_call_through_and_audits_the_would_be_decision(dry_run_gateway: Gateway):
    call = dry_run_gateway.call("PUT", "/api/tickets/T-1", read_token(txn=TXN), body=b"{}")
    assert call.response.status == 200
    assert call.response.header("www-authenticate") is None
    seen = call.forwarded
    assert seen is not None, "dry_run blocked the call"
    assert seen.header(PREFIX + "decision") == "deny"
    assert seen.header(PREFIX + "mode") == "dry_run"
    assert seen.header(PREFIX + "reason") == "scope_insufficient"
    assert seen.header("authorization") is None
    record = call.audit()
    expected = {
        "mode": "dry_run", "decision": "deny", "enforced": False, "reason": "scope_insufficient",
        "responder": "upstream", "http.response.status_code": 200, "gen_ai.tool.name": "update_ticket",
    }
    assert {k: record[k] for k in expected} == expected


def test_dry_run_lets_an_invalid_token_through_too(dry_run_gateway: Gateway):
    call = dry_run_gateway.call("GET", "/api/tickets", read_token(iat=_now() - 600, exp=_now() - 60))
    assert call.response.status == 200
    assert call.forwarded.header(PREFIX + "reason") == "token_expired"
    assert (call.audit()["decision"], call.audit()["enforced"]) == ("deny", False)


def test_dry_run_allowed_call_is_an_enforced_allow(dry_run_gateway: Gateway):
    call = dry_run_gateway.call("GET", "/api/tickets", read_token())
    record = call.audit()
    assert (record["mode"], record["decision"], record["enforced"]) == ("dry_run", "allow", True)
    assert call.forwarded.header(PREFIX + "decision") == "allow"


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_decisions_reasons_and_cache_hits(gateway: Gateway):
    names = [
        "wasmcustom.intentgate.decision.allow",
        "wasmcustom.intentgate.decision.deny",
        "wasmcustom.intentgate.reason.scope_granted",
        "wasmcustom.intentgate.reason.scope_insufficient",
        "wasmcustom.intentgate.reason.token_missing",
        "wasmcustom.intentgate.token_cache.hit",
    ]
    before = gateway.envoy.stats()
    assert set(names) <= set(before), sorted(set(names) - set(before))
    token = read_token()
    gateway.call("GET", "/api/tickets", token)
    gateway.call("GET", "/api/tickets/T-1", token)  # cache hit
    gateway.call("PUT", "/api/tickets/T-1", token, body=b"{}")  # cache hit, scope miss
    gateway.call("GET", "/api/tickets")  # no token
    after = gateway.envoy.stats()
    deltas = {name: after[name] - before[name] for name in names}
    assert deltas == {
        "wasmcustom.intentgate.decision.allow": 2,
        "wasmcustom.intentgate.decision.deny": 2,
        "wasmcustom.intentgate.reason.scope_granted": 2,
        "wasmcustom.intentgate.reason.scope_insufficient": 1,
        "wasmcustom.intentgate.reason.token_missing": 1,
        "wasmcustom.intentgate.token_cache.hit": 2,
    }


# --- configuration refused -------------------------------------------------------------------------


def _mutated(change) -> dict:
    policy = copy.deepcopy(POLICY)
    change(policy)
    return policy


INVALID_CONFIGS = [
    ("key-without-kid", lambda p: p["issuers"][0]["jwks"]["keys"][0].pop("kid"), "issuers[0].jwks.keys[0]", "kid"),
    (
        "private-key-configured",
        lambda p: p["issuers"][0]["jwks"]["keys"][0].update(d=TEST_KEYS["es256-1"]["d"]),
        "issuers[0].jwks.keys[0]",
        "private",
    ),
    ("hmac-with-public-keys", lambda p: p["issuers"][0]["algorithms"].append("HS256"), "issuers[0].algorithms", "HS256"),
    ("alg-none-allowed", lambda p: p["issuers"][1].update(algorithms=["none"]), "issuers[1].algorithms[0]", "none"),
    ("no-issuers", lambda p: p.update(issuers=[]), "issuers", "at least one issuer"),
    ("duplicate-tool", lambda p: p["tools"][1].update(name="search_tickets"), "tools[1].name", "duplicate"),
    ("unknown-risk", lambda p: p["tools"][0].update(risk="dangerous"), "tools[0].risk", "dangerous"),
    ("unknown-field", lambda p: p["issuers"][0].update(max_ttl=60), "issuers[0].max_ttl", "unknown field"),
    ("no-audience", lambda p: p.pop("audience"), "(root)", "audience"),
]


@pytest.mark.parametrize("change, field, detail", [pytest.param(c, f, d, id=i) for i, c, f, d in INVALID_CONFIGS])
def test_invalid_config_is_refused_by_envoy(tmp_path, change, field: str, detail: str):
    with Upstream() as upstream:
        envoy = Envoy.for_policy(_mutated(change), upstream.port, tmp_path)
        try:
            envoy.start(wait_ready=False)
            state = envoy.wait_ready_or_exit(timeout_s=20)
            log = envoy.log_text()
        finally:
            envoy.stop()
        assert state == "exited", f"Envoy did not refuse the config ({state}); log tail:\n{envoy.log_tail()}"
        assert envoy.returncode != 0
        lines = [line for line in log.splitlines() if f"intentgate: invalid config at {field}" in line]
        assert lines, f"no 'invalid config at {field}' line; log tail:\n{envoy.log_tail()}"
        assert any(detail in line for line in lines), lines
        assert upstream.received() == []


def test_config_that_is_not_json_is_refused(tmp_path):
    with Upstream() as upstream:
        envoy = Envoy.for_policy("{not json", upstream.port, tmp_path)
        try:
            envoy.start(wait_ready=False)
            state = envoy.wait_ready_or_exit(timeout_s=20)
        finally:
            envoy.stop()
        assert state == "exited" and envoy.returncode != 0
        assert "intentgate: invalid config at" in envoy.log_text()


# --- last: nothing above leaked a token into the log -----------------------------------------------


def _leaked(token: str, log: str) -> bool:
    """The token, or its signature (long and random, so a hit means the token was logged)."""
    signature = token.rsplit(".", 1)[-1]
    return token in log or (token.count(".") == 2 and len(signature) > 20 and signature in log)


def test_raw_tokens_never_appear_in_the_log(gateway: Gateway, dry_run_gateway: Gateway, custom_audit_gateway: Gateway):
    for gw in (gateway, dry_run_gateway, custom_audit_gateway):
        gw.call("GET", "/api/tickets", read_token())  # at least one token per gateway
        time.sleep(0.1)  # let the last lines reach the files
        log = gw.envoy.log_text() + (gw.envoy.workdir / "access.log").read_text()
        assert gw.tokens_sent
        leaked = [t for t in gw.tokens_sent if _leaked(t, log)]
        assert leaked == [], f"{len(leaked)} of {len(gw.tokens_sent)} tokens found in the Envoy logs"
