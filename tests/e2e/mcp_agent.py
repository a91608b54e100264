"""A small MCP agent built on the official Python SDK client (`mcp==2.3.0`): connect over Streamable
HTTP with a bearer token, handshake, list tools, call tools, and report what happened in plain data.

    from mcp_agent import run_session, run_session_sync
    result = run_session_sync("http://127.0.0.1:10000/mcp", token,
                              [("search_tickets", {"query": "refund"}),
                               ("refund_payment", {"ticket_id": "T-1001", "amount": 5, "currency": "EUR"})])
    result.connected, result.tools, result.calls[1].ok, result.calls[1].error.reason, result.wire

CLI (prints the result as JSON):
    python tests/e2e/mcp_agent.py --url http://127.0.0.1:10000/mcp --token "$TOKEN" \
        --call search_tickets '{"query": "refund"}' --call rotate_secret '{"name": "db-password"}'

How the SDK surfaces failures (all as `mcp.MCPError`, whose `.code/.message/.data` are the
JSON-RPC error's), and how this module reports them (`RpcError`):
  * a JSON-RPC error in a 200 response -> MCPError(code, message, data); http_status 200.
  * an HTTP 4xx/5xx whose content-type is application/json and whose body is a JSON-RPC error
    (the filter's 401/403 denials) -> MCPError carrying *that body's* code/message/data; the SDK
    keeps no HTTP status, so this module takes it from its own httpx2 response hook.
  * an HTTP 4xx/5xx without such a body -> MCPError(-32603, "Server returned an error response")
    (404 -> -32601 "Not Found" before a session exists, -32600 "Session terminated" after); the
    status again comes from the hook, `synthesized` is True.
  * a tool that failed inside the server -> no exception: CallToolResult.is_error is True.
  * no server at all -> httpx2.ConnectError (possibly inside an ExceptionGroup).

`mode="legacy"` (the default here) runs the initialize handshake: initialize, then
notifications/initialized, then the requests. `mode="auto"` (the SDK's own default) first probes
`server/discover` at protocol 2026-07-28 and, on an MCPError, falls back to initialize; against this
SDK's server the probe succeeds and NO initialize is sent at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

CLIENT_NAME = "intentgate-e2e-agent"


@dataclass
class WireExchange:
    """One HTTP exchange as the client saw it (from httpx2 event hooks)."""

    http_method: str
    url: str
    request_headers: list[list[str]]
    request_body: str
    status: int | None = None
    response_headers: list[list[str]] = field(default_factory=list)
    # Only read for status >= 400 (a success body is a stream the SDK consumes itself).
    response_body: str | None = None

    def rpc(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request_body) if self.request_body else None
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @property
    def rpc_method(self) -> str | None:
        return self.rpc().get("method")

    @property
    def tool_name(self) -> str | None:
        params = self.rpc().get("params") or {}
        return params.get("name") if self.rpc_method == "tools/call" else None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.response_headers if k == name.lower()), None)


@dataclass
class RpcError:
    code: int
    message: str
    data: Any = None
    http_status: int | None = None
    # `data.reason` when the error carries one (the filter's denials do).
    reason: str | None = None
    # True when the SDK made the error up from a bare HTTP status (no JSON-RPC body).
    synthesized: bool = False
    exception: str = "MCPError"
    # The JSON-RPC method of the HTTP exchange that failed. Usually the call's own, but
    # `Client.call_tool` may send a follow-up `tools/list` (see run_session) whose failure surfaces
    # as the call's error, after the tools/call itself succeeded.
    method: str | None = None


@dataclass
class CallOutcome:
    tool: str
    arguments: dict[str, Any]
    # ok: a result came back and the tool did not flag it an error.
    ok: bool = False
    is_error: bool = False  # CallToolResult.isError (a tool-level failure, delivered as a result)
    content: list[dict[str, Any]] = field(default_factory=list)
    structured: Any = None
    text: str = ""
    error: RpcError | None = None  # a JSON-RPC/HTTP level failure
    http_status: int | None = None


@dataclass
class SessionResult:
    url: str
    mode: str
    connected: bool = False
    protocol_version: str | None = None
    server_name: str | None = None
    tools: list[str] | None = None
    tools_raw: list[dict[str, Any]] | None = None
    list_error: RpcError | None = None
    connect_error: RpcError | None = None
    calls: list[CallOutcome] = field(default_factory=list)
    wire: list[WireExchange] = field(default_factory=list)

    def call(self, tool: str) -> CallOutcome:
        """The (last) outcome for `tool`."""
        for c in reversed(self.calls):
            if c.tool == tool:
                return c
        raise KeyError(tool)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise_calls(calls: Iterable[Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for c in calls:
        if isinstance(c, Mapping):
            out.append((c["name"], dict(c.get("arguments") or {})))
        else:
            name, args = c
            out.append((name, dict(args or {})))
    return out


def _leaf_exception(exc: BaseException) -> BaseException:
    """The first non-group exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _WireLog:
    def __init__(self) -> None:
        self.exchanges: list[WireExchange] = []
        self._by_request: dict[int, WireExchange] = {}

    async def on_request(self, request: httpx2.Request) -> None:
        try:
            body = request.content.decode("utf-8", "replace")
        except Exception:  # a streaming body (the SDK never sends one)
            body = ""
        ex = WireExchange(
            http_method=request.method,
            url=str(request.url),
            request_headers=[[k.lower(), v] for k, v in request.headers.multi_items()],
            request_body=body,
        )
        self.exchanges.append(ex)
        self._by_request[id(request)] = ex

    async def on_response(self, response: httpx2.Response) -> None:
        ex = self._by_request.pop(id(response.request), None)
        if ex is None:
            return
        ex.status = response.status_code
        ex.response_headers = [[k.lower(), v] for k, v in response.headers.multi_items()]
        if response.status_code >= 400:
            # Reading here caches the body; the SDK's own aread() gets the same bytes.
            ex.response_body = (await response.aread()).decode("utf-8", "replace")

    def last(self, rpc_method: str, tool: str | None = None, since: int = 0) -> WireExchange | None:
        for ex in reversed(self.exchanges[since:]):
            if ex.rpc_method == rpc_method and (tool is None or ex.tool_name == tool):
                return ex
        return None

    def failed_since(self, since: int) -> WireExchange | None:
        """The last exchange since index `since` that got an HTTP error status."""
        for ex in reversed(self.exchanges[since:]):
            if ex.status is not None and ex.status >= 400:
                return ex
        return None


