//! Credentials that live and die with the task: deny lists, the revocation feed and its staleness,
//! completed tasks, single-use tools and remote key sets — as the core sees them. Native and wasm32.
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use intentgate::State;
use serde_json::json;
use support::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn lifecycle_decisions_match_the_table() {
    assert_table(lifecycle_cases());
}

#[test]
fn allowed_calls_tell_the_adapter_what_to_remember() {
    let policy = policy_from(&lifecycle_policy_json());
    let mut state = State::new(&policy);
    state.revocations.feed_ok_at = Some(NOW);
    let token =
        bearer(&es256(&with(claims(), json!({"scope": "invoices:pay tasks:complete", "txn": "task-5", "jti": "p1"}))));
    let pay = decide_with(&policy, "POST", "/api/invoices/pay", &[&token], &mut state, NOW);
    let single =
        intentgate::Claim { kind: intentgate::ClaimKind::SingleUse, id: "p1".into(), expires_at: NOW + 290 + 30 };
    assert_eq!(pay.claims, vec![single]);
    assert_eq!(pay.completes_txn, None);
    let done = decide_with(&policy, "POST", "/tasks/task-5/complete", &[&token], &mut state, NOW);
    assert_eq!(done.completes_txn.as_deref(), Some("task-5"));
    assert!(done.claims.is_empty());
    let refused = pay.refuse(intentgate::Reason::TokenAlreadyUsed, intentgate::Needed::Nothing);
    assert!(!refused.allowed() && refused.claims.is_empty());
}

#[test]
fn lifecycle_config_is_checked() {
    let refuse = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = lifecycle_policy_json();
        f(&mut doc);
        intentgate::Policy::from_json(doc.to_string().as_bytes()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    type Mutation<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(Mutation, &str); 6] = [
        (
            &|d| d["issuers"][2]["jwks"] = d["issuers"][0]["jwks"].clone(),
            "issuers[2]: exactly one of jwks, remote_jwks",
        ),
        (&|d| d["issuers"][2]["remote_jwks"]["path"] = json!("jwks.json"), "issuers[2].remote_jwks.path"),
        (&|d| d["issuers"][2]["remote_jwks"]["min_refresh_s"] = json!(7200), "issuers[2].remote_jwks.min_refresh_s"),
        (&|d| d["revocation"]["feed"]["max_staleness_s"] = json!(1), "revocation.feed.max_staleness_s"),
        (&|d| d["revocation"]["txn"] = json!([""]), "revocation.txn[0]"),
        (&|d| d["revocation"]["revoke_header"] = json!("X Bad"), "revocation.revoke_header"),
    ];
    for (mutate, want) in cases {
        let got = refuse(mutate);
        assert!(got.contains(want), "got {got:?}, want {want:?}");
    }
}
