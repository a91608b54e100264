//! Shared fixtures for the core's integration tests (native and wasm32): really signed tokens from
//! the committed test keys, a policy that exercises every rule, and a fixed clock.
#![allow(dead_code)]

use intentgate::testkit::{b64url, TestKeys};
use intentgate::{evaluate, start, Body, Outcome, Policy, RequestFacts, State, Step};
use serde_json::{json, Value};

pub const NOW: i64 = 1_800_000_000;
pub const AUDIENCE: &str = "https://tools.test/api";
pub const ISSUER: &str = "https://issuer.test";
pub const HMAC_ISSUER: &str = "https://hmac-issuer.test";
pub const ASYMMETRIC_KIDS: [&str; 4] = ["es256-1", "es384-1", "rsa-1", "ed25519-1"];

pub fn keys() -> TestKeys {
    match TestKeys::from_json(include_str!("../fixtures/test-keys.json")) {
        Ok(keys) => keys,
        Err(e) => unreachable!("test keys: {e}"),
    }
}

/// The test policy as JSON, so config tests can mutate it.
pub fn policy_json() -> Value {
    let keys = keys();
    json!({
        "audience": AUDIENCE,
        "issuers": [
            {
                "issuer": ISSUER,
                "jwks": keys.jwks(&ASYMMETRIC_KIDS).unwrap_or_default(),
                "algorithms": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
                "subject_prefixes": ["spiffe://test/agent/"],
                "client_ids": ["support-agent"]
            },
            {
                "issuer": HMAC_ISSUER,
                "jwks": keys.jwks(&["hs256-1"]).unwrap_or_default(),
                "algorithms": ["HS256"],
                "token_types": ["at+jwt", "JWT"]
            }
        ],
        "step_up": {"acr_values": ["urn:test:mfa"], "max_age_s": 300},
        "tools": [
            {"name": "search_tickets", "action": "tickets.search", "risk": "read", "scopes": ["tickets:read"],
             "match": [{"methods": ["GET"], "path": "/api/tickets"}]},
            {"name": "get_ticket", "action": "tickets.get", "risk": "read", "scopes": ["tickets:read"],
             "match": [{"methods": ["GET"], "path_template": "/api/tickets/{id}"}]},
            {"name": "update_ticket", "action": "tickets.update", "risk": "write", "scopes": ["tickets:write"],
             "match": [{"methods": ["PUT", "PATCH"], "path_template": "/api/tickets/{id}"}]},
            {"name": "rotate_secret", "action": "secrets.rotate", "risk": "credential", "scopes": ["secrets:rotate"],
             "match": [{"methods": ["POST"], "path_template": "/api/secrets/{name}/rotate"}]},
            {"name": "refund_payment", "action": "payments.refund", "risk": "payment",
             "match": [{"methods": ["POST"], "path": "/api/payments/refund"}]},
            {"name": "admin_anything", "action": "admin", "risk": "infra", "scopes": ["admin"],
             "match": [{"path_prefix": "/admin"}]},
            {"name": "mcp_search_tickets", "risk": "read", "scopes": ["tickets:read"], "mcp": {"tool": "search_tickets"}},
            {"name": "mcp_refund", "risk": "payment", "mcp": {"tool": "refund_payment"},
             "constraints": [
                {"id": "amount_within_task", "argument": "/amount", "op": "<=", "limit": "/amount/max"},
                {"id": "currency_allowed", "argument": "/currency", "op": "in", "value": ["EUR", "USD"]}
             ]},
            {"name": "mcp_docs", "risk": "read", "scopes": ["docs:read"], "mcp": {"resource_prefix": "file:///docs/"}},
            {"name": "mcp_summarize", "risk": "read", "scopes": ["docs:read"], "mcp": {"prompt": "summarize"}},
            {"name": "billing_send", "risk": "write", "scopes": ["billing:send"],
             "a2a": {"agent": "billing", "methods": ["SendMessage", "SendStreamingMessage"]}},
            {"name": "billing_tasks", "risk": "read", "scopes": ["billing:read"],
             "a2a": {"agent": "billing", "methods": ["GetTask", "ListTasks"]}}
        ],
        "jsonrpc": {
            "max_body_bytes": 4096,
            "endpoints": [
                {"protocol": "mcp", "path": "/mcp"},
                {"protocol": "a2a", "path": "/a2a/billing", "agent": "billing"}
            ]
        }
    })
}

