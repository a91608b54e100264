//! A bad configuration is refused at load with a message naming the field and the value.
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use intentgate::{ConfigError, Policy};
use serde_json::{json, Value};
use support::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn refuse(doc: &Value) -> String {
    match Policy::from_json(doc.to_string().as_bytes()) {
        Ok(_) => String::from("<accepted>"),
        Err(e) => e.to_string(),
    }
}

/// Apply `f` to a copy of the valid test policy.
fn broken(f: impl FnOnce(&mut Value)) -> Value {
    let mut doc = policy_json();
    f(&mut doc);
    doc
}

fn public(kid: &str) -> Value {
    keys().public(kid).unwrap_or_default()
}

#[test]
fn the_test_policy_loads() {
    let policy = policy();
    assert_eq!(policy.issuers.len(), 2);
    assert_eq!(policy.catalog.tools.len(), 12);
    assert_eq!(policy.jsonrpc.endpoints.len(), 2);
}

#[test]
fn bad_configs_name_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("not json", json!("{"), "(root)"),
        ("unknown top-level field", broken(|d| d["audiance"] = json!("x")), "unknown field `audiance`"),
        ("unknown nested field", broken(|d| d["issuers"][0]["max_ttl"] = json!(5)), "issuers[0]"),
        (
            "missing audience",
            broken(|d| {
                d.as_object_mut().map(|m| m.remove("audience"));
            }),
            "missing field `audience`",
        ),
        ("empty audience", broken(|d| d["audience"] = json!("")), "audience: must not be empty"),
        ("empty issuer list", broken(|d| d["issuers"] = json!([])), "issuers: at least one issuer"),
        (
            "duplicate issuer",
            broken(|d| {
                let first = d["issuers"][0].clone();
                d["issuers"][1] = first;
            }),
            "issuers[1].issuer",
        ),
        ("no algorithms", broken(|d| d["issuers"][0]["algorithms"] = json!([])), "issuers[0].algorithms"),
        ("alg none", broken(|d| d["issuers"][0]["algorithms"] = json!(["none"])), "issuers[0].algorithms[0]: \"none\""),
        (
            "HS256 mixed with public keys",
            broken(|d| d["issuers"][0]["algorithms"] = json!(["ES256", "HS256"])),
            "algorithm confusion",
        ),
        (
            "HS256 at an issuer with public keys",
            broken(|d| d["issuers"][0]["algorithms"] = json!(["HS256"])),
            "issuers[0].jwks.keys[0]: can do none",
        ),
        (
            "public key at an HMAC issuer",
            broken(|d| d["issuers"][1]["jwks"]["keys"] = json!([public("es256-1")])),
            "issuers[1].jwks.keys[0]: can do none",
        ),
        (
            "key without kid",
            broken(|d| {
                d["issuers"][0]["jwks"]["keys"][0].as_object_mut().map(|k| k.remove("kid"));
            }),
            "issuers[0].jwks.keys[0]: kid: required",
        ),
        (
            "duplicate kid",
            broken(|d| d["issuers"][0]["jwks"]["keys"][1]["kid"] = json!("es256-1")),
            "issuers[0].jwks.keys[1].kid: \"es256-1\" appears twice",
        ),
        (
            "key alg it cannot do",
            broken(|d| d["issuers"][0]["jwks"]["keys"][0]["alg"] = json!("RS256")),
            "issuers[0].jwks.keys[0]: alg: \"RS256\"",
        ),
        (
            "private key in config",
            broken(|d| d["issuers"][0]["jwks"]["keys"][0]["d"] = json!("AAAA")),
            "private key members",
        ),
        ("unsupported curve", broken(|d| d["issuers"][0]["jwks"]["keys"][0]["crv"] = json!("P-521")), "crv: \"P-521\""),
        (
            "point not on the curve",
            broken(|d| d["issuers"][0]["jwks"]["keys"][0]["y"] = d["issuers"][0]["jwks"]["keys"][0]["x"].clone()),
            "not a point on P-256",
        ),
        (
            "short HMAC secret",
            broken(|d| d["issuers"][1]["jwks"]["keys"][0]["k"] = json!("c2hvcnQ")),
            "at least 32 bytes",
        ),
        (
            "empty key set",
            broken(|d| d["issuers"][0]["jwks"]["keys"] = json!([])),
            "issuers[0].jwks.keys: at least one key",
        ),
        ("zero max_ttl_s", broken(|d| d["issuers"][0]["max_ttl_s"] = json!(0)), "issuers[0].max_ttl_s: 0"),
        ("negative skew", broken(|d| d["issuers"][0]["clock_skew_s"] = json!(-1)), "issuers[0].clock_skew_s"),
        ("huge skew", broken(|d| d["issuers"][0]["clock_skew_s"] = json!(3600)), "issuers[0].clock_skew_s: 3600"),
        ("no token types", broken(|d| d["issuers"][0]["token_types"] = json!([])), "issuers[0].token_types"),
        ("unknown risk", broken(|d| d["tools"][0]["risk"] = json!("dangerous")), "tools[0].risk"),
        (
            "duplicate tool name",
            broken(|d| d["tools"][1]["name"] = json!("search_tickets")),
            "tools[1].name: \"search_tickets\" is a duplicate",
        ),
        ("no match rules", broken(|d| d["tools"][0]["match"] = json!([])), "tools[0].match"),
        (
            "two path kinds",
            broken(|d| d["tools"][0]["match"][0]["path_prefix"] = json!("/api")),
            "tools[0].match[0]: exactly one of",
        ),
        (
            "unnormalised path",
            broken(|d| d["tools"][0]["match"][0]["path"] = json!("/api//tickets")),
            "tools[0].match[0].path",
        ),
        (
            "bad template",
            broken(|d| d["tools"][1]["match"][0]["path_template"] = json!("/api/t{id}")),
            "tools[1].match[0].path_template",
        ),
        (
            "lower-case method",
            broken(|d| d["tools"][0]["match"][0]["methods"] = json!(["get"])),
            "tools[0].match[0].methods[0]",
        ),
        ("bad scope token", broken(|d| d["tools"][0]["scopes"] = json!(["a b"])), "tools[0].scopes[0]"),
        (
            "bad header matcher",
            broken(|d| d["tools"][0]["match"][0]["headers"] = json!([{"name": "x-a"}])),
            "tools[0].match[0].headers[0]",
        ),
        (
            "step-up tools without acr values",
            broken(|d| d["step_up"]["acr_values"] = json!([])),
            "step_up.acr_values: required",
        ),
        ("bad audit prefix", broken(|d| d["audit"] = json!({"header_prefix": "X Intent"})), "audit.header_prefix"),
        ("bad mode", broken(|d| d["mode"] = json!("permissive")), "mode"),
        ("token cap too small", broken(|d| d["max_token_bytes"] = json!(10)), "max_token_bytes: 10"),
        (
            "ambiguous rules",
            broken(|d| d["tools"][5]["match"] = json!([{"methods": ["GET"], "path": "/api/tickets"}])),
            "overlaps",
        ),
    ];
    let mut failures = Vec::new();
    for (name, doc, want) in cases {
        let got = refuse(&doc);
        if !got.contains(want) || !got.starts_with("invalid config at ") {
            failures.push(format!("{name}: got {got:?}, want it to contain {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ambiguity_is_resolved_by_priority_or_specificity() {
    // the same exact rule in two tools is refused…
    let clash = broken(|d| d["tools"][5]["match"] = json!([{"methods": ["GET"], "path": "/api/tickets"}]));
    assert!(matches!(Policy::from_json(clash.to_string().as_bytes()), Err(ConfigError::AmbiguousRules { .. })));
    // …unless one has a higher priority, which then wins
    let prioritised = broken(|d| {
        d["tools"][5]["match"] = json!([{"methods": ["GET"], "path": "/api/tickets"}]);
        d["tools"][5]["priority"] = json!(1);
    });
    let policy = policy_from(&prioritised);
    let token =
        bearer(&es256(&with(claims(), json!({"scope": "admin", "txn": "t", "acr": "urn:test:mfa", "auth_time": NOW}))));
    let outcome = decide(&policy, "GET", "/api/tickets", &[&token]);
    assert_eq!(outcome.intent.map(|i| i.tool), Some("admin_anything".to_string()));
    // exact beats template beats prefix without any priority
    let layered = broken(|d| {
        d["tools"][5]["match"] = json!([{"path_prefix": "/api"}]);
    });
    let policy = policy_from(&layered);
    let tool_of = |path: &str| decide(&policy, "GET", path, &[&token]).intent.map(|i| i.tool);
    assert_eq!(tool_of("/api/tickets"), Some("search_tickets".into()));
    assert_eq!(tool_of("/api/tickets/1"), Some("get_ticket".into()));
    assert_eq!(tool_of("/api/other"), Some("admin_anything".into()));
    // disjoint methods or header values are not ambiguous
    let disjoint = broken(|d| d["tools"][5]["match"] = json!([{"methods": ["DELETE"], "path": "/api/tickets"}]));
    assert!(Policy::from_json(disjoint.to_string().as_bytes()).is_ok());
}