def _rpc_error(exc: BaseException, exchange: WireExchange | None) -> RpcError:
    exc = _leaf_exception(exc)
    status = exchange.status if exchange else None
    if isinstance(exc, MCPError):
        data = exc.data
        reason = data.get("reason") if isinstance(data, Mapping) else None
        synthesized = False
        if status is not None and status >= 400:
            body = exchange.response_body or ""
            try:
                parsed = json.loads(body)
                synthesized = not (isinstance(parsed, dict) and "error" in parsed)
            except ValueError:
                synthesized = True
        return RpcError(code=exc.code, message=exc.message, data=data, http_status=status, reason=reason,
                        synthesized=synthesized, method=exchange.rpc_method if exchange else None)
    return RpcError(code=0, message=f"{type(exc).__name__}: {exc}", http_status=status,
                    exception=type(exc).__name__, method=exchange.rpc_method if exchange else None)


def _call_outcome(name: str, args: dict[str, Any], result: Any, status: int | None) -> CallOutcome:
    content = [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in result.content]
    text = "\n".join(c.get("text", "") for c in content if c.get("type") == "text")
    return CallOutcome(tool=name, arguments=args, ok=not result.is_error, is_error=bool(result.is_error),
                       content=content, structured=result.structured_content, text=text, http_status=status)


