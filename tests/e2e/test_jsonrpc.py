"""JSON-RPC end to end (issue 3): MCP and A2A calls through a real Envoy running dist/intentgate.wasm.

* A real MCP server (official Python SDK, tests/e2e/mcp_tool_server.py) behind `/mcp`, in both
  response modes (application/json and text/event-stream), and a real MCP client from the same SDK
  (tests/e2e/mcp_agent.py) in both of its flows: `legacy` (initialize handshake, MCP 2025-11-25) and
  `auto` (server/discover with the Mcp-Method / Mcp-Name headers of MCP 2026-07-28).
* Hostile bodies sent raw (HTTP/1.1 and HTTP/2): each gets its status, JSON-RPC error and `id`, and the
  MCP server never receives it.
* A2A calls allowed and denied, against the recording upstream.
* What the upstream and the access log see once intentgate has read a body: the filter sets its audit
  headers after reading the body (this needs `allow_on_headers_stop_iteration: true`, see
  envoy/e2e.yaml), and the access log prints them from the request headers.

The filter contract is token-profile.md §8 (statuses, challenges), §9 (MCP/A2A on the wire) and §10
(audit record). Tokens are minted with PyJWT.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
import uuid
from typing import Any

import jwt
import pytest

from conftest import McpGateway
from h2client import h2_request
from harness import (
    CALL_ID_HEADER,
    DEMO_CONFIG,
    E2E_TEMPLATE,
    Call,
    Envoy,
    Gateway,
    HttpResponse,
    http_request,
    load_e2e_policy,
    wait_until,
)
from mcp_agent import SessionResult, run_session_sync
from mcp_tool_server import ToolServerProcess, parse_sse
from tokens import claims, mint, token_sha256, tool_call_entry
from upstream import Upstream

POLICY = load_e2e_policy()
AUDIENCE = POLICY["audience"]
RESOURCE_METADATA = POLICY["resource_metadata"]
ISSUER = "https://issuer.test"
AGENT = "spiffe://test/agent/support-bot"
CLIENT = "support-bot"
MFA = "urn:test:mfa"
TXN = "task-7f3a"
PREFIX = "x-intentgate-"

# What the MCP server offers (mcp_tool_server.py); the catalog covers each as mcp_<name>.
SERVER_TOOLS = ["search_tickets", "update_ticket", "refund_payment", "rotate_secret"]
CLIENT_MODES = ["legacy", "auto"]
PROTOCOL_VERSION = {"legacy": "2025-11-25", "auto": "2026-07-28"}
JSON = (("content-type", "application/json"), ("accept", "application/json, text/event-stream"))


# --- tokens ----------------------------------------------------------------------------------------


def token(**grant: Any) -> str:
    return mint(claims(ISSUER, AUDIENCE, AGENT, client_id=CLIENT, **grant))


def read_token() -> str:
    """May search tickets (scope tickets:read), nothing else."""
    return token(scope="tickets:read")


def refund_entry(max_amount: float = 50, ticket_ids: tuple[str, ...] = ("T-1001", "T-1003")) -> dict:
    """The task's approval to refund: up to `max_amount`, for these tickets only."""
    return tool_call_entry(
        AUDIENCE, "tools/call", "refund_payment", ["payment"],
        limits={"amount": {"max": max_amount}, "ticket_ids": list(ticket_ids)},
    )


def refund_token(stepped_up: bool = True, **overrides: Any) -> str:
    """Search by scope, plus one approved refund task (payment: needs txn and a fresh step-up)."""
    grant: dict[str, Any] = {"scope": "tickets:read", "txn": TXN, "authorization_details": [refund_entry()]}
    if stepped_up:
        grant.update(acr=MFA, auth_time=int(time.time()) - 10)
    grant.update(overrides)
    return token(**grant)


def jti_of(tok: str) -> str:
    return jwt.decode(tok, options={"verify_signature": False})["jti"]


# --- observing the MCP server, Envoy's audit log and access log ----------------------------------------


def header_values(record: dict, name: str) -> list[str]:
    return [v for n, v in record["headers"] if n == name.lower()]


def record_header(record: dict, name: str) -> str | None:
    values = header_values(record, name)
    assert len(values) <= 1, f"{name} arrived {len(values)} times: {values}"
    return values[0] if values else None


def server_records(server: ToolServerProcess, call_id: str) -> list[dict]:
    """What the MCP server received with this call id (one record per HTTP request)."""
    return [r for r in server.records() if call_id in header_values(r, CALL_ID_HEADER)]


def server_calls(server: ToolServerProcess, call_id: str, tool: str | None = None) -> list[dict]:
    """The records of tools/call requests (of `tool`) the MCP server received with this call id."""
    return [
        r for r in server_records(server, call_id)
        if any(m.get("method") == "tools/call" and (tool is None or m.get("name") == tool) for m in r["jsonrpc"])
    ]


def wait_server_call(server: ToolServerProcess, call_id: str, tool: str, count: int = 1) -> list[dict]:
    """A record is written when the server has sent its response, which can be just after the client
    has it: poll."""
    found = wait_until(lambda: len(server_calls(server, call_id, tool)) >= count and server_calls(server, call_id, tool), 5)
    assert found, f"the MCP server did not record {count} tools/call of {tool}"
    return found


def mcp_cluster_requests(envoy: Envoy) -> int:
    """Requests Envoy sent to the MCP server so far (its cluster's upstream_rq_total)."""
    response = http_request(envoy.admin_port, "GET", "/stats?filter=^cluster%5C.mcp%5C.upstream_rq_total$")
    match = re.search(r"cluster\.mcp\.upstream_rq_total: (\d+)", response.body.decode())
    return int(match.group(1)) if match else 0


def audits_for(envoy: Envoy, tok: str, count: int, method: str | None = None, timeout_s: float = 5) -> list[dict]:
    """The audit records of the requests made with `tok` (found by its jti; of the MCP `method`, when
    given), once there are `count`."""
    jti = jti_of(tok)

    def find() -> list[dict] | None:
        found = [
            r for r in envoy.audit_records()
            if r.get("jti") == jti and (method is None or r.get("mcp.method.name") == method)
        ]
        return found if len(found) >= count else None

    found = wait_until(find, timeout_s)
    assert found, f"expected {count} audit records for jti {jti}"
    return found


def access_log(gateway: Gateway) -> list[dict]:
    path = gateway.envoy.workdir / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def access_log_line(gateway: Gateway, **match: Any) -> dict:
    def find() -> list[dict]:
        return [e for e in access_log(gateway) if all(e.get(k) == v for k, v in match.items())]

    found = wait_until(find, 5) or []
    assert len(found) == 1, f"expected one access log line with {match}, found {len(found)}"
    return found[0]


