//! Shared fixtures for the core's integration tests (native and wasm32): really signed tokens from
//! the committed test keys, a policy that exercises every rule, and a fixed clock.
#![allow(dead_code)]

use intentgate::testkit::{b64url, TestKeys};
use intentgate::{evaluate, Outcome, Policy, RequestFacts, TokenCache};
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
             "match": [{"path_prefix": "/admin"}]}
        ]
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
    format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes()),
        b64url(signature)
    )
}

pub fn decide(policy: &Policy, method: &str, path: &str, authorization: &[&str]) -> Outcome {
    let mut cache = TokenCache::new(16);
    decide_with(policy, method, path, authorization, &mut cache, NOW)
}

pub fn decide_with(
    policy: &Policy,
    method: &str,
    path: &str,
    authorization: &[&str],
    cache: &mut TokenCache,
    now: i64,
) -> Outcome {
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "tools.test".to_string()),
    ];
    headers.extend(
        authorization
            .iter()
            .map(|a| ("authorization".to_string(), a.to_string())),
    );
    let facts = RequestFacts {
        method,
        path,
        authority: "tools.test",
        headers: &headers,
    };
    evaluate(policy, &facts, now, cache)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
