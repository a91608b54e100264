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
    let facts = RequestFacts {
        method,
        path,
        authority: "tools.test",
        headers: &headers,
        body: Body::NotRead,
        scheme: "https",
        peer: None,
    };
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
    let facts = RequestFacts {
        method: "POST",
        path,
        authority: "tools.test",
        headers: &headers,
        body,
        scheme: "https",
        peer: None,
    };
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
    doc["issuers"][0]["actor_patterns"] = json!(["spiffe://test/agent/*"]);
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
    s.claimed.insert((intentgate::ClaimKind::SingleUse, "pay-1".into()), NOW + 300);
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

/// The test policy plus sender constraint, delegation and approvals.
pub fn sender_policy_json() -> Value {
    let mut doc = policy_json();
    doc["issuers"][0]["actor_patterns"] = json!(["spiffe://test/agent/*"]);
    doc["binding"] = json!({"required_for_risks": ["infra"], "dpop": {"iat_window_s": 60}});
    doc["approvals"] = json!({
        "issuer": "https://approver.test",
        "jwks": keys().jwks(&["es256-rotated"]).unwrap_or_default(),
        "algorithms": ["ES256"]
    });
    doc
}

/// A request with everything a sender-constrained call can carry.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<&'a [u8]>,
    pub peer: Option<intentgate::binding::PeerCertificate>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Call<'a> {
        Call { method, path, headers: Vec::new(), body: None, peer: None }
    }

    pub fn header(mut self, name: &str, value: &str) -> Call<'a> {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Decide it as the adapter would: `start`, then the body when asked for.
    pub fn decide(&self, policy: &Policy, state: &mut State) -> Outcome {
        let mut headers = vec![
            (":method".to_string(), self.method.to_string()),
            (":path".to_string(), self.path.to_string()),
            (":authority".to_string(), "tools.test".to_string()),
        ];
        headers.extend(self.headers.iter().cloned());
        let facts = |body| RequestFacts {
            method: self.method,
            path: self.path,
            authority: "tools.test",
            headers: &headers,
            body,
            scheme: "https",
            peer: self.peer.as_ref(),
        };
        match start(policy, &facts(Body::NotRead), NOW, state) {
            Step::Decided(outcome) => *outcome,
            Step::ReadBody { .. } => {
                evaluate(policy, &facts(Body::Complete(self.body.unwrap_or_default())), NOW, state)
            }
        }
    }
}

/// A DPoP proof for `method` `htu`, signed with the private key `kid` (its public JWK embedded).
pub fn dpop_proof(kid: &str, alg: &str, method: &str, htu: &str, token: &str, changes: Value, header: Value) -> String {
    use sha2::Digest;
    let ath = intentgate::binding::b64url(&sha2::Sha256::digest(token.as_bytes()));
    let claims =
        with(json!({"jti": format!("proof-{}", NOW), "htm": method, "htu": htu, "iat": NOW, "ath": ath}), changes);
    let jwk = keys().public(kid).unwrap_or_default();
    let header = with(json!({"typ": "dpop+jwt", "kid": null, "jwk": jwk}), header);
    mint(kid, alg, header, &claims)
}

pub fn jkt(kid: &str) -> String {
    intentgate::binding::thumbprint(&keys().public(kid).unwrap_or_default()).unwrap_or_default()
}

/// An approval of `tool` with `args_sha256` for `txn` and `agent`, signed by the approver key.
pub fn approval(tool: &str, args_sha256: &str, txn: &str, agent: &str, changes: Value) -> String {
    let claims = with(
        json!({"iss": "https://approver.test", "aud": AUDIENCE, "sub": agent, "txn": txn, "tool": tool,
               "args_sha256": args_sha256, "iat": NOW - 5, "exp": NOW + 120, "jti": format!("approval-{tool}-{txn}")}),
        changes,
    );
    mint("es256-rotated", "ES256", json!({"typ": "intentgate-approval+jwt"}), &claims)
}