def session(
    mcp: McpGateway, tok: str | None, calls=(), mode: str = "legacy", **kwargs: Any
) -> tuple[SessionResult, str]:
    """One MCP client session through Envoy; every request of it carries one call id."""
    call_id = uuid.uuid4().hex
    if tok is not None:
        mcp.gateway.tokens_sent.append(tok)
    result = run_session_sync(mcp.url, tok, calls, mode=mode, extra_headers={CALL_ID_HEADER: call_id}, **kwargs)
    return result, call_id


def server_listing(server: ToolServerProcess, call_id: str) -> list[dict]:
    """The tools the MCP server itself answered tools/list with (before intentgate filtered them)."""

    def listing() -> list[dict]:
        return [r for r in server_records(server, call_id) if any(m.get("method") == "tools/list" for m in r["jsonrpc"])]

    records = wait_until(listing, 5)
    assert records, "the MCP server recorded no tools/list"
    body = records[0]["response"]["body"]
    if records[0]["response"]["content_type"].startswith("text/event-stream"):
        messages = [json.loads(e["data"]) for e in parse_sse(body) if e["data"]]
    else:
        messages = [json.loads(body)]
    return next(m["result"]["tools"] for m in messages if "result" in m)


# --- expectations of a JSON-RPC denial (token-profile.md §8) ------------------------------------------

ERROR_WORD = {400: "invalid_request", 403: "insufficient_scope", 413: "request_too_large", 415: "unsupported_media_type"}


def expected_challenge(status: int, reason: str) -> str | None:
    if status in (413, 415):
        return None
    if status == 401 and reason == "token_missing":
        return f'Bearer resource_metadata="{RESOURCE_METADATA}"'
    error = {400: "invalid_request", 403: "insufficient_scope", 401: "invalid_token"}[status]
    return f'Bearer resource_metadata="{RESOURCE_METADATA}", error="{error}", error_description="{reason}"'


def assert_rpc_denial(response, status: int, code: int, reason: str, rpc_id: Any, **data: str) -> None:
    """Status, challenge, content type and the exact JSON-RPC error body (the request's id, the reason,
    and nothing from the request's values)."""
    assert response.status == status, (response.status, response.body)
    assert response.header("www-authenticate") == expected_challenge(status, reason)
    assert (response.header("content-type") or "").startswith("application/json")
    assert response.header("x-intentgate-reason") == reason
    assert response.header("x-intentgate-audit-id")
    assert json.loads(response.body) == {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "error": {"code": code, "message": ERROR_WORD.get(status, "unauthorized"), "data": {"reason": reason, **data}},
    }


def post_mcp(mcp: McpGateway, body: bytes, tok: str | None = None, headers=JSON) -> Call:
    """A raw POST /mcp (HTTP/1.1, content-length) through Envoy."""
    return mcp.gateway.call("POST", "/mcp", tok, headers, body)


