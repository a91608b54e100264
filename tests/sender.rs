//! Stolen or passed-along tokens do not work: DPoP and mTLS binding, bounded delegation chains, and
//! human approval bound to the exact call — as the core decides them. Native and wasm32.
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use intentgate::{deny_response, Needed, Reason, State};
use serde_json::json;
use support::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn sender_decisions_match_the_table() {
    assert_table(sender_cases());
}

#[test]
fn dpop_denials_carry_a_dpop_challenge_with_the_algorithms() {
    let policy = policy_from(&sender_policy_json());
    let bound = es256(&with(claims(), json!({"cnf": {"jkt": jkt("ed25519-1")}})));
    let call = Call::new("GET", "/api/tickets").header("authorization", &format!("DPoP {bound}"));
    let outcome = call.decide(&policy, &mut State::new(&policy));
    let denial = outcome.enforced_denial(&policy).expect("denied");
    assert_eq!(denial.status, 401);
    assert_eq!(
        denial.www_authenticate.as_deref(),
        Some(
            r#"DPoP error="invalid_dpop_proof", error_description="dpop_proof_missing", algs="ES256 ES384 RS256 PS256 EdDSA""#
        )
    );
}

#[test]
fn the_approval_request_says_what_to_approve() {
    let policy = policy_from(&sender_policy_json());
    let payer = es256(&with(
        claims(),
        json!({"txn": "task-pay", "acr": "urn:test:mfa", "auth_time": NOW,
               "authorization_details": [{"type": "urn:intentgate:tool-call", "locations": [AUDIENCE],
                   "actions": ["payments.refund"], "identifier": "refund_payment", "privileges": ["payment"]}]}),
    ));
    let mut call = Call::new("POST", "/api/payments/refund").header("authorization", &bearer(&payer));
    call.body = Some(b"{}");
    let outcome = call.decide(&policy, &mut State::new(&policy));
    assert_eq!(outcome.reason, Reason::ApprovalRequired);
    let Needed::Approval(request) = &outcome.needed else { panic!("no approval request") };
    assert_eq!(request["txn"], "task-pay");
    assert_eq!(request["agent"], "spiffe://test/agent/support-bot");
    assert_eq!(request["tool"], "refund_payment");
    assert_eq!(request["risk"], "payment");
    assert_eq!(request["approver"], "https://approver.test");
    assert_eq!(request["header"], "x-intentgate-approval");
    assert_eq!(request["args_sha256"].as_str().map(str::len), Some(43));
    assert_eq!(request["request_id"].as_str().map(str::len), Some(32));
    let denial = deny_response(outcome.reason, &outcome.needed, None, None);
    assert_eq!(denial.status, 403);
    let body: serde_json::Value = serde_json::from_str(&denial.body).unwrap();
    assert_eq!(
        (body["reason"].clone(), body["approval_request"].clone()),
        (json!("approval_required"), request.clone())
    );
    // the same call always gets the same request id; another body another digest
    let again = call.decide(&policy, &mut State::new(&policy));
    assert_eq!(again.needed, outcome.needed);
    call.body = Some(b"{\"x\":1}");
    assert_ne!(call.decide(&policy, &mut State::new(&policy)).needed, outcome.needed);
}

#[test]
fn mcp_arguments_are_approved_in_canonical_form() {
    // RFC 8785: member order and insignificant white space do not change what was approved
    let a = intentgate::approval::digest_of_arguments(&json!({"amount": 40, "ticket_id": "T-1"}));
    let b = intentgate::approval::digest_of_arguments(
        &serde_json::from_str(r#"{ "ticket_id" : "T-1", "amount" : 40.0 }"#).unwrap(),
    );
    assert_eq!(a, b);
    assert_ne!(a, intentgate::approval::digest_of_arguments(&json!({"amount": 41, "ticket_id": "T-1"})));
}
