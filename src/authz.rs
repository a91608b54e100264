//! Does the verified task cover the classified call? (token-profile.md §4–5)
//! Precedence, written once: not granted → insufficient scope; granted but `write`+ without `txn`
//! → txn required; granted but needing step-up without it → step-up; otherwise allow.

use crate::catalog::Tool;
use crate::config::Policy;
use crate::outcome::{Needed, Reason};
use crate::token::VerifiedToken;
use crate::Risk;

pub fn authorize(
    policy: &Policy,
    tool: &Tool,
    token: &VerifiedToken,
    now: i64,
) -> Result<Reason, (Reason, Needed)> {
    let claims = &token.claims;
    let by_scope = tool.scopes.iter().any(|s| claims.scope.contains(s));
    let by_details = claims
        .authorization_details
        .iter()
        .any(|d| d.grants(&policy.audience, &tool.action, &tool.name, tool.risk));
    let granted = match (by_scope, by_details) {
        (_, true) => Reason::AuthorizationDetailsGranted,
        (true, false) => Reason::ScopeGranted,
        (false, false) => {
            return Err((
                Reason::ScopeInsufficient,
                Needed::Scopes(tool.scopes.clone()),
            ))
        }
    };
    if tool.risk >= Risk::Write && claims.txn.is_none() {
        return Err((Reason::TxnRequired, Needed::Nothing));
    }
    if policy.step_up.risks.contains(&tool.risk) && !stepped_up(policy, token, now) {
        return Err((
            Reason::StepUpRequired,
            Needed::StepUp {
                acr_values: policy.step_up.acr_values.clone(),
                max_age_s: policy.step_up.max_age_s as u64,
            },
        ));
    }
    Ok(granted)
}

/// RFC 9470: an accepted `acr` and an `auth_time` no older than `max_age_s` (and not in the future).
fn stepped_up(policy: &Policy, token: &VerifiedToken, now: i64) -> bool {
    let claims = &token.claims;
    let acr_ok = claims
        .acr
        .as_ref()
        .is_some_and(|acr| policy.step_up.acr_values.contains(acr));
    let fresh = claims.auth_time.is_some_and(|t| {
        t <= now.saturating_add(token.clock_skew_s)
            && now.saturating_sub(t) <= policy.step_up.max_age_s
    });
    acr_ok && fresh
}