def rpc(method: str, params: dict | None = None, rpc_id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def tool_call(name: str, arguments: dict, rpc_id: Any = 1) -> bytes:
    return rpc("tools/call", {"name": name, "arguments": arguments}, rpc_id)


# === a real MCP client through Envoy =================================================================


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_allowed_call_returns_the_tools_real_result(mcp: McpGateway, client_mode: str):
    tok = read_token()
    result, call_id = session(mcp, tok, [("search_tickets", {"query": "refund"})], mode=client_mode)
    assert result.connected, result.connect_error
    assert result.protocol_version == PROTOCOL_VERSION[client_mode]
    call = result.call("search_tickets")
    assert call.ok and call.error is None and call.http_status == 200, call
    # the server's own answer: the two tickets about refunds, from its in-memory desk
    found = [t["id"] for t in call.structured["result"]]
    assert found == ["T-1001", "T-1004"]
    assert "Refund request for double charge" in call.text

    (received,) = wait_server_call(mcp.server, call_id, "search_tickets")
    assert received["jsonrpc"][0]["arguments"] == {"query": "refund"}
    # audit headers set after the body was read; the token was not passed through
    assert record_header(received, PREFIX + "tool") == "mcp_search_tickets"
    assert record_header(received, PREFIX + "decision") == "allow"
    assert record_header(received, "authorization") is None
    if client_mode == "auto":
        # MCP 2026-07-28: the client mirrors the body in headers; they matched, and went through
        assert record_header(received, "mcp-method") == "tools/call"
        assert record_header(received, "mcp-name") == "search_tickets"
        assert record_header(received, "mcp-protocol-version") == "2026-07-28"
        assert [r["jsonrpc"][0]["method"] for r in server_records(mcp.server, call_id)][0] == "server/discover"
    else:
        assert [r["jsonrpc"][0]["method"] for r in server_records(mcp.server, call_id)][:2] == [
            "initialize", "notifications/initialized",
        ]


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_call_outside_the_task_gets_the_json_rpc_error(mcp: McpGateway, client_mode: str):
    tok = read_token()
    calls = [("rotate_secret", {"name": "db-password"}), ("search_tickets", {"query": "vat"})]
    result, call_id = session(mcp, tok, calls, mode=client_mode)
    denied = result.call("rotate_secret")
    assert not denied.ok and denied.error is not None
    error = denied.error
    assert (error.http_status, error.code, error.reason, error.synthesized) == (403, -32003, "scope_insufficient", False)
    assert error.data == {"reason": "scope_insufficient"}
    assert error.method == "tools/call"
    # the session goes on: the next call in scope works
    assert result.call("search_tickets").ok
    wait_server_call(mcp.server, call_id, "search_tickets")
    assert server_calls(mcp.server, call_id, "rotate_secret") == []


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_unknown_tool_gets_the_same_error_as_a_tool_outside_the_task(mcp: McpGateway, client_mode: str):
    tok = read_token()
    calls = [("delete_everything", {}), ("rotate_secret", {"name": "db-password"})]
    result, call_id = session(mcp, tok, calls, mode=client_mode, list_tools=False, validate_output=False)
    unknown, outside = result.call("delete_everything").error, result.call("rotate_secret").error
    assert unknown is not None and outside is not None
    assert (unknown.http_status, unknown.code, unknown.message, unknown.data) == (
        outside.http_status, outside.code, outside.message, outside.data,
    ) == (403, -32003, "insufficient_scope", {"reason": "scope_insufficient"})
    assert server_calls(mcp.server, call_id) == []


TASKS = {
    # token grant -> the tools an agent holding it should see
    "read": ({"scope": "tickets:read"}, ["search_tickets"]),
    "refund task": (
        {"scope": "tickets:read", "txn": TXN, "authorization_details": [refund_entry()]},
        ["search_tickets", "refund_payment"],
    ),
    "ops": ({"scope": "tickets:write secrets:rotate", "txn": TXN}, ["update_ticket", "rotate_secret"]),
    "nothing": ({"scope": "billing:read"}, []),
}


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
@pytest.mark.parametrize("task", list(TASKS))
def test_tools_list_shows_only_the_tools_the_task_covers(mcp: McpGateway, client_mode: str, task: str):
    grant, visible = TASKS[task]
    tok = token(**grant)
    result, call_id = session(mcp, tok, mode=client_mode)
    assert result.list_error is None, result.list_error
    assert result.tools == visible
    # the server offered all four; the entries the agent did get are the server's own, unchanged
    offered = server_listing(mcp.server, call_id)
    assert [t["name"] for t in offered] == SERVER_TOOLS
    kept = [t for t in offered if t["name"] in visible]
    assert [t["name"] for t in result.tools_raw] == [t["name"] for t in kept]
    for seen, original in zip(result.tools_raw, kept):
        assert seen["description"] == original["description"]
        assert seen["inputSchema"] == original["inputSchema"]
    (record,) = audits_for(mcp.envoy, tok, 1, method="tools/list")
    assert record["tools_list_removed"] == len(SERVER_TOOLS) - len(visible)


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_argument_over_the_tasks_limit_is_refused(mcp: McpGateway, client_mode: str):
    tok = refund_token()
    calls = [
        ("refund_payment", {"ticket_id": "T-1001", "amount": 80, "currency": "EUR"}),  # over the approved 50
        ("refund_payment", {"ticket_id": "T-1002", "amount": 10, "currency": "EUR"}),  # ticket not approved
        ("refund_payment", {"ticket_id": "T-1003", "amount": 10, "currency": "GBP"}),  # currency not allowed
        ("refund_payment", {"ticket_id": "T-1003", "amount": 10}),  # currency missing
        ("refund_payment", {"ticket_id": "T-1001", "amount": 40, "currency": "EUR"}),  # within the task
    ]
    result, call_id = session(mcp, tok, calls, mode=client_mode)
    assert result.tools == ["search_tickets", "refund_payment"]
    outcomes = result.calls
    expected = [
        ("argument_constraint_failed", "amount_within_task"),
        ("argument_constraint_failed", "approved_ticket"),
        ("argument_constraint_failed", "currency_allowed"),
        ("argument_missing", "currency_allowed"),
    ]
    for outcome, (reason, constraint) in zip(outcomes, expected):
        assert outcome.error is not None, outcome
        assert (outcome.error.http_status, outcome.error.code) == (403, -32003)
        # the reason and the constraint's id, never the values
        assert outcome.error.data == {"reason": reason, "constraint": constraint}
    allowed = outcomes[-1]
    assert allowed.ok, allowed
    assert allowed.structured["status"] == "refunded"
    assert allowed.structured["message"] == "Refunded 40.00 EUR to alice@example.com for T-1001"

    # the MCP server received the one refund within the task, and none of the others
    (received,) = wait_server_call(mcp.server, call_id, "refund_payment")
    assert received["jsonrpc"][0]["arguments"] == {"ticket_id": "T-1001", "amount": 40, "currency": "EUR"}
    assert record_header(received, PREFIX + "txn") == TXN
    assert record_header(received, PREFIX + "reason") == "authorization_details_granted"
    assert len(server_calls(mcp.server, call_id, "refund_payment")) == 1


def test_payment_call_without_step_up_is_refused_before_the_server(mcp_json: McpGateway):
    tok = refund_token(stepped_up=False)
    call = ("refund_payment", {"ticket_id": "T-1001", "amount": 5, "currency": "EUR"})
    result, call_id = session(mcp_json, tok, [call, ("search_tickets", {"query": "vat"})])
    error = result.call("refund_payment").error
    assert error is not None
    assert (error.http_status, error.code, error.data) == (401, -32001, {"reason": "step_up_required"})
    wait_server_call(mcp_json.server, call_id, "search_tickets")
    assert server_calls(mcp_json.server, call_id, "refund_payment") == []


def test_mcp_client_without_a_token_cannot_even_connect(mcp_json: McpGateway):
    result, call_id = session(mcp_json, None, [("search_tickets", {"query": "x"})])
    assert not result.connected
    error = result.connect_error
    assert error is not None
    assert (error.http_status, error.code, error.data, error.method) == (
        401, -32001, {"reason": "token_missing"}, "initialize",
    )
    assert server_records(mcp_json.server, call_id) == []


# === the audit record and the access log of MCP calls ================================================


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_audit_records_of_an_mcp_session(mcp_json: McpGateway, client_mode: str):
    tok = refund_token()
    calls = [
        ("search_tickets", {"query": "refund"}),
        ("refund_payment", {"ticket_id": "T-1001", "amount": 80, "currency": "EUR"}),
        ("refund_payment", {"ticket_id": "T-1003", "amount": 20, "currency": "USD"}),
    ]
    result, call_id = session(mcp_json, tok, calls, mode=client_mode)
    assert [c.ok for c in result.calls] == [True, False, True]
    handshake = 2 if client_mode == "legacy" else 1  # initialize + notifications/initialized, or server/discover
    records = audits_for(mcp_json.envoy, tok, handshake + 1 + len(calls))
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record.get("mcp.method.name"), []).append(record)
    version = PROTOCOL_VERSION[client_mode]
    common = {"url.path": "/mcp", "http.request.method": "POST", "sub": AGENT, "txn": TXN, "mode": "enforce"}

    if client_mode == "legacy":
        (initialize,) = by_method["initialize"]
        assert (initialize["reason"], initialize["jsonrpc.request.id"]) == ("protocol_method_allowed", "1")
        assert "mcp.protocol.version" not in initialize  # the client learns the version from the answer
        (initialized,) = by_method["notifications/initialized"]
        assert "jsonrpc.request.id" not in initialized  # a notification has no id
    else:
        (discover,) = by_method["server/discover"]
        assert (discover["reason"], discover["mcp.protocol.version"]) == ("protocol_method_allowed", version)

    (listing,) = by_method["tools/list"]
    assert listing["reason"] == "list_allowed"
    assert listing["tools_list_removed"] == 2
    assert (listing["http.response.status_code"], listing["responder"]) == (200, "upstream")
    assert listing["mcp.protocol.version"] == version

    search, over, within = by_method["tools/call"]
    for record in (search, over, within):
        assert {k: record[k] for k in common} == common
        assert record["mcp.protocol.version"] == version
        assert record["action"] == "tools/call"
        assert record["token_sha256"] == token_sha256(tok)
    assert (search["gen_ai.tool.name"], search["risk"], search["reason"]) == (
        "mcp_search_tickets", "read", "scope_granted",
    )
    assert (search["http.response.status_code"], search["responder"]) == (200, "upstream")
    assert "constraint" not in search and "constraint_outcome" not in search  # no constraints on search

    assert (over["decision"], over["reason"], over["gen_ai.tool.name"]) == (
        "deny", "argument_constraint_failed", "mcp_refund_payment",
    )
    assert (over["constraint"], over["constraint_outcome"]) == ("amount_within_task", "failed")
    assert (over["http.response.status_code"], over["responder"]) == (403, "intentgate")

    assert (within["decision"], within["reason"], within["risk"]) == ("allow", "authorization_details_granted", "payment")
    assert within["constraint_outcome"] == "passed" and "constraint" not in within
    assert (within["http.response.status_code"], within["responder"]) == (200, "upstream")
    # JSON-RPC ids are strings in the record; the client numbers its requests
    ids = [r["jsonrpc.request.id"] for r in (listing, search, over, within)]
    assert ids == sorted(ids, key=int) and len(set(ids)) == 4
    # the audit ids the upstream saw are those of the records
    forwarded = {search["audit_id"], within["audit_id"], listing["audit_id"]}

    def seen() -> set[str]:
        return {record_header(r, PREFIX + "audit-id") for r in server_records(mcp_json.server, call_id)}

    seen_ids = wait_until(lambda: forwarded <= seen() and seen(), 5) or seen()
    assert forwarded <= seen_ids
    assert over["audit_id"] not in seen_ids


