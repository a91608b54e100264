//! Table-driven decisions of the core with really signed tokens: every reason code has a case that
//! produces it (checked by `every_reason_code_has_a_case`). Runs natively and, with
//! wasm-bindgen-test, compiled to wasm32 in node.
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use intentgate::testkit::{b64url, hs256, signing_input};
use intentgate::{deny_response, Reason, State, TokenCache};
use serde_json::{json, Value};
use std::collections::HashSet;
use support::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    authorization: Vec<String>,
    want: Reason,
}

fn case(name: &'static str, method: &'static str, path: &'static str, token: String, want: Reason) -> Case {
    Case { name, method, path, authorization: vec![bearer(&token)], want }
}

fn rar(tool: &str, action: &str, privileges: &[&str]) -> Value {
    json!([{"type": "urn:intentgate:tool-call", "locations": [AUDIENCE], "actions": [action],
            "identifier": tool, "privileges": privileges}])
}

fn cases() -> Vec<Case> {
    let c = claims();
    let public_es256 = keys().public("es256-1").unwrap_or_default();
    let tampered = {
        let token = es256(&c);
        let (rest, _) = token.rsplit_once('.').unwrap_or_default();
        let other = es256(&with(c.clone(), json!({"jti": "other"})));
        format!("{rest}.{}", other.rsplit('.').next().unwrap_or_default())
    };
    let alg_none = format!("{}.", signing_input(&json!({"alg": "none", "kid": "es256-1", "typ": "at+jwt"}), &c));
    // algorithm confusion: HS256 "signed" with the issuer's public key as the HMAC secret
    let confusion = {
        let header = json!({"alg": "HS256", "kid": "es256-1", "typ": "at+jwt"});
        let input = signing_input(&header, &c);
        let secret = public_es256.to_string();
        format!("{input}.{}", b64url(&hs256(secret.as_bytes(), input.as_bytes())))
    };
    let duplicate_exp = {
        let payload = format!(
            r#"{{"iss":"{ISSUER}","sub":"spiffe://test/agent/a","aud":"{AUDIENCE}","client_id":"support-agent","iat":{},"exp":{},"exp":{},"jti":"d","scope":"tickets:read"}}"#,
            NOW - 10,
            NOW + 100,
            NOW + 200
        );
        let header = r#"{"alg":"HS256","kid":"hs256-1","typ":"at+jwt"}"#;
        let secret =
            keys().private("hs256-1").ok().and_then(|k| k.get("k").and_then(Value::as_str).map(str::to_string));
        let secret = secret.and_then(|s| intentgate::b64url_decode(&s)).unwrap_or_default();
        let input = format!("{}.{}", b64url(header.as_bytes()), b64url(payload.as_bytes()));
        format!("{input}.{}", b64url(&hs256(&secret, input.as_bytes())))
    };
    let write = with(c.clone(), json!({"scope": "tickets:write", "txn": "task-1"}));
    let credential = with(c.clone(), json!({"scope": "secrets:rotate", "txn": "task-1"}));
    vec![
        // allowed
        case("read by scope", "GET", "/api/tickets", es256(&c), Reason::ScopeGranted),
        case("read by template", "GET", "/api/tickets/42", es256(&c), Reason::ScopeGranted),
        case("write by scope with txn", "PUT", "/api/tickets/42", es256(&write), Reason::ScopeGranted),
        case(
            "write by authorization_details",
            "PATCH",
            "/api/tickets/42",
            es256(&with(
                c.clone(),
                json!({"scope": null, "txn": "task-1",
                "authorization_details": rar("update_ticket", "tickets.update", &["write"])}),
            )),
            Reason::AuthorizationDetailsGranted,
        ),
        case(
            "credential with fresh step-up",
            "POST",
            "/api/secrets/db/rotate",
            es256(&with(credential.clone(), json!({"acr": "urn:test:mfa", "auth_time": NOW - 60}))),
            Reason::ScopeGranted,
        ),
        case("ES384", "GET", "/api/tickets", mint("es384-1", "ES384", json!({}), &c), Reason::ScopeGranted),
        case("RS256", "GET", "/api/tickets", mint("rsa-1", "RS256", json!({}), &c), Reason::ScopeGranted),
        case("PS256", "GET", "/api/tickets", mint("rsa-1", "PS256", json!({}), &c), Reason::ScopeGranted),
        case("EdDSA", "GET", "/api/tickets", mint("ed25519-1", "EdDSA", json!({}), &c), Reason::ScopeGranted),
        case(
            "HS256 at an HMAC issuer, typ JWT allowed there",
            "GET",
            "/api/tickets",
            mint("hs256-1", "HS256", json!({"typ": "JWT"}), &with(c.clone(), json!({"iss": HMAC_ISSUER}))),
            Reason::ScopeGranted,
        ),
        case(
            "typ application/at+jwt in any case",
            "GET",
            "/api/tickets",
            mint("es256-1", "ES256", json!({"typ": "Application/AT+JWT"}), &c),
            Reason::ScopeGranted,
        ),
        case(
            "aud as array",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"aud": ["x", AUDIENCE]}))),
            Reason::ScopeGranted,
        ),
        case(
            "within clock skew after exp",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"exp": NOW - 20, "iat": NOW - 100}))),
            Reason::ScopeGranted,
        ),
        case("dot segments normalised", "GET", "/api/x/../tickets", es256(&c), Reason::ScopeGranted),
        // the request itself
        Case {
            name: "two authorization headers",
            method: "GET",
            path: "/api/tickets",
            authorization: vec![bearer(&es256(&c)), bearer(&es256(&c))],
            want: Reason::AuthorizationInvalid,
        },
        case(
            "two credentials joined by a proxy",
            "GET",
            "/api/tickets",
            format!("{},Bearer x", es256(&c)),
            Reason::AuthorizationInvalid,
        ),
        case("encoded slash", "GET", "/api%2Ftickets", es256(&c), Reason::PathInvalid),
        case("escapes root", "GET", "/../api/tickets", es256(&c), Reason::PathInvalid),
        Case {
            name: "no credentials",
            method: "GET",
            path: "/api/tickets",
            authorization: vec![],
            want: Reason::TokenMissing,
        },
        Case {
            name: "basic scheme",
            method: "GET",
            path: "/api/tickets",
            authorization: vec!["Basic dXNlcjpwYXNz".into()],
            want: Reason::TokenMissing,
        },
        // the token's form and header
        case("one segment", "GET", "/api/tickets", "abc".into(), Reason::TokenMalformed),
        case("four segments", "GET", "/api/tickets", format!("{}.x", es256(&c)), Reason::TokenMalformed),
        case("bad characters", "GET", "/api/tickets", "a+b.c/d.e=".into(), Reason::TokenMalformed),
        case(
            "payload not an object",
            "GET",
            "/api/tickets",
            raw_token(r#"{"alg":"ES256","kid":"es256-1"}"#, "[1,2]", b"sig"),
            Reason::TokenMalformed,
        ),
        case("too large", "GET", "/api/tickets", "a".repeat(9000), Reason::TokenTooLarge),
        case("alg none", "GET", "/api/tickets", alg_none, Reason::AlgNotAllowed),
        case("HS256 with the public key as secret", "GET", "/api/tickets", confusion, Reason::AlgNotAllowed),
        case(
            "ES384 claimed for a P-256 key",
            "GET",
            "/api/tickets",
            mint("es256-1", "ES384", json!({}), &c),
            Reason::AlgKeyMismatch,
        ),
        case(
            "kid missing",
            "GET",
            "/api/tickets",
            mint("es256-1", "ES256", json!({"kid": null}), &c),
            Reason::KidMissing,
        ),
        case(
            "kid unknown (rotated key)",
            "GET",
            "/api/tickets",
            mint("es256-rotated", "ES256", json!({}), &c),
            Reason::KidUnknown,
        ),
        case(
            "crit",
            "GET",
            "/api/tickets",
            mint("es256-1", "ES256", json!({"crit": ["exp"], "exp": 1}), &c),
            Reason::CritUnsupported,
        ),
        case("typ JWT", "GET", "/api/tickets", mint("es256-1", "ES256", json!({"typ": "JWT"}), &c), Reason::TypInvalid),
        case(
            "typ missing",
            "GET",
            "/api/tickets",
            mint("es256-1", "ES256", json!({"typ": null}), &c),
            Reason::TypInvalid,
        ),
        case("tampered signature", "GET", "/api/tickets", tampered, Reason::SignatureInvalid),
        case(
            "signed by another key under a known kid",
            "GET",
            "/api/tickets",
            mint("es256-rotated", "ES256", json!({"kid": "es256-1"}), &c),
            Reason::SignatureInvalid,
        ),
        // the claims
        case(
            "wrong iss",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"iss": "https://evil.test"}))),
            Reason::IssuerUnknown,
        ),
        case(
            "wrong aud",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"aud": "https://other.test"}))),
            Reason::AudienceMismatch,
        ),
        case("no exp", "GET", "/api/tickets", es256(&with(c.clone(), json!({"exp": null}))), Reason::ExpMissing),
        case("no iat", "GET", "/api/tickets", es256(&with(c.clone(), json!({"iat": null}))), Reason::IatMissing),
        case(
            "expired",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"exp": NOW - 31, "iat": NOW - 200}))),
            Reason::TokenExpired,
        ),
        case(
            "nbf in the future",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"nbf": NOW + 120}))),
            Reason::TokenNotYetValid,
        ),
        case(
            "iat in the future",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"iat": NOW + 120, "exp": NOW + 300}))),
            Reason::IatInFuture,
        ),
        case(
            "lifetime over max_ttl_s",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"iat": NOW - 10, "exp": NOW + 3600}))),
            Reason::LifetimeTooLong,
        ),
        case("no jti", "GET", "/api/tickets", es256(&with(c.clone(), json!({"jti": null}))), Reason::JtiMissing),
        case(
            "jti too long",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"jti": "j".repeat(300)}))),
            Reason::JtiInvalid,
        ),
        case("no sub", "GET", "/api/tickets", es256(&with(c.clone(), json!({"sub": null}))), Reason::SubMissing),
        case(
            "sub outside the prefixes",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"sub": "spiffe://other/agent/x"}))),
            Reason::SubjectNotAllowed,
        ),
        case(
            "client not allowed",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"client_id": "other"}))),
            Reason::ClientNotAllowed,
        ),
        case(
            "client missing",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"client_id": null}))),
            Reason::ClientNotAllowed,
        ),
        case(
            "exp is a string",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"exp": "tomorrow"}))),
            Reason::ClaimsInvalid,
        ),
        case("exp twice", "GET", "/api/tickets", duplicate_exp, Reason::ClaimsInvalid),
        case(
            "act without sub",
            "GET",
            "/api/tickets",
            es256(&with(c.clone(), json!({"act": {"iss": "x"}}))),
            Reason::ClaimsInvalid,
        ),
        case(
            "our detail type, wrong shape",
            "GET",
            "/api/tickets",
            es256(&with(
                c.clone(),
                json!({"authorization_details": [{"type": "urn:intentgate:tool-call", "actions": "all"}]}),
            )),
            Reason::ClaimsInvalid,
        ),
        // the call against the task
        case("no tool matches", "GET", "/api/unknown", es256(&c), Reason::ToolUnknown),
        case("method not in the rule", "DELETE", "/api/tickets", es256(&c), Reason::ToolUnknown),
        case("prefix is segment-aware", "GET", "/administrator", es256(&c), Reason::ToolUnknown),
        case(
            "write with a read scope",
            "PUT",
            "/api/tickets/42",
            es256(&with(c.clone(), json!({"txn": "t"}))),
            Reason::ScopeInsufficient,
        ),
        case(
            "details for another tool",
            "PUT",
            "/api/tickets/42",
            es256(&with(
                c.clone(),
                json!({"txn": "t", "authorization_details": rar("get_ticket", "tickets.update", &["write"])}),
            )),
            Reason::ScopeInsufficient,
        ),
        case(
            "details with a lower privilege",
            "PUT",
            "/api/tickets/42",
            es256(&with(
                c.clone(),
                json!({"txn": "t", "authorization_details": rar("update_ticket", "tickets.update", &["read"])}),
            )),
            Reason::ScopeInsufficient,
        ),
        case(
            "write without txn",
            "PUT",
            "/api/tickets/42",
            es256(&with(write.clone(), json!({"txn": null}))),
            Reason::TxnRequired,
        ),
        case(
            "credential without step-up",
            "POST",
            "/api/secrets/db/rotate",
            es256(&credential),
            Reason::StepUpRequired,
        ),
        case(
            "credential with a stale auth_time",
            "POST",
            "/api/secrets/db/rotate",
            es256(&with(credential.clone(), json!({"acr": "urn:test:mfa", "auth_time": NOW - 301}))),
            Reason::StepUpRequired,
        ),
        case(
            "credential with the wrong acr",
            "POST",
            "/api/secrets/db/rotate",
            es256(&with(credential, json!({"acr": "urn:test:password", "auth_time": NOW - 60}))),
            Reason::StepUpRequired,
        ),
    ]
}