pub fn policy_from(doc: &Value) -> Policy {
    match Policy::from_json(doc.to_string().as_bytes()) {
        Ok(policy) => policy,
        Err(e) => unreachable!("test policy refused: {e}"),
    }
}

pub fn policy() -> Policy {
    policy_from(&policy_json())
}

/// Claims of a valid read token; tests change what they test.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "spiffe://test/agent/support-bot",
        "aud": AUDIENCE,
        "client_id": "support-agent",
        "iat": NOW - 10,
        "exp": NOW + 290,
        "jti": "jti-1",
        "scope": "tickets:read"
    })
}

pub fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(map), Some(changes)) = (base.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

pub fn mint(kid: &str, alg: &str, header: Value, claims: &Value) -> String {
    match keys().sign(kid, alg, &header, claims) {
        Ok(token) => token,
        Err(e) => unreachable!("minting: {e}"),
    }
}

pub fn es256(claims: &Value) -> String {
    mint("es256-1", "ES256", json!({}), claims)
}

/// A token assembled from raw parts (for payloads serde_json cannot produce, like duplicate keys).
pub fn raw_token(header: &str, payload: &str, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64url(header.as_bytes()), b64url(payload.as_bytes()), b64url(signature))
}

pub fn decide(policy: &Policy, method: &str, path: &str, authorization: &[&str]) -> Outcome {
    let mut state = State::new(policy);
    decide_with(policy, method, path, authorization, &mut state, NOW)
}

pub fn decide_with(
    policy: &Policy,
    method: &str,
    path: &str,
    authorization: &[&str],
    state: &mut State,
    now: i64,
) -> Outcome {
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "tools.test".to_string()),
    ];
    headers.extend(authorization.iter().map(|a| ("authorization".to_string(), a.to_string())));
    let facts = RequestFacts { method, path, authority: "tools.test", headers: &headers, body: Body::NotRead };
    evaluate(policy, &facts, now, state)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A JSON-RPC POST to `path` with `body` (or another body state), extra headers, and a token.
pub fn decide_rpc(policy: &Policy, path: &str, extra: &[(&str, &str)], body: Body<'_>, token: Option<&str>) -> Outcome {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "tools.test".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    for (name, value) in extra {
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_string(), value.to_string()));
    }
    if let Some(token) = token {
        headers.push(("authorization".to_string(), bearer(token)));
    }
    let facts = RequestFacts { method: "POST", path, authority: "tools.test", headers: &headers, body };
    let mut state = State::new(policy);
    match start(policy, &facts, NOW, &mut state) {
        Step::Decided(outcome) => *outcome,
        Step::ReadBody { .. } => evaluate(policy, &facts, NOW, &mut state),
    }
}

pub fn rpc(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string()
}

/// A token that may refund up to `max` within task `task-9`, with fresh step-up.
pub fn refund_token(max: f64) -> String {
    es256(&with(
        claims(),
        json!({
            "scope": "tickets:read",
            "txn": "task-9",
            "acr": "urn:test:mfa",
            "auth_time": NOW - 30,
            "authorization_details": [{
                "type": "urn:intentgate:tool-call", "locations": [AUDIENCE], "actions": ["tools/call"],
                "identifier": "refund_payment", "privileges": ["payment"], "limits": {"amount": {"max": max}}
            }]
        }),
    ))
}

/// One JSON-RPC decision case.
pub struct RpcCase {
    pub name: &'static str,
    pub path: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Option<String>,
    pub token: Option<String>,
    pub want: intentgate::Reason,
}