def test_upstream_gets_the_audit_headers_after_the_body_was_read(mcp_json: McpGateway):
    """The filter pauses the headers until it has the body, then removes Authorization and the
    agent's own x-intentgate-* headers and sets its own: all of that reaches the MCP server."""
    tok = read_token()
    spoofed = (
        ("x-intentgate-decision", "allow"),
        ("x-intentgate-tool", "mcp_refund_payment"),
        ("x-intentgate-approved-by", "security-team"),
    )
    body = tool_call("search_tickets", {"query": "login"}, rpc_id="q-1")
    call = post_mcp(mcp_json, body, tok, JSON + spoofed)
    assert call.response.status == 200, call.response.body
    assert call.response.json()["id"] == "q-1"
    (received,) = wait_server_call(mcp_json.server, call.call_id, "search_tickets")
    audit = {n[len(PREFIX):]: v for n, v in received["headers"] if n.startswith(PREFIX)}
    record = mcp_json.envoy.audit_record(audit["audit-id"])
    assert audit == {
        "subject": AGENT,
        "client-id": CLIENT,
        "tool": "mcp_search_tickets",
        "action": "tools/call",
        "risk": "read",
        "decision": "allow",
        "reason": "scope_granted",
        "mode": "enforce",
        "audit-id": record["audit_id"],
        "token-sha256": token_sha256(tok)[:16],
    }
    assert record_header(received, "authorization") is None
    # the body reached the server exactly as sent
    assert received["body"].encode() == body
    assert (record["decision"], record["jsonrpc.request.id"], record["http.response.status_code"]) == ("allow", "q-1", 200)


@pytest.mark.parametrize("client_mode", CLIENT_MODES)
def test_access_log_shows_what_the_upstream_got(mcp_json: McpGateway, client_mode: str):
    """The access log's %REQ(...)% values are the request headers as forwarded: intentgate's audit
    headers (set after the body was read) and no Authorization."""
    tok = read_token()
    result, call_id = session(mcp_json, tok, [("search_tickets", {"query": "vat"})], mode=client_mode)
    assert result.call("search_tickets").ok
    (received,) = wait_server_call(mcp_json.server, call_id, "search_tickets")
    audit_id = record_header(received, PREFIX + "audit-id")
    line = access_log_line(mcp_json.gateway, audit_id=audit_id)
    assert {k: line[k] for k in ("method", "path", "status", "upstream_cluster", "call_id")} == {
        "method": "POST", "path": "/mcp", "status": 200, "upstream_cluster": "mcp", "call_id": call_id,
    }
    assert {k: line[k] for k in ("tool", "action", "risk", "decision", "reason", "mode", "subject", "txn")} == {
        "tool": "mcp_search_tickets", "action": "tools/call", "risk": "read", "decision": "allow",
        "reason": "scope_granted", "mode": "enforce", "subject": AGENT, "txn": None,
    }
    assert line["token_sha256"] == token_sha256(tok)[:16]
    assert line["authorization"] is None, "Authorization went upstream"
    if client_mode == "auto":
        assert (line["mcp_method"], line["mcp_name"]) == ("tools/call", "search_tickets")
    else:
        assert (line["mcp_method"], line["mcp_name"]) == (None, None)


def test_access_log_of_a_json_rpc_denial(mcp_json: McpGateway):
    call = post_mcp(mcp_json, tool_call("rotate_secret", {"name": "db-password"}, rpc_id=5), read_token())
    assert call.response.status == 403
    line = access_log_line(mcp_json.gateway, call_id=call.call_id)
    assert (line["status"], line["resp_reason"], line["resp_audit_id"]) == (
        403, "scope_insufficient", call.response.header("x-intentgate-audit-id"),
    )
    # nothing was forwarded, so nothing upstream-facing was set: the request headers are the agent's
    assert (line["tool"], line["decision"], line["audit_id"]) == (None, None, None)
    assert line["authorization"] == "Bearer"  # cut to 6 characters: the token never reaches the log


# === hostile bodies, raw ==============================================================================


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    inner = opener * depth + b"1" + closer * depth
    return b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search_tickets","arguments":{"q":' + inner + b"}}}"


def _many_keys(count: int) -> bytes:
    arguments = ",".join(f'"k{i}":{i}' for i in range(count))
    return ('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search_tickets","arguments":{'
            '"query":"x",' + arguments + "}}}").encode()


ROTATE = tool_call("rotate_secret", {"name": "db-password"}, 2)
SEARCH = tool_call("search_tickets", {"query": "vat"}, 1)
MCP_2026 = (("mcp-protocol-version", "2026-07-28"),)