#[test]
fn decisions_match_the_table() {
    let policy = policy();
    let mut failures = Vec::new();
    for case in cases() {
        let authorization: Vec<&str> = case.authorization.iter().map(String::as_str).collect();
        let outcome = decide(&policy, case.method, case.path, &authorization);
        if outcome.reason != case.want {
            failures.push(format!("{}: got {:?}, want {:?}", case.name, outcome.reason, case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_reason_code_has_a_case() {
    let mut covered: HashSet<Reason> = cases().iter().map(|c| c.want).collect();
    covered.extend(rpc_cases().iter().map(|c| c.want));
    covered.extend(lifecycle_cases().iter().map(|(_, want, _)| *want));
    covered.extend(sender_cases().iter().map(|(_, want, _)| *want));
    // produced by a policy with `unknown_tool: allow_with_token`, below
    covered.insert(Reason::UnknownToolAllowed);
    // produced by `abandoned`, below
    covered.insert(intentgate::abandoned(&policy()).reason);
    let missing: Vec<&str> = Reason::ALL.iter().filter(|r| !covered.contains(r)).map(|r| r.code()).collect();
    assert!(missing.is_empty(), "reasons without a case: {missing:?}");
}

#[test]
fn unknown_tool_can_be_allowed_with_a_valid_token_only() {
    let policy = policy_from(&with(policy_json(), json!({"unknown_tool": "allow_with_token"})));
    let token = es256(&claims());
    assert_eq!(decide(&policy, "GET", "/api/unknown", &[&bearer(&token)]).reason, Reason::UnknownToolAllowed);
    assert_eq!(decide(&policy, "GET", "/api/unknown", &[]).reason, Reason::TokenMissing);
    // a known tool is still enforced
    assert_eq!(decide(&policy, "PUT", "/api/tickets/1", &[&bearer(&token)]).reason, Reason::ScopeInsufficient);
}

#[test]
fn an_abandoned_request_is_audited_as_incomplete_and_never_passes() {
    let outcome = intentgate::abandoned(&policy());
    assert_eq!((outcome.reason, outcome.allowed()), (Reason::RequestIncomplete, false));
}

#[test]
fn dry_run_passes_denials_but_keeps_the_decision() {
    let enforcing = policy();
    let policy = policy_from(&with(policy_json(), json!({"mode": "dry_run"})));
    let outcome = decide(&policy, "GET", "/api/tickets", &[]);
    assert_eq!(outcome.reason, Reason::TokenMissing);
    assert_eq!(outcome.decision(), "deny");
    assert!(outcome.passes());
    assert!(outcome.enforced_denial(&policy).is_none());
    assert!(decide(&enforcing, "GET", "/api/tickets", &[]).enforced_denial(&enforcing).is_some());
}

#[test]
fn verified_tokens_are_cached_until_they_expire_and_failures_are_not() {
    let policy = policy();
    let mut state = State::new(&policy);
    let token = bearer(&es256(&claims()));
    let first = decide_with(&policy, "GET", "/api/tickets", &[&token], &mut state, NOW);
    let second = decide_with(&policy, "GET", "/api/tickets/1", &[&token], &mut state, NOW + 1);
    assert_eq!((first.token_cache, second.token_cache), (Some(false), Some(true)));
    assert_eq!(second.reason, Reason::ScopeGranted);
    // past exp + skew the cached entry is not used, and verification gives the precise reason
    let late = decide_with(&policy, "GET", "/api/tickets", &[&token], &mut state, NOW + 290 + 30);
    assert_eq!((late.token_cache, late.reason), (Some(false), Reason::TokenExpired));
    // a failure is never cached
    let bad = bearer(&es256(&with(claims(), json!({"aud": "x"}))));
    for _ in 0..2 {
        let outcome = decide_with(&policy, "GET", "/api/tickets", &[&bad], &mut state, NOW);
        assert_eq!((outcome.token_cache, outcome.reason), (Some(false), Reason::AudienceMismatch));
    }
    assert_eq!(state.cache.len(), 0);
}

#[test]
fn the_cache_is_bounded() {
    let policy = policy();
    let mut state = State::new(&policy);
    state.cache = TokenCache::new(3, 1 << 20);
    for i in 0..10 {
        let token = bearer(&es256(&with(claims(), json!({"jti": format!("j{i}")}))));
        decide_with(&policy, "GET", "/api/tickets", &[&token], &mut state, NOW);
        assert!(state.cache.len() <= 3);
    }
    assert_eq!(state.cache.len(), 3);
    // and by bytes: room for about two entries
    let mut state = State::new(&policy);
    state.cache = TokenCache::new(100, 700);
    for i in 0..10 {
        let token = bearer(&es256(&with(claims(), json!({"jti": format!("j{i}")}))));
        decide_with(&policy, "GET", "/api/tickets", &[&token], &mut state, NOW);
        assert!(state.cache.bytes() <= 700, "{}", state.cache.bytes());
    }
    assert!((1..=2).contains(&state.cache.len()), "{}", state.cache.len());
}

#[test]
fn denials_render_per_token_profile_section_8() {
    let policy = policy();
    let render = |method: &str, path: &str, auth: &[&str]| {
        let outcome = decide(&policy, method, path, auth);
        deny_response(outcome.reason, &outcome.needed, None, None)
    };
    let missing = render("GET", "/api/tickets", &[]);
    assert_eq!((missing.status, missing.www_authenticate.as_deref().unwrap_or("")), (401, "Bearer"));
    assert_eq!(missing.body, r#"{"error":"unauthorized","reason":"token_missing"}"#);

    let expired = bearer(&es256(&with(claims(), json!({"exp": NOW - 100, "iat": NOW - 200}))));
    let r = render("GET", "/api/tickets", &[&expired]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.www_authenticate.as_deref().unwrap_or(""),
        r#"Bearer error="invalid_token", error_description="token_expired""#
    );

    let token = bearer(&es256(&with(claims(), json!({"txn": "t"}))));
    let r = render("PUT", "/api/tickets/1", &[&token]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.www_authenticate.as_deref().unwrap_or(""),
        r#"Bearer error="insufficient_scope", error_description="scope_insufficient", scope="tickets:write""#
    );

    let token = bearer(&es256(&with(claims(), json!({"scope": "secrets:rotate", "txn": "t"}))));
    let r = render("POST", "/api/secrets/a/rotate", &[&token]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.www_authenticate.as_deref().unwrap_or(""),
        r#"Bearer error="insufficient_user_authentication", error_description="step_up_required", acr_values="urn:test:mfa", max_age="300""#
    );

    let r = render("GET", "/a%2fb", &[&token]);
    assert_eq!(
        (r.status, r.www_authenticate.as_deref().unwrap_or("")),
        (400, r#"Bearer error="invalid_request", error_description="path_invalid""#)
    );

    let with_metadata = deny_response(
        Reason::TokenMissing,
        &intentgate::Needed::Nothing,
        Some("https://tools.test/.well-known/oauth-protected-resource"),
        None,
    );
    assert_eq!(
        with_metadata.www_authenticate.as_deref().unwrap_or(""),
        r#"Bearer resource_metadata="https://tools.test/.well-known/oauth-protected-resource""#
    );
}

#[test]
fn nothing_from_the_token_is_echoed_in_a_denial() {
    let policy = policy();
    let token =
        es256(&with(claims(), json!({"aud": "https://secret-audience.test", "sub": "spiffe://test/agent/s3cr3t"})));
    let outcome = decide(&policy, "GET", "/api/tickets", &[&bearer(&token)]);
    let r = deny_response(outcome.reason, &outcome.needed, None, None);
    for text in [r.www_authenticate.as_deref().unwrap_or(""), r.body.as_str()] {
        assert!(!text.contains("secret-audience") && !text.contains("s3cr3t") && !text.contains(&token));
    }
}
