//! Native benchmarks of the core's request path: `cargo bench --bench core`. They show where a
//! request's time goes (verification per algorithm vs. everything else); `scripts/bench` measures the
//! filter inside Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use criterion::Criterion;
    use intentgate::testkit::TestKeys;
    use intentgate::{evaluate, jsonrpc, Body, Policy, RequestFacts, State};
    use serde_json::{json, Value};
    use std::hint::black_box;

    const NOW: i64 = 1_800_000_000;
    const AUDIENCE: &str = "https://tools.test/api";

    fn keys() -> TestKeys {
        TestKeys::from_json(include_str!("../tests/fixtures/test-keys.json")).unwrap()
    }

    fn policy(cache_entries: usize) -> Policy {
        let keys = keys();
        let doc = json!({
            "audience": AUDIENCE,
            "token_cache": {"max_entries": cache_entries},
            "issuers": [{"issuer": "https://issuer.test", "algorithms": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
                         "jwks": keys.jwks(&["es256-1", "es384-1", "rsa-1", "ed25519-1"]).unwrap()}],
            "tools": [
                {"name": "search_tickets", "action": "tickets.search", "risk": "read", "scopes": ["tickets:read"],
                 "match": [{"methods": ["GET"], "path": "/api/tickets"}]},
                {"name": "get_ticket", "action": "tickets.get", "risk": "read", "scopes": ["tickets:read"],
                 "match": [{"methods": ["GET"], "path_template": "/api/tickets/{id}"}]},
                {"name": "mcp_search", "risk": "read", "scopes": ["tickets:read"], "mcp": {"tool": "search_tickets"}}
            ],
            "jsonrpc": {"endpoints": [{"protocol": "mcp", "path": "/mcp"}]}
        });
        Policy::from_json(doc.to_string().as_bytes()).unwrap()
    }

    fn token(kid: &str, alg: &str) -> String {
        let claims = json!({"iss": "https://issuer.test", "sub": "spiffe://test/agent/a", "aud": AUDIENCE,
                            "iat": NOW - 10, "exp": NOW + 290, "jti": "j", "scope": "tickets:read"});
        keys().sign(kid, alg, &Value::Null, &claims).unwrap()
    }

    fn headers(method: &str, path: &str, token: &str) -> Vec<(String, String)> {
        vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), "tools.test".into()),
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ]
    }

    pub fn run(c: &mut Criterion) {
        // no cache: every evaluation verifies the signature
        let uncached = policy(0);
        let mut fresh = State::new(&uncached);
        for (kid, alg) in
            [("es256-1", "ES256"), ("es384-1", "ES384"), ("rsa-1", "RS256"), ("rsa-1", "PS256"), ("ed25519-1", "EdDSA")]
        {
            let token = token(kid, alg);
            let h = headers("GET", "/api/tickets/42", &token);
            c.bench_function(&format!("evaluate/uncached/{alg}"), |b| {
                b.iter(|| {
                    let facts = RequestFacts {
                        method: "GET",
                        path: "/api/tickets/42",
                        authority: "tools.test",
                        headers: &h,
                        body: Body::NotRead,
                        scheme: "https",
                        peer: None,
                    };
                    black_box(evaluate(&uncached, &facts, NOW, &mut fresh))
                })
            });
        }
        let policy = policy(1024);
        let token = token("es256-1", "ES256");
        let h = headers("GET", "/api/tickets/42", &token);
        let mut state = State::new(&policy);
        c.bench_function("evaluate/cached/http", |b| {
            b.iter(|| {
                let facts = RequestFacts {
                    method: "GET",
                    path: "/api/tickets/42",
                    authority: "tools.test",
                    headers: &h,
                    body: Body::NotRead,
                    scheme: "https",
                    peer: None,
                };
                black_box(evaluate(&policy, &facts, NOW, &mut state))
            })
        });
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": "search_tickets", "arguments": {"query": "x".repeat(900)}}})
        .to_string();
        let h = headers("POST", "/mcp", &token);
        c.bench_function("evaluate/cached/mcp_tools_call_1KiB", |b| {
            b.iter(|| {
                let facts = RequestFacts {
                    method: "POST",
                    path: "/mcp",
                    authority: "tools.test",
                    headers: &h,
                    body: Body::Complete(body.as_bytes()),
                    scheme: "https",
                    peer: None,
                };
                black_box(evaluate(&policy, &facts, NOW, &mut state))
            })
        });
        c.bench_function("jsonrpc/parse_1KiB", |b| b.iter(|| black_box(jsonrpc::parse_message(body.as_bytes()))));
        c.bench_function("path/normalise", |b| {
            b.iter(|| black_box(intentgate::path::normalise("/api//tickets/./42?x=1")))
        });
    }
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_group!(benches, native::run);
#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
