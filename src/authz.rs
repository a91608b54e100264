//! Does the verified task cover the classified call? (token-profile.md §4–5)
//! Precedence, written once: not granted → insufficient scope; granted but `write`+ without `txn`
//! → txn required; granted but needing step-up without it → step-up; otherwise allow. Argument
//! constraints are checked after this, against the entries that granted the call.

use crate::catalog::Tool;
use crate::config::Policy;
use crate::outcome::{Needed, Reason};
use crate::token::{ToolCallDetail, VerifiedToken};
use crate::Risk;

/// A granted call: why, and which `authorization_details` entries approved it (their `limits` bound
/// the call's arguments).
#[derive(Debug)]
pub struct Grant<'t> {
    pub reason: Reason,
    pub entries: Vec<&'t ToolCallDetail>,
}

/// The task covers the tool (by scope or by an entry), before any condition on the call.
pub fn task_covers<'t>(policy: &Policy, tool: &Tool, action: &str, token: &'t VerifiedToken) -> Option<Grant<'t>> {
    let claims = &token.claims;
    let entries: Vec<&ToolCallDetail> = claims
        .authorization_details
        .iter()
        .filter(|d| d.grants(&policy.audience, action, &tool.identifier, tool.risk))
        .collect();
    if !entries.is_empty() {
        return Some(Grant { reason: Reason::AuthorizationDetailsGranted, entries });
    }
    tool.scopes.iter().any(|s| claims.scope.contains(s)).then_some(Grant { reason: Reason::ScopeGranted, entries })
}

pub fn authorize<'t>(
    policy: &Policy,
    tool: &Tool,
    action: &str,
    token: &'t VerifiedToken,
    now: i64,
) -> Result<Grant<'t>, (Reason, Needed)> {
    let grant = task_covers(policy, tool, action, token)
        .ok_or_else(|| (Reason::ScopeInsufficient, Needed::Scopes(tool.scopes.clone())))?;
    if tool.risk >= Risk::Write && token.claims.txn.is_none() {
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
    Ok(grant)
}

/// RFC 9470: an accepted `acr` and an `auth_time` no older than `max_age_s` (and not in the future).
fn stepped_up(policy: &Policy, token: &VerifiedToken, now: i64) -> bool {
    let claims = &token.claims;
    let acr_ok = claims.acr.as_ref().is_some_and(|acr| policy.step_up.acr_values.contains(acr));
    let fresh = claims.auth_time.is_some_and(|t| {
        t <= now.saturating_add(token.clock_skew_s) && now.saturating_sub(t) <= policy.step_up.max_age_s
    });
    acr_ok && fresh
}
