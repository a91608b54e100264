"""The intentgate demo: Envoy with envoy/demo.yaml in front of the demo tool, and a scripted agent.

For each call it prints what the agent sent, what it got back, the decision, what the tool upstream
saw, and the audit record from Envoy's log. Then a human approval: a payment refused with a
machine-readable approval request, the orchestrator's approval of exactly that call, the call allowed
with it once and refused when it comes again. Then an MCP section: a real MCP client (the official
Python SDK) calls the demo MCP server through Envoy, and the demo shows the filtered tools/list, one
allowed (and approved) call with the tool's result and the denied ones with their JSON-RPC errors.
Everything it starts is stopped on exit, error or Ctrl-C. Run it with scripts/demo (which builds
dist/intentgate.wasm and the venv first).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import CALL_ID_HEADER, DEMO_CONFIG, REPO, Call, Envoy, EnvoyError, Gateway, demo_policy, wait_until
from mcp_agent import SessionResult, run_session_sync
from mcp_tool_server import ToolServerProcess, parse_sse, spawn_tool_server
from tokens import b64url, claims, mint, new_jti, tool_call_entry
from upstream import Upstream

LISTEN_PORT, ADMIN_PORT, TOOL_PORT, MCP_PORT = 18000, 18001, 18002, 18003
PREFIX = "x-intentgate-"

POLICY = demo_policy()
AUDIENCE = POLICY["audience"]
ISSUER = POLICY["issuers"][0]["issuer"]
AGENTS = POLICY["issuers"][0]["subject_prefixes"][0]
MFA = POLICY["step_up"]["acr_values"][0]
APPROVALS = POLICY["approvals"]
APPROVAL_HEADER = APPROVALS["header"]
# the approver's signing key: the TEST key whose public half demo.yaml configures under `approvals`
APPROVER_KID = APPROVALS["jwks"]["keys"][0]["kid"]


def agent_token(agent: str, alg: str = "ES256", **claim_values) -> str:
    """A token from the demo issuer for `agent`, signed with the TEST key for `alg`."""
    return mint(claims(ISSUER, AUDIENCE, AGENTS + agent, client_id=agent, **claim_values), alg=alg)


def grant(tool: str, action: str, risk: str) -> dict:
    return tool_call_entry(AUDIENCE, action, tool, [risk])


@dataclass
class Scene:
    title: str
    story: str
    method: str
    target: str
    token: str | None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


def scenes() -> list[Scene]:
    now = int(time.time())
    return [
        Scene(
            "allowed read",
            'support-bot searches tickets; its token carries scope "tickets:read"',
            "GET", "/api/tickets?q=printer",
            agent_token("support-bot", scope="tickets:read"),
        ),
        Scene(
            "allowed write",
            "support-bot closes a ticket; task task-7f3a approved exactly this tool (RFC 9396 authorization_details)",
            "PUT", "/api/tickets/T-1042",
            agent_token("support-bot", alg="EdDSA", txn="task-7f3a",
                        authorization_details=[grant("update_ticket", "tickets.update", "write")]),
            (("content-type", "application/json"),),
            b'{"status": "closed"}',
        ),
        Scene(
            "scope violation",
            "support-bot, holding only tickets:read, tries to refund a payment",
            "POST", "/api/payments/refund",
            agent_token("support-bot", scope="tickets:read", txn="task-7f3a"),
            (("content-type", "application/json"),),
            b'{"ticket": "T-1042", "amount": 20}',
        ),
        Scene(
            "expired token",
            "support-bot replays a token that expired two minutes ago",
            "GET", "/api/tickets",
            agent_token("support-bot", scope="tickets:read", iat=now - 420, exp=now - 120),
        ),
        Scene(
            "high-risk call without step-up",
            "ops-bot may rotate secrets for its task, but no human re-authenticated recently",
            "POST", "/api/secrets/db-password/rotate",
            agent_token("ops-bot", alg="RS256", txn="task-9c1e",
                        authorization_details=[grant("rotate_secret", "secrets.rotate", "credential")]),
        ),
        Scene(
            "high-risk call after step-up",
            f'the same call once the human behind it authenticated with acr "{MFA}" a minute ago',
            "POST", "/api/secrets/db-password/rotate",
            agent_token("ops-bot", alg="RS256", txn="task-9c1e", acr=MFA, auth_time=now - 60,
                        authorization_details=[grant("rotate_secret", "secrets.rotate", "credential")]),
        ),
        Scene(
            "spoofed audit headers",
            "support-bot sends its own x-intentgate-* headers, claiming to be an admin with approval",
            "GET", "/api/tickets/T-1042",
            agent_token("support-bot", scope="tickets:read"),
            (
                ("x-intentgate-subject", "spiffe://example.com/agent/admin"),
                ("x-intentgate-decision", "allow"),
                ("x-intentgate-approved-by", "security-team"),
            ),
        ),
    ]


# --- output ----------------------------------------------------------------------------------------


def short(token: str) -> str:
    return f"{token[:24]}…({len(token)} chars)"


def show(number: int, scene: Scene, call: Call, envoy: Envoy) -> None:
    print(f"\n━━ {number}. {scene.title} ━━  {scene.story}")
    print(f"  agent  → {scene.method} {scene.target}")
    if scene.token:
        header = json.loads(base64.urlsafe_b64decode(scene.token.split(".")[0] + "=="))
        print(f"           authorization: Bearer {short(scene.token)}  [{header['alg']}, kid {header['kid']}]")
    for name, value in scene.headers:
        print(f"           {name}: {short(value) if name == APPROVAL_HEADER else value}")
    if scene.body:
        print(f"           body: {scene.body.decode()}")

    response = call.response
    record = envoy.audit_record(call.audit_id) if call.audit_id else None
    verdict = f"decision={record['decision']} reason={record['reason']}" if record else "(no audit record)"
    print(f"  agent  ← {response.status} {response.reason}   {verdict}")
    if response.header("www-authenticate"):
        print(f"           www-authenticate: {response.header('www-authenticate')}")
    if response.status >= 400:
        body = json.loads(response.body)
        request = body.pop("approval_request", None)
        print(f"           body: {json.dumps(body)}")
        if request is not None:
            print("           approval_request (what a person would have to approve):")
            for line in json.dumps(request, indent=2).splitlines():
                print(f"             {line}")

    seen = call.forwarded
    if seen is None:
        print("  tool   : received nothing (intentgate answered)")
    else:
        print(f"  tool   : received {seen.method} {seen.path}")
        for name, values in sorted(seen.headers_with_prefix(PREFIX).items()):
            for value in values:
                print(f"           {name}: {value}")
        print(f"           authorization: {'(removed)' if seen.header('authorization') is None else 'FORWARDED'}")
        if any(name == APPROVAL_HEADER for name, _ in scene.headers):
            forwarded = "(removed)" if seen.header(APPROVAL_HEADER) is None else "FORWARDED"
            print(f"           {APPROVAL_HEADER}: {forwarded}")

    if record:
        print("  audit  :")
        for line in json.dumps(record, indent=2).splitlines():
            print(f"           {line}")


# --- a human's yes: approval bound to the exact call ----------------------------------------------

PAYMENT_TASK = "task-2d8c"


def approval_claims(request: dict, lifetime_s: int = 120) -> dict:
    """What the approver signs once a person said yes to `request` (the denial's approval_request):
    this task, this agent, this tool, these arguments, for a short while, once."""
    now = int(time.time())
    return {
        "iss": request["approver"],
        "aud": request["aud"],
        "sub": request["agent"],
        "txn": request["txn"],
        "tool": request["tool"],
        "args_sha256": request["args_sha256"],
        "iat": now,
        "exp": now + min(lifetime_s, request["max_ttl_s"]),
        "jti": new_jti(),
    }


def approve(request: dict) -> tuple[str, dict]:
    """The orchestrator routes the request to a person; the approver service signs their yes (here
    with the TEST key the demo's `approvals` section trusts)."""
    payload = approval_claims(request)
    return mint(payload, kid=APPROVER_KID, typ=request["typ"]), payload


def approval_section(gateway: Gateway, envoy: Envoy, first: int) -> int:
    """A refund refused with an approval request, approved by the orchestrator, allowed once with the
    approval; the approval neither stretches to another amount nor works twice. Returns the next
    scene number."""
    numbers = iter(range(first, first + 100))
    token = agent_token(
        "support-bot", txn=PAYMENT_TASK, acr=MFA, auth_time=int(time.time()) - 30,
        authorization_details=[grant("refund_payment", "payments.refund", "payment")],
    )
    body = b'{"ticket": "T-1042", "amount": 20, "currency": "EUR"}'

    def refund(title: str, story: str, approval: str | None = None, refund_body: bytes = body) -> Call:
        headers = (("content-type", "application/json"),)
        if approval:
            headers += ((APPROVAL_HEADER, approval),)
        scene = Scene(title, story, "POST", "/api/payments/refund", token, headers, refund_body)
        call = gateway.call(scene.method, scene.target, scene.token, scene.headers, scene.body)
        show(next(numbers), scene, call, envoy)
        return call

    refused = refund(
        "payment without a human's yes",
        f"support-bot's task {PAYMENT_TASK} covers refunds (after step-up), but payments also need a person's approval",
    )
    request = refused.response.json().get("approval_request")
    if request is None:
        print("  (no approval request: is the `approvals` section of envoy/demo.yaml in place?)")
        return next(numbers)
    body_hash = hashlib.sha256(body).hexdigest()
    digest = b64url(hashlib.sha256(f"POST\n/api/payments/refund\n{body_hash}".encode()).digest())
    print('  args_sha256 = base64url(SHA-256("POST\\n/api/payments/refund\\n" + hex SHA-256 of the body))')
    same = "the same" if digest == request["args_sha256"] else "DIFFERENT"
    print(f"              = {digest}  (computed by the demo: {same} as in the request)")

    approval, payload = approve(request)
    print(f"\n━━ {next(numbers)}. the orchestrator gets a person's yes ━━  it routes request {request['request_id']}")
    print("  to a human, who approves exactly this refund; the approver signs a short-lived, single-use JWT:")
    header = json.loads(base64.urlsafe_b64decode(approval.split(".")[0] + "=="))
    print(f"           header: {json.dumps(header)}")
    print("           claims:")
    for line in json.dumps(payload, indent=2).splitlines():
        print(f"             {line}")

    refund(
        "the approval stretched to a bigger refund",
        "support-bot sends the approval with a refund of 200 instead of 20: another argument hash",
        approval, body.replace(b'"amount": 20', b'"amount": 200'),
    )
    refund("payment with the approval", "the refund that was approved, retried with the approval", approval)
    refund("the approval a second time", "support-bot sends the same refund with the same approval again", approval)
    return next(numbers)


# --- MCP: a real MCP client through Envoy ----------------------------------------------------------

REFUND_TASK = "task-4b2e"
REFUND_LIMIT = {"amount": {"max": 50}, "ticket_ids": ["T-1001"]}
MCP_CALLS = [
    ("refund_payment", {"ticket_id": "T-1001", "amount": 30, "currency": "EUR"}),
    ("refund_payment", {"ticket_id": "T-1001", "amount": 80, "currency": "EUR"}),
    ("rotate_secret", {"name": "stripe-api-key"}),
]


def mcp_token() -> str:
    """support-bot's task: search tickets (scope) and refund at most 50 for T-1001 (RFC 9396 entry with
    limits), with a fresh step-up as payments need."""
    refund = tool_call_entry(AUDIENCE, "tools/call", "refund_payment", ["payment"], limits=REFUND_LIMIT)
    return agent_token("support-bot", scope="tickets:read", txn=REFUND_TASK, acr=MFA,
                       auth_time=int(time.time()) - 30, authorization_details=[refund])


def server_records(server: ToolServerProcess, call_id: str) -> list[dict]:
    return [r for r in server.records() if [CALL_ID_HEADER, call_id] in r["headers"]]


def offered_tools(server: ToolServerProcess, call_id: str) -> list[str]:
    """What the MCP server itself answered tools/list with, before intentgate filtered it."""
    for record in server_records(server, call_id):
        if any(m.get("method") == "tools/list" for m in record["jsonrpc"]):
            body = record["response"]["body"]
            if record["response"]["content_type"].startswith("text/event-stream"):
                messages = [json.loads(e["data"]) for e in parse_sse(body) if e["data"]]
            else:
                messages = [json.loads(body)]
            return next([t["name"] for t in m["result"]["tools"]] for m in messages if "result" in m)
    return []


def mcp_section(envoy: Envoy, server: ToolServerProcess) -> None:
    url = f"http://127.0.0.1:{LISTEN_PORT}/mcp"
    token = mcp_token()
    call_id = uuid.uuid4().hex
    print("\n━━ MCP: a real MCP client calls the demo MCP server through intentgate ━━")
    print(f"  support-bot's task {REFUND_TASK}: search tickets (scope tickets:read) and refund at most 50 for")
    print(f"  ticket T-1001 (authorization_details limits {json.dumps(REFUND_LIMIT)}), after step-up")
    # the refund of 30 needs a person's yes too: the orchestrator had exactly that call approved
    approved_tool, approved_arguments = MCP_CALLS[0]
    canonical = json.dumps(approved_arguments, sort_keys=True, separators=(",", ":"))  # RFC 8785 for these values
    claims_of_token = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    request = {
        "approver": APPROVALS["issuer"], "aud": AUDIENCE, "agent": claims_of_token["sub"], "txn": REFUND_TASK,
        "tool": "mcp_" + approved_tool, "args_sha256": b64url(hashlib.sha256(canonical.encode()).digest()),
        "max_ttl_s": APPROVALS["max_ttl_s"], "typ": APPROVALS["token_types"][0],
    }
    approval, _ = approve(request)
    print(f"  approved beforehand: {request['tool']} {canonical}, args_sha256 {request['args_sha256']}")
    print("  (SHA-256 of the RFC 8785 canonical arguments); the client sends the approval in")
    print(f"  {APPROVAL_HEADER} on every request of the session, and only the call it names uses it, once")
    print(f"  agent  → {url}  (MCP Python SDK client: initialize, tools/list, tools/call …)")
    result: SessionResult = run_session_sync(
        url, token, MCP_CALLS, extra_headers={CALL_ID_HEADER: call_id, APPROVAL_HEADER: approval}
    )
    if not result.connected:
        print(f"  could not connect: {result.connect_error}")
        return
    # the server writes its record when its response is finished: wait for the last forwarded call
    wait_until(lambda: len(server_records(server, call_id)) >= 4, 5)

    print("\n  tools/list")
    print(f"    the MCP server offers: {', '.join(offered_tools(server, call_id))}")
    print(f"    the agent saw:         {', '.join(result.tools or [])}   (only what its task covers)")

    received = server_records(server, call_id)
    for outcome in result.calls:
        print(f"\n  tools/call {outcome.tool} {json.dumps(outcome.arguments)}")
        if outcome.ok:
            message = (outcome.structured or {}).get("message") or outcome.text
            print(f"    agent  ← {outcome.http_status}  result: {message}")
        else:
            error = outcome.error
            wire = next((w for w in reversed(result.wire) if w.tool_name == outcome.tool and w.status and w.status >= 400), None)
            body = wire.response_body if wire else json.dumps({"code": error.code, "data": error.data})
            print(f"    agent  ← {error.http_status}  JSON-RPC error: {body}")
        got = [r for r in received
               if any(m.get("name") == outcome.tool and m.get("arguments") == outcome.arguments for m in r["jsonrpc"])]
        if got:
            headers = dict((n, v) for n, v in got[0]["headers"])
            print(f"    tool   : received it with {PREFIX}tool: {headers.get(PREFIX + 'tool')}, "
                  f"decision: {headers.get(PREFIX + 'decision')}, reason: {headers.get(PREFIX + 'reason')}; "
                  f"authorization: {'FORWARDED' if 'authorization' in headers else '(removed)'}, "
                  f"{APPROVAL_HEADER}: {'FORWARDED' if APPROVAL_HEADER in headers else '(removed)'}")
        else:
            print("    tool   : received nothing (intentgate answered)")

    jti = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")).get("jti")
    print("\n  audit records of the session (Envoy log, intentgate.audit):")

    def session_records() -> list[dict] | None:
        found = [r for r in envoy.audit_records()
                 if r.get("jti") == jti and r.get("mcp.method.name") in ("tools/list", "tools/call")]
        return found if len(found) >= 1 + len(MCP_CALLS) else None

    records = wait_until(session_records, 5) or []
    for r in records:
        extra = ""
        if "tools_list_removed" in r:
            extra = f" tools_list_removed={r['tools_list_removed']}"
        if "constraint_outcome" in r:
            extra = f" constraint_outcome={r['constraint_outcome']}" + (f" constraint={r['constraint']}" if "constraint" in r else "")
        tool = f" gen_ai.tool.name={r['gen_ai.tool.name']}" if r.get("gen_ai.tool.name") else ""
        print(f"    id={r['jsonrpc.request.id']} {r['mcp.method.name']}{tool} → {r['decision']} "
              f"({r['reason']}) status={r['http.response.status_code']}{extra}")


# --- running it ------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _interrupt(signum, frame) -> None:
    """SIGTERM gets the same clean shutdown as Ctrl-C."""
    raise KeyboardInterrupt


def main() -> int:
    busy = [p for p in (LISTEN_PORT, ADMIN_PORT, TOOL_PORT, MCP_PORT) if port_in_use(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop whatever holds them and retry", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="intentgate-demo-"))
    upstream = envoy = mcp_server = None
    try:
        upstream = Upstream(TOOL_PORT, name="demo-tool").start()
        mcp_server = spawn_tool_server(port=MCP_PORT, record=workdir / "mcp-received.jsonl", workdir=workdir)
        envoy = Envoy(DEMO_CONFIG.read_text(), ADMIN_PORT, LISTEN_PORT, workdir, cwd=REPO)
        envoy.start()
        gateway = Gateway(envoy, upstream)
        print("intentgate demo")
        config = DEMO_CONFIG.relative_to(REPO)
        print(f"  Envoy 127.0.0.1:{LISTEN_PORT} ({config}, admin {ADMIN_PORT}) → demo tool 127.0.0.1:{TOOL_PORT},")
        print(f"  /mcp → demo MCP server 127.0.0.1:{MCP_PORT} (official MCP Python SDK)")
        print(f"  audience {AUDIENCE}, issuer {ISSUER}; tokens signed with the TEST keys of tests/fixtures")
        for number, scene in enumerate(scenes(), start=1):
            call = gateway.call(scene.method, scene.target, scene.token, scene.headers, scene.body)
            show(number, scene, call, envoy)
        approval_section(gateway, envoy, len(scenes()) + 1)
        mcp_section(envoy, mcp_server)
        stats = envoy.stats()
        print("\n━━ counters (admin /stats?filter=intentgate, non-zero) ━━")
        for name, value in sorted(stats.items()):
            if value:
                print(f"  {name}: {value}")
        return 0
    except EnvoyError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        if envoy is not None:
            envoy.stop()
        if mcp_server is not None:
            mcp_server.stop()
        if upstream is not None:
            upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("\ndemo: stopped Envoy, the demo tool and the demo MCP server", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
