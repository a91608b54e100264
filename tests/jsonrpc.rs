//! JSON-RPC endpoints (MCP and A2A): strict parsing, classification, argument constraints, JSON-RPC
//! denials and `tools/list` filtering, with really signed tokens. Native and wasm32.
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use intentgate::{start, tools_list, Body, Reason, RequestFacts, State, Step};
use serde_json::{json, Value};
use support::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn rpc_decisions_match_the_table() {
    let policy = policy();
    let mut failures = Vec::new();
    for case in rpc_cases() {
        let outcome = run_rpc_case(&policy, &case);
        if outcome.reason != case.want {
            failures.push(format!("{}: got {:?}, want {:?}", case.name, outcome.reason, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn denial(outcome: &intentgate::Outcome) -> (u16, String, Value) {
    let policy = policy();
    let deny = outcome.enforced_denial(&policy).expect("a denial");
    (deny.status, deny.www_authenticate.unwrap_or_default(), serde_json::from_str(&deny.body).expect("json body"))
}

#[test]
fn denials_are_json_rpc_errors_with_the_request_id() {
    let policy = policy();
    let refund = refund_token(50.0);
    let over = decide_rpc(
        &policy,
        "/mcp",
        &[],
        Body::Complete(
            rpc("tools/call", json!({"name": "refund_payment", "arguments": {"amount": 500, "currency": "EUR"}}))
                .as_bytes(),
        ),
        Some(&refund),
    );
    let (status, challenge, body) = denial(&over);
    assert_eq!(status, 403);
    assert_eq!(challenge, r#"Bearer error="insufficient_scope", error_description="argument_constraint_failed""#);
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32003, "message": "insufficient_scope",
               "data": {"reason": "argument_constraint_failed", "constraint": "amount_within_task"}}})
    );
    // the values are not echoed
    assert!(!body.to_string().contains("500") && !body.to_string().contains("EUR"));

    let missing = decide_rpc(&policy, "/mcp", &[], Body::Complete(rpc("tools/list", json!({})).as_bytes()), None);
    let (status, challenge, body) = denial(&missing);
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32001);

    let mismatch = decide_rpc(
        &policy,
        "/mcp",
        &[("mcp-method", "tools/list")],
        Body::Complete(br#"{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"search_tickets"}}"#),
        Some(&es256(&claims())),
    );
    let (status, _, body) = denial(&mismatch);
    assert_eq!((status, body["id"].clone(), body["error"]["code"].clone()), (400, json!("abc"), json!(-32020)));

    let parse = decide_rpc(&policy, "/mcp", &[], Body::Complete(b"{\"jsonrpc\""), None);
    let (status, challenge, body) = denial(&parse);
    assert_eq!((status, body["id"].clone(), body["error"]["code"].clone()), (400, Value::Null, json!(-32700)));
    assert_eq!(challenge, r#"Bearer error="invalid_request", error_description="json_invalid""#);

    let large = decide_rpc(&policy, "/mcp", &[], Body::TooLarge, None);
    let (status, challenge, body) = denial(&large);
    assert_eq!(
        (status, challenge.as_str(), body["error"]["data"]["reason"].clone()),
        (413, "", json!("body_too_large"))
    );
}

#[test]
fn unknown_tools_and_tools_outside_the_task_are_indistinguishable() {
    let policy = policy();
    let token = es256(&claims());
    let call = |name: &str| {
        let outcome = decide_rpc(
            &policy,
            "/mcp",
            &[],
            Body::Complete(rpc("tools/call", json!({"name": name})).as_bytes()),
            Some(&token),
        );
        outcome.enforced_denial(&policy).expect("denied")
    };
    assert_eq!(call("refund_payment"), call("no_such_tool"));
}

#[test]
fn the_body_is_asked_for_only_on_json_rpc_endpoints() {
    let policy = policy();
    let mut state = State::new(&policy);
    let headers = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut h = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        h
    };
    let step = |method: &str, path: &str, h: &[(String, String)], state: &mut State| {
        let facts = RequestFacts {
            method,
            path,
            authority: "tools.test",
            headers: h,
            body: Body::NotRead,
            scheme: "https",
            peer: None,
        };
        start(&policy, &facts, NOW, state)
    };
    let mcp = headers("POST", "/mcp", &[]);
    assert!(matches!(step("POST", "/mcp", &mcp, &mut state), Step::ReadBody { max_bytes: 4096 }));
    let normalised = headers("POST", "//mcp/.", &[]);
    assert!(matches!(step("POST", "//mcp/.", &normalised, &mut state), Step::ReadBody { .. }));
    let http = headers("GET", "/api/tickets", &[]);
    assert!(
        matches!(step("GET", "/api/tickets", &http, &mut state), Step::Decided(o) if o.reason == Reason::TokenMissing)
    );
    let long = headers("POST", "/mcp", &[("content-length", "4097")]);
    assert!(matches!(step("POST", "/mcp", &long, &mut state), Step::Decided(o) if o.reason == Reason::BodyTooLarge));
    let token = bearer(&es256(&claims()));
    let stream = headers("GET", "/mcp", &[("authorization", &token)]);
    assert!(
        matches!(step("GET", "/mcp", &stream, &mut state), Step::Decided(o) if o.reason == Reason::ProtocolMethodAllowed)
    );
    // an adapter that never read the body cannot get an allow
    let facts = RequestFacts {
        method: "POST",
        path: "/mcp",
        authority: "t",
        headers: &stream,
        body: Body::NotRead,
        scheme: "https",
        peer: None,
    };
    assert!(!intentgate::evaluate(&policy, &facts, NOW, &mut state).allowed());
}

#[test]
fn protocol_methods_can_be_denied() {
    let mut doc = policy_json();
    doc["jsonrpc"]["protocol_methods"] = json!("deny");
    let policy = policy_from(&doc);
    let outcome =
        decide_rpc(&policy, "/mcp", &[], Body::Complete(rpc("ping", json!({})).as_bytes()), Some(&es256(&claims())));
    assert_eq!(outcome.reason, Reason::MethodNotAllowed);
}

fn list_response() -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": [
        {"name": "search_tickets", "inputSchema": {"type": "object"}},
        {"name": "refund_payment", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
        {"name": "not_in_catalog", "inputSchema": {"type": "object"}}
    ]}})
}