# id, body, extra headers (None: JSON's), token ("read" / "refund" / None), status, code, reason, id
HOSTILE = [
    ("batch-smuggling-a-tools-call", b"[" + rpc("tools/list") + b"," + ROTATE + b"]", None, "read",
     400, -32600, "jsonrpc_batch", None),
    ("batch-of-one-allowed-call", b"[" + SEARCH + b"]", None, "read", 400, -32600, "jsonrpc_batch", None),
    ("duplicate-method",
     b'{"jsonrpc":"2.0","id":11,"method":"tools/list","method":"tools/call",'
     b'"params":{"name":"rotate_secret","arguments":{"name":"db-password"}}}',
     None, "read", 400, -32600, "json_duplicate_key", None),
    ("duplicate-name",
     b'{"jsonrpc":"2.0","id":12,"method":"tools/call",'
     b'"params":{"name":"search_tickets","name":"rotate_secret","arguments":{"name":"db-password"}}}',
     None, "read", 400, -32600, "json_duplicate_key", None),
    ("duplicate-constrained-argument",
     b'{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"refund_payment",'
     b'"arguments":{"ticket_id":"T-1001","currency":"EUR","amount":10,"amount":5000}}}',
     None, "refund", 400, -32600, "json_duplicate_key", None),
    ("duplicate-params",
     b'{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":"x"}},'
     b'"params":{"name":"rotate_secret","arguments":{"name":"db-password"}}}',
     None, "read", 400, -32600, "json_duplicate_key", None),
    ("mcp-method-header-mismatch", tool_call("rotate_secret", {"name": "db-password"}, "abc"),
     JSON + MCP_2026 + (("mcp-method", "tools/list"),), "read", 400, -32020, "mcp_header_mismatch", "abc"),
    ("mcp-name-header-mismatch", tool_call("rotate_secret", {"name": "db-password"}, 15),
     JSON + MCP_2026 + (("mcp-method", "tools/call"), ("mcp-name", "search_tickets")),
     "read", 400, -32020, "mcp_header_mismatch", 15),
    ("mcp-name-header-mismatch-older-version", tool_call("rotate_secret", {"name": "db-password"}, 16),
     JSON + (("mcp-protocol-version", "2025-11-25"), ("mcp-method", "tools/call"), ("mcp-name", "search_tickets")),
     "read", 400, -32020, "mcp_header_mismatch", 16),
    ("truncated-json", b'{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_tick',
     None, "read", 400, -32700, "json_invalid", None),
    ("a-second-message-after-the-first", SEARCH + ROTATE, None, "read", 400, -32700, "json_invalid", None),
    ("not-utf8", b'{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"search_\xff"}}',
     None, "read", 400, -32700, "json_invalid", None),
    ("nested-10k-arrays", _nested(10_000, b"[", b"]"), None, "read", 400, -32700, "json_invalid", None),
    ("nested-10k-objects", _nested(10_000, b'{"a":', b"}"), None, "read", 400, -32700, "json_invalid", None),
    ("jsonrpc-version-1", b'{"jsonrpc":"1.0","id":19,"method":"tools/list"}', None, "read",
     400, -32600, "jsonrpc_invalid", None),
    ("method-not-a-string", b'{"jsonrpc":"2.0","id":20,"method":["tools/call"],"params":{"name":"search_tickets"}}',
     None, "read", 400, -32600, "jsonrpc_invalid", None),
    ("tool-name-not-a-string", rpc("tools/call", {"name": ["search_tickets"]}, 21), None, "read",
     400, -32602, "params_invalid", 21),
    ("arguments-not-an-object", rpc("tools/call", {"name": "search_tickets", "arguments": ["vat"]}, 22), None,
     "read", 400, -32602, "params_invalid", 22),
    ("content-type-text-plain", SEARCH, (("content-type", "text/plain"),), "read",
     415, -32600, "content_type_unsupported", None),
    ("content-type-missing", SEARCH, (), "read", 415, -32600, "content_type_unsupported", None),
    ("content-type-json-lookalike", SEARCH, (("content-type", "application/json-patch+json"),), "read",
     415, -32600, "content_type_unsupported", None),
    ("gzip-encoded", gzip.compress(ROTATE), JSON + (("content-encoding", "gzip"),), "read",
     415, -32600, "content_encoding_unsupported", None),
    ("over-the-cap-with-content-length", tool_call("search_tickets", {"query": "x" * 70_000}), None, "read",
     413, -32600, "body_too_large", None),
    ("huge-number-of-keys-over-the-cap", _many_keys(30_000), None, "read", 413, -32600, "body_too_large", None),
    ("utf8-bom", b"\xef\xbb\xbf" + SEARCH, None, "read", 400, -32700, "json_invalid", None),
    ("number-out-of-range", b'{"jsonrpc":"2.0","id":23,"method":"tools/call","params":{"name":"refund_payment",'
     b'"arguments":{"ticket_id":"T-1001","currency":"EUR","amount":1e400}}}', None, "refund",
     400, -32700, "json_invalid", None),
    ("method-in-another-case", rpc("Tools/Call", {"name": "search_tickets", "arguments": {"query": "x"}}, 24), None,
     "read", 403, -32003, "method_not_allowed", 24),
    ("server-side-method", rpc("sampling/createMessage", {"messages": []}, 25), None, "read",
     403, -32003, "method_not_allowed", 25),
    ("no-token", SEARCH, None, None, 401, -32001, "token_missing", 1),
]


@pytest.mark.parametrize(
    "body, headers, who, status, code, reason, rpc_id",
    [pytest.param(*case[1:], id=case[0]) for case in HOSTILE],
)
def test_hostile_body_is_refused_and_never_reaches_the_server(
    mcp_json: McpGateway, body: bytes, headers, who: str | None, status: int, code: int, reason: str, rpc_id: Any
):
    tok = {"read": read_token, "refund": refund_token, None: lambda: None}[who]()
    before = mcp_cluster_requests(mcp_json.envoy)
    call = post_mcp(mcp_json, body, tok, JSON if headers is None else headers)
    assert_rpc_denial(call.response, status, code, reason, rpc_id)
    assert mcp_cluster_requests(mcp_json.envoy) == before, "Envoy sent the request to the MCP server"
    assert call.forwarded is None
    assert server_records(mcp_json.server, call.call_id) == []
    record = call.audit()
    assert (record["decision"], record["enforced"], record["reason"]) == ("deny", True, reason)
    assert (record["http.response.status_code"], record["responder"]) == (status, "intentgate")