/// Each sender/delegation/approval case: its name, the reason it must produce, and the one it did.
pub fn sender_cases() -> Vec<(&'static str, intentgate::Reason, intentgate::Reason)> {
    use intentgate::Reason::*;
    let policy = policy_from(&sender_policy_json());
    let mut cases = Vec::new();
    let mut case = |name, want, got| cases.push((name, want, got));
    let htu = "https://tools.test/api/tickets";

    // DPoP: the token is bound to the key of ed25519-1; proofs are signed with it (or not)
    let bound = es256(&with(claims(), json!({"cnf": {"jkt": jkt("ed25519-1")}})));
    let dpop = |proof: String| {
        Call::new("GET", "/api/tickets").header("authorization", &format!("DPoP {bound}")).header("dpop", &proof)
    };
    let proof = |changes: Value, header: Value| dpop_proof("ed25519-1", "EdDSA", "GET", htu, &bound, changes, header);
    let mut s = State::new(&policy);
    case("dpop: valid proof", ScopeGranted, dpop(proof(json!({}), json!({}))).decide(&policy, &mut s).reason);
    let replayed = dpop(proof(json!({"jti": "seen"}), json!({})));
    s.claimed.insert((intentgate::ClaimKind::DpopProof, "seen".into()), NOW + 60);
    case("dpop: replayed proof", DpopProofReplayed, replayed.decide(&policy, &mut s).reason);
    let bearer_bound = Call::new("GET", "/api/tickets").header("authorization", &bearer(&bound));
    case("dpop: bound token as Bearer", DpopBoundTokenAsBearer, bearer_bound.decide(&policy, &mut s).reason);
    let no_proof = Call::new("GET", "/api/tickets").header("authorization", &format!("DPoP {bound}"));
    case("dpop: no proof", DpopProofMissing, no_proof.decide(&policy, &mut s).reason);
    case(
        "dpop: typ JWT",
        DpopProofInvalid,
        dpop(proof(json!({}), json!({"typ": "JWT"}))).decide(&policy, &mut s).reason,
    );
    let private = keys().private("ed25519-1").cloned().unwrap_or_default();
    case(
        "dpop: private key in jwk",
        DpopProofInvalid,
        dpop(proof(json!({}), json!({"jwk": private}))).decide(&policy, &mut s).reason,
    );
    case(
        "dpop: wrong htm",
        DpopHtmMismatch,
        dpop(proof(json!({"htm": "POST"}), json!({}))).decide(&policy, &mut s).reason,
    );
    case(
        "dpop: wrong htu",
        DpopHtuMismatch,
        dpop(proof(json!({"htu": "https://tools.test/api/other"}), json!({}))).decide(&policy, &mut s).reason,
    );
    case(
        "dpop: htu differs only by normalisation",
        ScopeGranted,
        dpop(proof(json!({"htu": "HTTPS://TOOLS.test:443/api/./tickets?q=1", "jti": "n"}), json!({})))
            .decide(&policy, &mut s)
            .reason,
    );
    case(
        "dpop: stale iat",
        DpopIatInvalid,
        dpop(proof(json!({"iat": NOW - 120}), json!({}))).decide(&policy, &mut s).reason,
    );
    case(
        "dpop: future iat",
        DpopIatInvalid,
        dpop(proof(json!({"iat": NOW + 120}), json!({}))).decide(&policy, &mut s).reason,
    );
    case(
        "dpop: wrong ath",
        DpopAthMismatch,
        dpop(proof(json!({"ath": "AAAA"}), json!({}))).decide(&policy, &mut s).reason,
    );
    let other_key = dpop_proof("es256-rotated", "ES256", "GET", htu, &bound, json!({}), json!({}));
    case("dpop: proof key is not the bound key", DpopKeyMismatch, dpop(other_key).decide(&policy, &mut s).reason);
    let unbound = es256(&claims());
    let dpop_unbound = Call::new("GET", "/api/tickets")
        .header("authorization", &format!("DPoP {unbound}"))
        .header("dpop", &dpop_proof("ed25519-1", "EdDSA", "GET", htu, &unbound, json!({}), json!({})));
    case("dpop: scheme with an unbound token", DpopProofInvalid, dpop_unbound.decide(&policy, &mut s).reason);

    // mTLS: the token names the certificate; the caller's SPIFFE ID must be the acting agent
    let cert = intentgate::binding::PeerCertificate {
        sha256: vec![7; 32],
        uri_san: Some("spiffe://test/agent/support-bot".into()),
    };
    let x5t = intentgate::binding::b64url(&cert.sha256);
    let cert_bound = es256(&with(claims(), json!({"cnf": {"x5t#S256": x5t}})));
    let mut mtls = Call::new("GET", "/api/tickets").header("authorization", &bearer(&cert_bound));
    mtls.peer = Some(cert.clone());
    case("mtls: matching certificate", ScopeGranted, mtls.decide(&policy, &mut s).reason);
    mtls.peer = Some(intentgate::binding::PeerCertificate { sha256: vec![8; 32], ..cert.clone() });
    case("mtls: another certificate", CertificateBindingMismatch, mtls.decide(&policy, &mut s).reason);
    mtls.peer = None;
    case("mtls: no certificate", CertificateBindingMismatch, mtls.decide(&policy, &mut s).reason);
    let mut presenter = Call::new("GET", "/api/tickets").header("authorization", &bearer(&es256(&claims())));
    presenter.peer = Some(intentgate::binding::PeerCertificate {
        uri_san: Some("spiffe://test/agent/intruder".into()),
        ..cert.clone()
    });
    case(
        "presenter: token of agent A presented by agent B",
        DelegationPresenterMismatch,
        presenter.decide(&policy, &mut s).reason,
    );
    let handed = es256(&with(claims(), json!({"act": {"sub": "spiffe://test/agent/intruder"}})));
    let mut delegated = Call::new("GET", "/api/tickets").header("authorization", &bearer(&handed));
    delegated.peer = presenter.peer.clone();
    case("presenter: the outermost actor presents", ScopeGranted, delegated.decide(&policy, &mut s).reason);

    // delegation chains
    let chain = |act: Value| {
        Call::new("GET", "/api/tickets").header("authorization", &bearer(&es256(&with(claims(), json!({"act": act})))))
    };
    let two_hops = json!({"sub": "spiffe://test/agent/b", "act": {"sub": "spiffe://test/agent/c"}});
    case("delegation: two hops", ScopeGranted, chain(two_hops).decide(&policy, &mut s).reason);
    let three = json!({"sub": "spiffe://test/agent/b", "act": {"sub": "spiffe://test/agent/c", "act": {"sub": "spiffe://test/agent/d"}}});
    case("delegation: over the depth bound", DelegationTooDeep, chain(three).decide(&policy, &mut s).reason);
    let cycle = json!({"sub": "spiffe://test/agent/b", "act": {"sub": "spiffe://test/agent/support-bot"}});
    case("delegation: a cycle", DelegationCycle, chain(cycle).decide(&policy, &mut s).reason);
    case(
        "delegation: actor not allowed",
        DelegationActorNotAllowed,
        chain(json!({"sub": "spiffe://evil/agent/x"})).decide(&policy, &mut s).reason,
    );

    // binding required for infra calls
    let admin = with(claims(), json!({"scope": "admin", "txn": "t", "acr": "urn:test:mfa", "auth_time": NOW}));
    let unbound_admin = Call::new("GET", "/admin/users").header("authorization", &bearer(&es256(&admin)));
    case("binding required for infra", BindingRequired, unbound_admin.decide(&policy, &mut s).reason);

    // approvals: the payment is refused with an approval request, then allowed with the approval
    let payer = with(
        claims(),
        json!({"txn": "task-pay", "acr": "urn:test:mfa", "auth_time": NOW - 10,
        "authorization_details": [{"type": "urn:intentgate:tool-call", "locations": [AUDIENCE],
            "actions": ["payments.refund"], "identifier": "refund_payment", "privileges": ["payment"]}]}),
    );
    let payer = es256(&payer);
    let body = br#"{"ticket":"T-1","amount":40}"#;
    let refund = |approval: Option<&str>, body: &'static [u8]| {
        let mut call = Call::new("POST", "/api/payments/refund").header("authorization", &bearer(&payer));
        if let Some(approval) = approval {
            call = call.header("x-intentgate-approval", approval);
        }
        call.body = Some(body);
        call
    };
    let first = refund(None, body).decide(&policy, &mut s);
    let digest = match &first.needed {
        intentgate::Needed::Approval(request) => request["args_sha256"].as_str().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    case("approval: missing", ApprovalRequired, first.reason);
    let agent = "spiffe://test/agent/support-bot";
    let good = approval("refund_payment", &digest, "task-pay", agent, json!({}));
    let allowed = refund(Some(&good), body).decide(&policy, &mut s);
    case(
        "approval: valid",
        AuthorizationDetailsGranted,
        if allowed.claims.iter().any(|c| c.kind == intentgate::ClaimKind::Approval) {
            allowed.reason
        } else {
            ClaimsInvalid
        },
    );
    s.claimed.insert((intentgate::ClaimKind::Approval, "approval-refund_payment-task-pay".into()), NOW + 200);
    case("approval: used twice", ApprovalAlreadyUsed, refund(Some(&good), body).decide(&policy, &mut s).reason);
    let mut s = State::new(&policy);
    case(
        "approval: other arguments",
        ApprovalMismatch,
        refund(Some(&good), br#"{"ticket":"T-1","amount":400}"#).decide(&policy, &mut s).reason,
    );
    case(
        "approval: other tool",
        ApprovalMismatch,
        refund(Some(&approval("rotate_secret", &digest, "task-pay", agent, json!({}))), body)
            .decide(&policy, &mut s)
            .reason,
    );
    case(
        "approval: other task",
        ApprovalMismatch,
        refund(Some(&approval("refund_payment", &digest, "task-other", agent, json!({}))), body)
            .decide(&policy, &mut s)
            .reason,
    );
    case(
        "approval: other agent",
        ApprovalMismatch,
        refund(Some(&approval("refund_payment", &digest, "task-pay", "spiffe://test/agent/other", json!({}))), body)
            .decide(&policy, &mut s)
            .reason,
    );
    case(
        "approval: expired",
        ApprovalInvalid,
        refund(
            Some(&approval("refund_payment", &digest, "task-pay", agent, json!({"iat": NOW - 400, "exp": NOW - 100}))),
            body,
        )
        .decide(&policy, &mut s)
        .reason,
    );
    let forged = mint(
        "es256-1",
        "ES256",
        json!({"typ": "intentgate-approval+jwt", "kid": "es256-rotated"}),
        &json!({"iss": "https://approver.test", "aud": AUDIENCE, "sub": agent, "txn": "task-pay", "tool": "refund_payment",
                "args_sha256": digest, "iat": NOW, "exp": NOW + 60, "jti": "forged"}),
    );
    case(
        "approval: signed by the wrong key",
        ApprovalInvalid,
        refund(Some(&forged), body).decide(&policy, &mut s).reason,
    );
    cases
}

/// Fail with every case whose reason is not the one it must produce.
pub fn assert_table(cases: Vec<(&'static str, intentgate::Reason, intentgate::Reason)>) {
    let failures: Vec<String> = cases
        .into_iter()
        .filter(|(_, want, got)| want != got)
        .map(|(name, want, got)| format!("{name}: got {got:?}, want {want:?}"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