fn names(message: &Value) -> Vec<String> {
    message["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn tools_list_shows_only_what_the_task_covers() {
    let policy = policy();
    let outcome = decide_rpc(
        &policy,
        "/mcp",
        &[],
        Body::Complete(rpc("tools/list", json!({})).as_bytes()),
        Some(&es256(&claims())),
    );
    assert!(outcome.filter_tools_list);
    let read = outcome.token.expect("token");
    let body = list_response().to_string();
    let filtered = tools_list::filter(&policy, &read, "application/json", body.as_bytes()).expect("filtered");
    let message: Value = serde_json::from_slice(&filtered.body).unwrap();
    // a read-only hint from the server does not make refund_payment visible
    assert_eq!(names(&message), ["search_tickets"]);
    assert_eq!((filtered.kept, filtered.removed), (1, 2));

    let refund = decide_rpc(
        &policy,
        "/mcp",
        &[],
        Body::Complete(rpc("tools/list", json!({})).as_bytes()),
        Some(&refund_token(5.0)),
    );
    let token = refund.token.expect("token");
    let sse = format!("event: message\r\nid: 1\r\ndata: {}\r\n\r\n", list_response());
    let filtered = tools_list::filter(&policy, &token, "text/event-stream", sse.as_bytes()).expect("filtered");
    let text = String::from_utf8(filtered.body).unwrap();
    assert!(text.starts_with("event: message\nid: 1\ndata: "), "{text}");
    let data: Value = serde_json::from_str(text.lines().nth(2).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(names(&data), ["search_tickets", "refund_payment"]);

    assert!(tools_list::filter(&policy, &read, "application/json", b"{not json").is_err());
    assert!(tools_list::filter(&policy, &read, "text/html", body.as_bytes()).is_err());
    let error = tools_list::unfilterable_error(&json!(7), "text/event-stream");
    assert!(String::from_utf8(error).unwrap().starts_with("event: message\ndata: {"));
}

#[test]
fn json_rpc_config_is_checked() {
    let refuse = |f: &dyn Fn(&mut Value)| {
        let mut doc = policy_json();
        f(&mut doc);
        intentgate::Policy::from_json(doc.to_string().as_bytes()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|d| d["jsonrpc"]["endpoints"][1].as_object_mut().unwrap().retain(|k, _| k != "agent")),
            "jsonrpc.endpoints[1].agent",
        ),
        (Box::new(|d| d["jsonrpc"]["max_body_bytes"] = json!(10)), "jsonrpc.max_body_bytes: 10"),
        (
            Box::new(|d| d["tools"][6]["mcp"] = json!({"tool": "search_tickets", "prompt": "x"})),
            "tools[6].mcp: at most one",
        ),
        (Box::new(|d| d["tools"][7]["mcp"]["tool"] = json!("search_tickets")), "tools[7]: serves the same calls"),
        (Box::new(|d| d["tools"][7]["constraints"][0]["op"] = json!("~=")), "tools[7].constraints[0].op"),
        (
            Box::new(|d| d["tools"][7]["constraints"][0]["argument"] = json!("amount")),
            "tools[7].constraints[0].argument",
        ),
        (Box::new(|d| d["tools"][7]["constraints"][1]["value"] = json!("EUR")), "tools[7].constraints[1].value"),
        (
            Box::new(|d| d["tools"][0]["constraints"] = d["tools"][7]["constraints"].clone()),
            "tools[0].constraints: only MCP tools",
        ),
        (Box::new(|d| d["tools"][11]["a2a"]["methods"] = json!(["tasks/get"])), "tools[11].a2a.methods[0]"),
        (Box::new(|d| d["tools"][11]["a2a"]["agent"] = json!("payroll")), "tools[11].a2a.agent"),
        (Box::new(|d| d["tools"][6]["action"] = json!("search")), "tools[6].action"),
        (
            Box::new(|d| {
                d["jsonrpc"]["endpoints"] = json!([{"protocol": "a2a", "path": "/a2a/billing", "agent": "billing"}])
            }),
            "no jsonrpc endpoint has protocol mcp",
        ),
    ];
    let mut failures = Vec::new();
    for (mutate, want) in cases {
        let got = refuse(&*mutate);
        if !got.contains(want) {
            failures.push(format!("got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