async def run_session(
    url: str,
    token: str | None,
    calls: Iterable[Any] = (),
    *,
    mode: str = "legacy",
    list_tools: bool = True,
    extra_headers: Mapping[str, str] | None = None,
    timeout_s: float = 15.0,
    validate_output: bool = True,
) -> SessionResult:
    """Connect to `url` with `Authorization: Bearer <token>` (none when token is None), handshake,
    optionally list tools, then call each of `calls` ((name, arguments) pairs or
    {"name", "arguments"} dicts) in order. Never raises for protocol or HTTP failures: they are in
    the result (connect_error / list_error / calls[i].error).

    validate_output=True uses `Client.call_tool`, which (as the SDK does) re-lists tools with an
    extra `tools/list` request when a call succeeded for a tool that was not in the last listing
    (to validate its structuredContent against the outputSchema); if that tools/list is refused,
    the call is reported failed with error.method == "tools/list" although the tools/call itself
    got through (CallOutcome.http_status is the tools/call's own status). validate_output=False
    sends the bare `tools/call` through `client.session.send_request` and nothing else.
    """
    from mcp.types import CallToolRequest, CallToolRequestParams, CallToolResult

    result = SessionResult(url=url, mode=mode)
    wire = _WireLog()
    result.wire = wire.exchanges
    headers = dict(extra_headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(timeout_s),
        event_hooks={"request": [wire.on_request], "response": [wire.on_response]},
    )
    client = Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        read_timeout_seconds=timeout_s,
        client_info=Implementation(name=CLIENT_NAME, version="1.0.0"),
        cache=None,  # every list_tools goes to the wire
    )
    async with http:
        try:
            await client.__aenter__()
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            handshake = wire.failed_since(0) or (wire.exchanges[-1] if wire.exchanges else None)
            result.connect_error = _rpc_error(e, handshake)
            return result
        try:
            result.connected = True
            result.protocol_version = client.protocol_version
            result.server_name = client.server_info.name if client.server_info else None
            if list_tools:
                start = len(wire.exchanges)
                try:
                    listing = await client.list_tools()
                    result.tools = [t.name for t in listing.tools]
                    result.tools_raw = [t.model_dump(by_alias=True, mode="json", exclude_none=True)
                                        for t in listing.tools]
                except Exception as e:
                    result.list_error = _rpc_error(e, wire.failed_since(start) or wire.last("tools/list", since=start))
            for name, args in _normalise_calls(calls):
                start = len(wire.exchanges)
                try:
                    if validate_output:
                        r = await client.call_tool(name, args)
                    else:
                        r = await client.session.send_request(
                            CallToolRequest(params=CallToolRequestParams(name=name, arguments=args)),
                            CallToolResult,
                        )
                    ex = wire.last("tools/call", name, since=start)
                    result.calls.append(_call_outcome(name, args, r, ex.status if ex else None))
                except Exception as e:
                    call_ex = wire.last("tools/call", name, since=start)
                    err = _rpc_error(e, wire.failed_since(start) or call_ex)
                    result.calls.append(CallOutcome(tool=name, arguments=args, error=err,
                                                    http_status=call_ex.status if call_ex else None))
        finally:
            try:
                await client.__aexit__(None, None, None)
            except Exception:
                pass
    return result


def run_session_sync(url: str, token: str | None, calls: Iterable[Any] = (), **kwargs: Any) -> SessionResult:
    """`run_session` for synchronous tests."""
    return asyncio.run(run_session(url, token, list(calls), **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one MCP session and print the result as JSON.")
    p.add_argument("--url", required=True)
    p.add_argument("--token", help="bearer token (omit to send no Authorization header)")
    p.add_argument("--mode", default="legacy", help="legacy (initialize handshake) | auto | 2026-07-28")
    p.add_argument("--call", nargs=2, action="append", default=[], metavar=("TOOL", "JSON_ARGS"))
    p.add_argument("--no-list", action="store_true", help="skip tools/list")
    p.add_argument("--no-validate", action="store_true", help="send bare tools/call requests only")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    p.add_argument("--wire", action="store_true", help="include the HTTP exchanges in the output")
    p.add_argument("--timeout", type=float, default=15.0)
    args = p.parse_args(argv)
    extra = dict(h.split(":", 1) for h in args.header)
    calls = [(name, json.loads(a)) for name, a in args.call]
    res = asyncio.run(run_session(args.url, args.token, calls, mode=args.mode, list_tools=not args.no_list,
                                  extra_headers={k.strip(): v.strip() for k, v in extra.items()},
                                  timeout_s=args.timeout, validate_output=not args.no_validate))
    out = res.to_dict()
    if not args.wire:
        out.pop("wire")
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0 if res.connected else 1


if __name__ == "__main__":
    sys.exit(main())