def _chunked_post(port: int, target: str, headers, body: bytes, chunk: int = 8192):
    """POST with Transfer-Encoding: chunked and no Content-Length. Envoy may answer (and close)
    before the whole body is sent; the response is read either way."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        head = f"POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n"
        head += "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
        sock.sendall(head.encode())
        try:
            for i in range(0, len(body), chunk):
                piece = body[i:i + chunk]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        response_headers = [(n.strip().lower(), v.strip()) for n, _, v in (l.partition(":") for l in lines[1:])]
        length = int(dict(response_headers).get("content-length", "0"))
        while len(rest) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
        return HttpResponse(status, "", response_headers, rest[:length])
    finally:
        sock.close()


def test_chunked_body_over_the_cap_without_content_length(mcp_json: McpGateway):
    tok = read_token()
    call_id = uuid.uuid4().hex
    headers = [(CALL_ID_HEADER, call_id), ("authorization", f"Bearer {tok}"), *JSON]
    before = mcp_cluster_requests(mcp_json.envoy)
    response = _chunked_post(mcp_json.gateway.port, "/mcp", headers, tool_call("search_tickets", {"query": "x" * 70_000}))
    assert_rpc_denial(response, 413, -32600, "body_too_large", None)
    assert mcp_cluster_requests(mcp_json.envoy) == before
    assert server_records(mcp_json.server, call_id) == []
    # the same way under the cap is read to its end and decided on
    call_id = uuid.uuid4().hex
    headers[0] = (CALL_ID_HEADER, call_id)
    response = _chunked_post(mcp_json.gateway.port, "/mcp", headers, tool_call("search_tickets", {"query": "x" * 30_000}))
    assert response.status == 200, response.body
    assert json.loads(response.body)["result"]["structuredContent"] == {"result": []}
    (received,) = wait_server_call(mcp_json.server, call_id, "search_tickets")
    assert record_header(received, PREFIX + "decision") == "allow"


@pytest.mark.parametrize("name, ascii_escape", [
    pytest.param("search_tick\u0435ts", True, id="cyrillic-e-escaped"),
    pytest.param("search_tick\u0435ts", False, id="cyrillic-e-utf8"),
    pytest.param("\uff53earch_tickets", False, id="fullwidth-s"),
    pytest.param("Search_Tickets", True, id="capitalised"),
    pytest.param("SEARCH_TICKETS", True, id="upper-case"),
    pytest.param("search_tickets ", True, id="trailing-space"),
    pytest.param("search_tickets\u0000", True, id="trailing-nul"),
    pytest.param("search_tickets\u200b", False, id="zero-width-space"),
])
def test_look_alike_tool_names_get_the_unknown_tool_answer(mcp_json: McpGateway, name: str, ascii_escape: bool):
    tok = read_token()
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 30, "method": "tools/call", "params": {"name": name, "arguments": {"query": "vat"}}},
        ensure_ascii=ascii_escape,
    ).encode()
    before = mcp_cluster_requests(mcp_json.envoy)
    look_alike = post_mcp(mcp_json, body, tok)
    unknown = post_mcp(mcp_json, tool_call("delete_everything", {"query": "vat"}, 30), tok)
    outside = post_mcp(mcp_json, tool_call("rotate_secret", {"query": "vat"}, 30), tok)
    for call in (look_alike, unknown, outside):
        assert_rpc_denial(call.response, 403, -32003, "scope_insufficient", 30)
        assert call.response.body == unknown.response.body
        assert call.response.header("www-authenticate") == unknown.response.header("www-authenticate")
    assert "scope=" not in look_alike.response.header("www-authenticate")
    assert mcp_cluster_requests(mcp_json.envoy) == before
    # the exact name is allowed, so it is the name that made the difference
    assert post_mcp(mcp_json, tool_call("search_tickets", {"query": "vat"}, 30), tok).response.status == 200


def test_escaped_name_is_the_same_name_for_the_filter_and_the_server(mcp_json: McpGateway):
    """JSON escapes decode to the very same name in both parsers: no differential to exploit."""
    body = b'{"jsonrpc":"2.0","id":31,"method":"tools\\u002fcall","params":{"name":"search_\\u0074ickets","arguments":{"query":"vat"}}}'
    call = post_mcp(mcp_json, body, read_token())
    assert call.response.status == 200, call.response.body
    (received,) = wait_server_call(mcp_json.server, call.call_id, "search_tickets")
    assert record_header(received, PREFIX + "tool") == "mcp_search_tickets"


@pytest.mark.parametrize("amount, reason", [
    pytest.param('"40"', "argument_constraint_failed", id="string-the-server-would-coerce"),
    pytest.param("true", "argument_constraint_failed", id="boolean"),
    pytest.param("null", "argument_constraint_failed", id="null"),
    pytest.param("[40]", "argument_constraint_failed", id="array"),
    pytest.param('{"value":40}', "argument_constraint_failed", id="object"),
])
def test_constrained_arguments_of_another_type_fail_closed(mcp_json: McpGateway, amount: str, reason: str):
    """The server's pydantic would coerce "40" to 40.0; the filter compares numbers only as numbers."""
    body = ('{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"refund_payment",'
            '"arguments":{"ticket_id":"T-1001","currency":"EUR","amount":' + amount + "}}}").encode()
    before = mcp_cluster_requests(mcp_json.envoy)
    call = post_mcp(mcp_json, body, refund_token())
    assert_rpc_denial(call.response, 403, -32003, reason, 32, constraint="amount_within_task")
    assert mcp_cluster_requests(mcp_json.envoy) == before


def test_number_formats_are_compared_by_value(mcp_json: McpGateway):
    """5e1 is 50, exactly the approved maximum: allowed, and the server reads the same 50."""
    body = (b'{"jsonrpc":"2.0","id":33,"method":"tools/call","params":{"name":"refund_payment",'
            b'"arguments":{"ticket_id":"T-1003","currency":"USD","amount":5e1}}}')
    call = post_mcp(mcp_json, body, refund_token())
    assert call.response.status == 200, call.response.body
    result = call.response.json()["result"]["structuredContent"]
    assert result["message"] == "Refunded 50.00 USD to carol@example.com for T-1003"


def _still_serving(mcp: McpGateway) -> None:
    assert mcp.envoy.returncode is None, "Envoy exited"
    call = post_mcp(mcp, SEARCH, read_token())
    assert call.response.status == 200, call.response.body
    assert call.response.json()["result"]["structuredContent"]["result"][0]["id"] == "T-1003"
    assert "panic" not in mcp.envoy.log_text()


def test_deep_nesting_is_a_depth_limit_not_a_crash(mcp_json: McpGateway, mcp_big_body: McpGateway):
    for depth in (1_000, 10_000):
        call = post_mcp(mcp_json, _nested(depth, b"[", b"]"), read_token())
        assert_rpc_denial(call.response, 400, -32700, "json_invalid", None)
        _still_serving(mcp_json)
    # half a million levels in one megabyte, under a 1 MiB cap
    body = _nested(500_000, b"[", b"]")
    assert len(body) < 1024 * 1024
    call = post_mcp(mcp_big_body, body, read_token())
    assert_rpc_denial(call.response, 400, -32700, "json_invalid", None)
    _still_serving(mcp_big_body)
    # just inside the limit is fine
    ok = post_mcp(mcp_json, tool_call("search_tickets", {"query": "vat", "filter": json.loads("[" * 25 + "]" * 25)}), read_token())
    assert ok.response.status == 200, ok.response.body