pub fn rpc_cases() -> Vec<RpcCase> {
    use intentgate::Reason::*;
    let read = es256(&claims());
    let refund = refund_token(50.0);
    let docs = es256(&with(claims(), json!({"scope": "docs:read"})));
    let billing = es256(&with(claims(), json!({"scope": "billing:send", "txn": "task-3"})));
    let c = |name, body: String, token: &str, want| RpcCase {
        name,
        path: "/mcp",
        headers: vec![],
        body: Some(body),
        token: Some(token.to_string()),
        want,
    };
    let refund_call = |args: Value| rpc("tools/call", json!({"name": "refund_payment", "arguments": args}));
    vec![
        c("tools/call in scope", rpc("tools/call", json!({"name": "search_tickets", "arguments": {"query": "vpn"}})), &read, ScopeGranted),
        c("refund within the task's limit", refund_call(json!({"amount": 50, "currency": "EUR"})), &refund, AuthorizationDetailsGranted),
        c("refund over the task's limit", refund_call(json!({"amount": 50.01, "currency": "EUR"})), &refund, ArgumentConstraintFailed),
        c("refund in another currency", refund_call(json!({"amount": 5, "currency": "GBP"})), &refund, ArgumentConstraintFailed),
        c("refund without an amount", refund_call(json!({"currency": "EUR"})), &refund, ArgumentMissing),
        c("refund with a read-only token", refund_call(json!({"amount": 1, "currency": "EUR"})), &read, ScopeInsufficient),
        c("unknown tool", rpc("tools/call", json!({"name": "delete_everything"})), &read, ScopeInsufficient),
        c("look-alike tool name (Cyrillic e)", rpc("tools/call", json!({"name": "search_tick\u{0435}ts"})), &read, ScopeInsufficient),
        c("tool name differing in case", rpc("tools/call", json!({"name": "Search_Tickets"})), &read, ScopeInsufficient),
        c("resource under the prefix", rpc("resources/read", json!({"uri": "file:///docs/a.md"})), &docs, ScopeGranted),
        c("resource outside the prefix", rpc("resources/read", json!({"uri": "file:///etc/passwd"})), &docs, ScopeInsufficient),
        c("prompt", rpc("prompts/get", json!({"name": "summarize"})), &docs, ScopeGranted),
        c("tools/list", rpc("tools/list", json!({})), &read, ListAllowed),
        c("initialize", rpc("initialize", json!({"protocolVersion": "2025-11-25"})), &read, ProtocolMethodAllowed),
        c("notification", json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(), &read, ProtocolMethodAllowed),
        c("server-side method", rpc("sampling/createMessage", json!({})), &read, MethodNotAllowed),
        c("batch", format!("[{}]", rpc("tools/call", json!({"name": "search_tickets"}))), &read, JsonrpcBatch),
        c("duplicate method", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"refund_payment"}}"#.into(), &read, JsonDuplicateKey),
        c("duplicate tool name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","name":"refund_payment"}}"#.into(), &read, JsonDuplicateKey),
        c("truncated", r#"{"jsonrpc":"2.0","id":1,"method":"tools/ca"#.into(), &read, JsonInvalid),
        c("deeply nested", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search_tickets","arguments":{{"q":{}1{}}}}}}}"#, "[".repeat(200), "]".repeat(200)), &read, JsonInvalid),
        c("method missing", r#"{"jsonrpc":"2.0","id":1,"params":{}}"#.into(), &read, JsonrpcInvalid),
        c("tool name not a string", rpc("tools/call", json!({"name": ["search_tickets"]})), &read, ParamsInvalid),
        c("token missing", rpc("tools/list", json!({})), "", TokenMissing),
        RpcCase { name: "mcp-method header mismatch", path: "/mcp", headers: vec![("mcp-method", "tools/list")],
            body: Some(rpc("tools/call", json!({"name": "search_tickets"}))), token: Some(read.clone()), want: McpHeaderMismatch },
        RpcCase { name: "mcp-name header mismatch", path: "/mcp", headers: vec![("mcp-method", "tools/call"), ("mcp-name", "search_tickets")],
            body: Some(rpc("tools/call", json!({"name": "refund_payment"}))), token: Some(read.clone()), want: McpHeaderMismatch },
        RpcCase { name: "mcp headers matching", path: "/mcp", headers: vec![("mcp-method", "tools/call"), ("mcp-name", "search_tickets")],
            body: Some(rpc("tools/call", json!({"name": "search_tickets"}))), token: Some(read.clone()), want: ScopeGranted },
        RpcCase { name: "body over the cap", path: "/mcp", headers: vec![], body: None, token: Some(read.clone()), want: BodyTooLarge },
        RpcCase { name: "declared length over the cap", path: "/mcp", headers: vec![("content-length", "5000")],
            body: Some(rpc("tools/list", json!({}))), token: Some(read.clone()), want: BodyTooLarge },
        RpcCase { name: "text/plain", path: "/mcp", headers: vec![("content-type", "text/plain")],
            body: Some(rpc("tools/list", json!({}))), token: Some(read.clone()), want: ContentTypeUnsupported },
        RpcCase { name: "gzip", path: "/mcp", headers: vec![("content-encoding", "gzip")],
            body: Some(rpc("tools/list", json!({}))), token: Some(read.clone()), want: ContentEncodingUnsupported },
        RpcCase { name: "a2a SendMessage", path: "/a2a/billing", headers: vec![],
            body: Some(rpc("SendMessage", json!({"message": {"role": "ROLE_USER", "parts": [{"text": "invoice 7"}]}}))), token: Some(billing.clone()), want: ScopeGranted },
        RpcCase { name: "a2a v0.3 message/send", path: "/a2a/billing", headers: vec![],
            body: Some(rpc("message/send", json!({"message": {}}))), token: Some(billing.clone()), want: ScopeGranted },
        RpcCase { name: "a2a GetTask outside the task", path: "/a2a/billing", headers: vec![],
            body: Some(rpc("GetTask", json!({"id": "t1"}))), token: Some(billing.clone()), want: ScopeInsufficient },
        RpcCase { name: "a2a unknown method", path: "/a2a/billing", headers: vec![],
            body: Some(rpc("DeleteEverything", json!({}))), token: Some(billing), want: MethodNotAllowed },
    ]
}

pub fn run_rpc_case(policy: &Policy, case: &RpcCase) -> Outcome {
    let body = match &case.body {
        Some(body) => Body::Complete(body.as_bytes()),
        None => Body::TooLarge,
    };
    let token = case.token.as_deref().filter(|t| !t.is_empty());
    decide_rpc(policy, case.path, &case.headers, body, token)
}

/// The test policy plus the task lifecycle: configured deny lists, a revocation feed (stale unless a
/// test says it arrived), a remote-key issuer, a single-use payment tool and a completing tool.
pub fn lifecycle_policy_json() -> Value {
    let mut doc = policy_json();
    doc["revocation"] = json!({
        "jti": ["revoked-jti"], "txn": ["revoked-task"], "sub": ["spiffe://test/agent/fired"],
        "client_id": ["banned-client"], "actor": ["spiffe://test/agent/rogue"], "kid": ["es384-1"],
        "feed": {"cluster": "revocations", "path": "/feed.json", "authority": "revocations.test",
                 "poll_s": 5, "max_staleness_s": 60, "stale_min_risk": "write"},
        "revoke_header": "x-intentgate-revoke-txn"
    });
    if let Some(issuers) = doc["issuers"].as_array_mut() {
        issuers.push(json!({
            "issuer": "https://remote-issuer.test",
            "remote_jwks": {"cluster": "keys", "path": "/jwks.json", "authority": "keys.test"},
            "algorithms": ["ES256"]
        }));
    }
    if let Some(tools) = doc["tools"].as_array_mut() {
        tools.push(json!({"name": "pay_invoice", "action": "payments.pay", "risk": "read", "scopes": ["invoices:pay"],
                          "single_use": true, "match": [{"methods": ["POST"], "path": "/api/invoices/pay"}]}));
        tools.push(json!({"name": "complete_task", "action": "tasks.complete", "risk": "read", "scopes": ["tasks:complete"],
                          "completes_task": true, "match": [{"methods": ["POST"], "path_template": "/tasks/{txn}/complete"}]}));
    }
    doc
}

/// Each lifecycle case: its name, the reason it must produce, and the reason it produced.
pub fn lifecycle_cases() -> Vec<(&'static str, intentgate::Reason, intentgate::Reason)> {
    use intentgate::Reason::*;
    let policy = policy_from(&lifecycle_policy_json());
    let fresh = || {
        let mut state = State::new(&policy);
        state.revocations.feed_ok_at = Some(NOW - 10);
        state
    };
    let run = |state: &mut State, method: &str, path: &str, claims: &Value, kid: &str, alg: &str| {
        let token = bearer(&mint(kid, alg, json!({}), claims));
        decide_with(&policy, method, path, &[&token], state, NOW).reason
    };
    let read = |changes: Value| with(claims(), changes);
    let mut cases = Vec::new();
    let mut case = |name, want, got| cases.push((name, want, got));
    let mut s = fresh();
    case("a read passes", ScopeGranted, run(&mut s, "GET", "/api/tickets", &claims(), "es256-1", "ES256"));
    case(
        "configured jti",
        TokenRevoked,
        run(&mut s, "GET", "/api/tickets", &read(json!({"jti": "revoked-jti"})), "es256-1", "ES256"),
    );
    case(
        "configured txn",
        TaskRevoked,
        run(&mut s, "GET", "/api/tickets", &read(json!({"txn": "revoked-task"})), "es256-1", "ES256"),
    );
    case(
        "configured sub",
        AgentRevoked,
        run(&mut s, "GET", "/api/tickets", &read(json!({"sub": "spiffe://test/agent/fired"})), "es256-1", "ES256"),
    );
    case(
        "configured client",
        AgentRevoked,
        run(
            &mut s,
            "GET",
            "/api/tickets",
            &read(json!({"client_id": "banned-client", "iss": HMAC_ISSUER})),
            "hs256-1",
            "HS256",
        ),
    );
    case(
        "configured actor",
        AgentRevoked,
        run(
            &mut s,
            "GET",
            "/api/tickets",
            &read(json!({"act": {"sub": "spiffe://test/agent/rogue"}})),
            "es256-1",
            "ES256",
        ),
    );
    case("configured kid", KeyRevoked, run(&mut s, "GET", "/api/tickets", &claims(), "es384-1", "ES384"));

    // the feed: entries apply until they expire, and a cached token is no exception
    let mut s = fresh();
    let task = read(json!({"txn": "task-77"}));
    case("before the feed names the task", ScopeGranted, run(&mut s, "GET", "/api/tickets", &task, "es256-1", "ES256"));
    s.revocations.feed = intentgate::revocation::parse_feed(
        format!(r#"{{"revoked": [{{"txn": "task-77", "expires_at": {}}}]}}"#, NOW + 100).as_bytes(),
        NOW,
    )
    .unwrap_or_default();
    case("feed revokes a cached task", TaskRevoked, run(&mut s, "GET", "/api/tickets", &task, "es256-1", "ES256"));
    case(
        "other tasks unaffected",
        ScopeGranted,
        run(&mut s, "GET", "/api/tickets", &read(json!({"txn": "task-78"})), "es256-1", "ES256"),
    );
    s.revocations.completed.insert("task-78".into(), NOW + 100);
    case(
        "completed task",
        TaskCompleted,
        run(&mut s, "GET", "/api/tickets", &read(json!({"txn": "task-78"})), "es256-1", "ES256"),
    );

    // a stale feed refuses what matters and keeps reads available
    let mut s = fresh();
    s.revocations.feed_ok_at = Some(NOW - 61);
    let write = read(json!({"scope": "tickets:write", "txn": "t"}));
    case("stale feed, read", ScopeGranted, run(&mut s, "GET", "/api/tickets", &claims(), "es256-1", "ES256"));
    case("stale feed, write", RevocationFeedStale, run(&mut s, "PUT", "/api/tickets/1", &write, "es256-1", "ES256"));
    s.revocations.feed_ok_at = None;
    case(
        "feed never arrived, write",
        RevocationFeedStale,
        run(&mut s, "PUT", "/api/tickets/1", &write, "es256-1", "ES256"),
    );

    // single use: the adapter records the spent jti; the second call is refused
    let mut s = fresh();
    let pay = read(json!({"scope": "invoices:pay tickets:read", "jti": "pay-1"}));
    case("first payment", ScopeGranted, run(&mut s, "POST", "/api/invoices/pay", &pay, "es256-1", "ES256"));
    s.used_jti.insert("pay-1".into(), NOW + 300);
    case("replayed payment", TokenAlreadyUsed, run(&mut s, "POST", "/api/invoices/pay", &pay, "es256-1", "ES256"));
    case("the spent token still reads", ScopeGranted, run(&mut s, "GET", "/api/tickets", &pay, "es256-1", "ES256"));

    // remote keys: nothing before the first set, then the set decides
    let mut s = fresh();
    let remote = read(json!({"iss": "https://remote-issuer.test"}));
    case(
        "remote keys not yet fetched",
        KeysUnavailable,
        run(&mut s, "GET", "/api/tickets", &remote, "es256-1", "ES256"),
    );
    let jwks = keys().jwks(&["es256-1"]).unwrap_or_default().to_string();
    let fetched = intentgate::keyset::parse_jwks(jwks.as_bytes(), &[intentgate::keys::Alg::Es256]);
    s.keys.set(2, fetched.map(|f| f.keys).unwrap_or_default());
    case("remote keys fetched", ScopeGranted, run(&mut s, "GET", "/api/tickets", &remote, "es256-1", "ES256"));
    s.keys.set(2, intentgate::keyset::KeySet::default());
    case(
        "key rotated out, cached token too",
        KidUnknown,
        run(&mut s, "GET", "/api/tickets", &remote, "es256-1", "ES256"),
    );
    cases
}