def test_huge_number_of_keys_under_a_larger_cap(mcp_big_body: McpGateway):
    before = mcp_cluster_requests(mcp_big_body.envoy)
    body = _many_keys(30_000)
    assert 64 * 1024 < len(body) < 1024 * 1024
    call = post_mcp(mcp_big_body, body, read_token())
    assert_rpc_denial(call.response, 400, -32700, "json_invalid", None)
    assert mcp_cluster_requests(mcp_big_body.envoy) == before
    assert server_records(mcp_big_body.server, call.call_id) == []
    _still_serving(mcp_big_body)


# === HTTP/2, with request trailers ==================================================================


def _h2(mcp: McpGateway, body: bytes, tok: str | None, trailers=(), headers=JSON):
    call_id = uuid.uuid4().hex
    all_headers = [(CALL_ID_HEADER, call_id), *headers]
    if tok is not None:
        all_headers.append(("authorization", f"Bearer {tok}"))
        mcp.gateway.tokens_sent.append(tok)
    return h2_request(mcp.gateway.port, "POST", "/mcp", all_headers, body, trailers), call_id


TRAILERS = [("x-body-sha256", "0" * 64)]


@pytest.mark.parametrize("trailers", [pytest.param(TRAILERS, id="trailers"), pytest.param([], id="end-stream")])
def test_http2_allowed_call_is_read_to_its_end_and_forwarded(mcp_json: McpGateway, trailers):
    """HTTP/2 without content-length; with trailers Envoy never marks the body complete, and
    intentgate decides on the trailers."""
    tok = read_token()
    response, call_id = _h2(mcp_json, tool_call("search_tickets", {"query": "invoice"}, "h2"), tok, trailers)
    assert (response.status, response.reset) == (200, None), response
    answer = json.loads(response.body)
    assert answer["id"] == "h2"
    assert [t["id"] for t in answer["result"]["structuredContent"]["result"]] == ["T-1003"]
    (received,) = wait_server_call(mcp_json.server, call_id, "search_tickets")
    assert record_header(received, PREFIX + "tool") == "mcp_search_tickets"
    assert record_header(received, PREFIX + "decision") == "allow"
    assert record_header(received, "authorization") is None


@pytest.mark.parametrize("trailers", [pytest.param(TRAILERS, id="trailers"), pytest.param([], id="end-stream")])
def test_http2_denials(mcp_json: McpGateway, trailers):
    before = mcp_cluster_requests(mcp_json.envoy)
    outside, id1 = _h2(mcp_json, ROTATE, read_token(), trailers)
    assert_rpc_denial(outside, 403, -32003, "scope_insufficient", 2)
    smuggled, id2 = _h2(
        mcp_json,
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_tickets","name":"rotate_secret"}}',
        read_token(), trailers,
    )
    assert_rpc_denial(smuggled, 400, -32600, "json_duplicate_key", None)
    too_large, id3 = _h2(mcp_json, tool_call("search_tickets", {"query": "x" * 200_000}), read_token(), trailers)
    assert_rpc_denial(too_large, 413, -32600, "body_too_large", None)
    assert mcp_cluster_requests(mcp_json.envoy) == before
    for call_id in (id1, id2, id3):
        assert server_records(mcp_json.server, call_id) == []


def test_http2_tools_list_is_filtered(mcp_sse: McpGateway):
    response, _ = _h2(mcp_sse, rpc("tools/list", {}, "l-1"), read_token(), TRAILERS,
                      headers=JSON + (("mcp-protocol-version", "2025-11-25"),))
    assert response.status == 200, response
    events = parse_sse(response.body.decode())
    results = [json.loads(e["data"]) for e in events if e["data"] and "result" in json.loads(e["data"])]
    assert [t["name"] for t in results[0]["result"]["tools"]] == ["search_tickets"]


# === tools/list responses on the wire ===============================================================


def test_sse_tools_list_keeps_its_events_and_filters_the_result(mcp_sse: McpGateway):
    """A text/event-stream tools/list answer (a notification event, then the result) comes back as
    the same events, with only the result's tools filtered."""
    call = post_mcp(mcp_sse, rpc("tools/list", {}, 40), read_token(), JSON + (("mcp-protocol-version", "2025-11-25"),))
    assert call.response.status == 200
    assert call.response.header("content-type").startswith("text/event-stream")
    events = parse_sse(call.response.body.decode())
    messages = [json.loads(e["data"]) for e in events if e["data"]]
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert all(e.get("event") == "message" for e in events)
    assert messages[1]["id"] == 40
    assert [t["name"] for t in messages[1]["result"]["tools"]] == ["search_tickets"]
    (record,) = wait_until(lambda: server_records(mcp_sse.server, call.call_id), 5) or [None]
    assert "rotate_secret" in record["response"]["body"]  # the server did offer it


def test_json_tools_list_is_filtered(mcp_json: McpGateway):
    call = post_mcp(mcp_json, rpc("tools/list", {}, 41), token(scope="secrets:rotate"))
    assert call.response.status == 200
    assert call.response.header("content-type").startswith("application/json")
    answer = call.response.json()
    assert answer["id"] == 41
    assert [t["name"] for t in answer["result"]["tools"]] == ["rotate_secret"]
    assert int(call.response.header("content-length") or len(call.response.body)) == len(call.response.body)


# === A2A ============================================================================================

SEND = {"message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "invoice 7 is wrong"}]}}


def a2a_token(**grant: Any) -> str:
    return token(**{"scope": "billing:send", "txn": TXN, **grant})


@pytest.mark.parametrize("method", ["SendMessage", "message/send"])
def test_a2a_send_message_is_allowed(gateway: Gateway, method: str):
    tok = a2a_token()
    body = rpc(method, SEND, "a-1")
    call = gateway.call("POST", "/a2a/billing", tok, JSON, body)
    assert call.response.status == 200, call.response.body
    seen = call.forwarded
    assert seen is not None and seen.body == body
    expected = {"tool": "billing_send", "action": "SendMessage", "risk": "write", "txn": TXN,
                "decision": "allow", "reason": "scope_granted", "subject": AGENT}
    assert {k: seen.header(PREFIX + k) for k in expected} == expected
    assert seen.header("authorization") is None
    record = call.audit()
    assert (record["rpc.method"], record["jsonrpc.request.id"], record["gen_ai.tool.name"]) == (method, "a-1", "billing_send")
    assert "mcp.method.name" not in record
    assert (record["http.response.status_code"], record["responder"]) == (200, "upstream")
    line = access_log_line(gateway, audit_id=record["audit_id"])
    assert (line["tool"], line["action"], line["upstream_cluster"], line["authorization"]) == (
        "billing_send", "SendMessage", "upstream", None,
    )


@pytest.mark.parametrize("method, params, grant, reason, status, code", [
    pytest.param("GetTask", {"id": "t-1"}, {}, "scope_insufficient", 403, -32003, id="get-task-with-a-send-token"),
    pytest.param("tasks/get", {"id": "t-1"}, {}, "scope_insufficient", 403, -32003, id="v0.3-tasks-get"),
    pytest.param("CancelTask", {"id": "t-1"}, {"scope": "billing:send billing:read"}, "scope_insufficient", 403, -32003,
                 id="method-no-catalog-entry-serves"),
    pytest.param("DeleteEverything", {}, {}, "method_not_allowed", 403, -32003, id="not-an-a2a-method"),
    pytest.param("SendMessage", SEND, {"txn": None}, "txn_required", 403, -32003, id="write-without-txn"),
])
def test_a2a_denials(gateway: Gateway, method: str, params: dict, grant: dict, reason: str, status: int, code: int):
    grant = {k: v for k, v in {"scope": "billing:send", "txn": TXN, **grant}.items() if v is not None}
    call = gateway.call("POST", "/a2a/billing", token(**grant), JSON, rpc(method, params, "a-2"))
    assert_rpc_denial(call.response, status, code, reason, "a-2")
    assert call.forwarded is None
    record = call.audit()
    assert (record["decision"], record["reason"], record["rpc.method"]) == ("deny", reason, method)


def test_a2a_read_is_allowed_with_the_read_scope(gateway: Gateway):
    call = gateway.call("POST", "/a2a/billing", token(scope="billing:read"), JSON, rpc("tasks/get", {"id": "t-1"}, 3))
    assert call.response.status == 200, call.response.body
    assert (call.forwarded.header(PREFIX + "tool"), call.forwarded.header(PREFIX + "action")) == ("billing_tasks", "GetTask")


def test_a2a_batch_is_refused(gateway: Gateway):
    body = b"[" + rpc("SendMessage", SEND, 1) + b"," + rpc("GetTask", {"id": "t-1"}, 2) + b"]"
    call = gateway.call("POST", "/a2a/billing", a2a_token(scope="billing:send billing:read"), JSON, body)
    assert_rpc_denial(call.response, 400, -32600, "jsonrpc_batch", None)
    assert call.forwarded is None


# === dry run ========================================================================================


def test_dry_run_forwards_a_denied_tools_call_with_the_would_be_decision(dry_run_gateway: Gateway):
    """In dry_run the body is still read and decided on; the upstream (here the recording one, as this
    gateway runs no MCP server) gets the call with the decision in the audit headers."""
    body = tool_call("rotate_secret", {"name": "db-password"}, 50)
    call = dry_run_gateway.call("POST", "/mcp", read_token(), JSON, body)
    assert call.response.status == 200
    seen = call.forwarded
    assert seen is not None and seen.body == body
    expected = {"tool": "mcp_rotate_secret", "decision": "deny", "reason": "scope_insufficient", "mode": "dry_run"}
    assert {k: seen.header(PREFIX + k) for k in expected} == expected
    record = call.audit()
    assert (record["decision"], record["enforced"], record["mcp.method.name"]) == ("deny", False, "tools/call")


# === Envoy: header changes after the body need allow_on_headers_stop_iteration ========================


@pytest.mark.parametrize("config", [E2E_TEMPLATE, DEMO_CONFIG], ids=lambda p: p.name)
def test_shipped_envoy_configs_allow_header_changes_after_the_body(config):
    text = config.read_text()
    wasm = text[text.index("envoy.filters.http.wasm"):text.index("vm_config:")]
    assert re.search(r"^\s+allow_on_headers_stop_iteration: true$", wasm, re.M), f"{config.name}: flag missing"


def test_without_the_flag_a_json_rpc_request_hangs(tmp_path):
    """Documents the Envoy 1.40 limit the flag works around (gateway-notes.md): without it the paused
    request is never resumed — no body callback, no decision, nothing upstream; when the client gives
    up, the request is audited as incomplete."""
    template = tmp_path / "e2e-without-flag.yaml"
    text = E2E_TEMPLATE.read_text()
    assert "allow_on_headers_stop_iteration: true" in text
    template.write_text(text.replace("allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false"))
    with Upstream() as upstream:
        envoy = Envoy.for_policy(load_e2e_policy(), upstream.port, tmp_path / "envoy", template=template)
        with envoy:
            headers = [("authorization", f"Bearer {read_token()}"), *JSON]
            with pytest.raises(TimeoutError):
                http_request(envoy.listen_port, "POST", "/mcp", headers, SEARCH, timeout_s=3)
            # plain HTTP endpoints, never paused, are unaffected
            assert http_request(envoy.listen_port, "GET", "/api/tickets", headers[:1]).status == 200
            time.sleep(0.2)
            assert [r.path for r in upstream.received()] == ["/api/tickets"]
            mcp_records = wait_until(
                lambda: [r for r in envoy.audit_records() if r.get("url.path") == "/mcp"] or None, timeout_s=5
            )
            assert [(r["reason"], r["decision"]) for r in mcp_records or []] == [("request_incomplete", "deny")]


# === last: no token reached a log or the MCP server ==================================================


def test_raw_tokens_never_reach_the_logs_or_the_mcp_server(
    gateway: Gateway, mcp_json: McpGateway, mcp_sse: McpGateway, mcp_big_body: McpGateway
):
    time.sleep(0.1)  # let the last lines reach the files
    for gw, server in ((gateway, None), (mcp_json.gateway, mcp_json.server), (mcp_sse.gateway, mcp_sse.server),
                       (mcp_big_body.gateway, mcp_big_body.server)):
        assert gw.tokens_sent
        texts = gw.envoy.log_text() + (gw.envoy.workdir / "access.log").read_text()
        if server is not None:
            texts += server.record_path.read_text() + server.log_text()
        # the token, or its signature (long and random, so a hit means the token was written)
        leaked = [t for t in gw.tokens_sent if t in texts or len(t.rsplit(".", 1)[-1]) > 20 and t.rsplit(".", 1)[-1] in texts]
        assert leaked == [], f"{len(leaked)} of {len(gw.tokens_sent)} tokens found in logs or the MCP server's records"
