//! Human approval bound to the exact call (token-profile.md §5): for the riskiest classes a call also
//! needs a short-lived JWT from the approver that names this task, this agent, this tool and a hash of
//! these arguments. Without one, the denial says precisely what would have to be approved.

use crate::catalog::Tool;
use crate::config::{Approvals, Policy};
use crate::crypto::HostVerifier;
use crate::outcome::{Needed, Reason};
use crate::token::{self, VerifiedToken};
use crate::{b64url_decode, hex, jcs, Body, Claim, ClaimKind, RequestFacts};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// SHA-256 (base64url) of what the call does: RFC 8785 canonical JSON of an MCP tool call's
/// arguments; for anything else `METHOD "\n" target "\n" hex(SHA-256(body))`, with the normalised
/// path and query as the target.
pub fn call_digest(arguments: Option<&Value>, facts: &RequestFacts<'_>, target: &str) -> String {
    let digest: [u8; 32] = match arguments {
        Some(arguments) => Sha256::digest(jcs::canonical(arguments).as_bytes()).into(),
        None => {
            let body: &[u8] = match facts.body {
                Body::Complete(bytes) => bytes,
                Body::NotRead | Body::TooLarge => &[],
            };
            let body_hash: [u8; 32] = Sha256::digest(body).into();
            Sha256::digest(format!("{}\n{}\n{}", facts.method, target, hex(&body_hash)).as_bytes()).into()
        }
    };
    crate::binding::b64url(&digest)
}

/// The claims an approval adds to the registered ones (`txn`, `sub`, `jti`, `exp` …).
#[derive(Deserialize)]
struct Bound {
    tool: Option<String>,
    args_sha256: Option<String>,
}

/// Check the approval presented for this call; on success, its `jti` to spend.
#[allow(clippy::too_many_arguments)]
pub fn check(
    policy: &Policy,
    approvals: &Approvals,
    facts: &RequestFacts<'_>,
    token: &VerifiedToken,
    tool: &Tool,
    digest: &str,
    host: Option<&dyn HostVerifier>,
    now: i64,
) -> Result<Claim, (Reason, Needed)> {
    let claims = &token.claims;
    let agent = claims.presenter();
    let txn = claims.txn.as_deref().unwrap_or("");
    let id_input = format!("{txn}\n{agent}\n{}\n{digest}", tool.name);
    let id_hash: [u8; 32] = Sha256::digest(id_input.as_bytes()).into();
    let request = json!({
        "request_id": hex(&id_hash).get(..32).unwrap_or_default(),
        "approver": approvals.issuer.issuer,
        "header": approvals.header,
        "typ": approvals.issuer.token_types.first(),
        "aud": policy.audience,
        "txn": txn,
        "agent": agent,
        "tool": tool.name,
        "risk": tool.risk.name(),
        "args_sha256": digest,
        "max_ttl_s": approvals.issuer.max_ttl_s,
    });
    let refuse = |reason| Err((reason, Needed::Approval(request.clone())));
    let mut presented = facts.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&approvals.header));
    let approval = match (presented.next(), presented.next()) {
        (None, _) => return refuse(Reason::ApprovalRequired),
        (Some(_), Some(_)) => return refuse(Reason::ApprovalInvalid),
        (Some((_, approval)), None) => approval.trim(),
    };
    let verified = match token::verify(
        approval,
        std::slice::from_ref(&approvals.issuer),
        &approvals.keys,
        host,
        &policy.audience,
        policy.max_token_bytes,
        now,
    ) {
        Ok(verified) => verified,
        Err(_) => return refuse(Reason::ApprovalInvalid),
    };
    let bound: Option<Bound> =
        approval.split('.').nth(1).and_then(b64url_decode).and_then(|payload| serde_json::from_slice(&payload).ok());
    let Some(bound) = bound else {
        return refuse(Reason::ApprovalInvalid);
    };
    let approved = &verified.claims;
    let matches = claims.txn.is_some()
        && approved.txn == claims.txn
        && approved.sub == agent
        && bound.tool.as_deref() == Some(tool.name.as_str())
        && bound.args_sha256.as_deref() == Some(digest);
    if !matches {
        return refuse(Reason::ApprovalMismatch);
    }
    Ok(Claim {
        kind: ClaimKind::Approval,
        id: approved.jti.clone(),
        expires_at: approved.exp.saturating_add(verified.clock_skew_s),
    })
}

/// Whether an allowed call's body must be read before deciding: a plain HTTP tool that needs an
/// approval binds its body too.
pub fn needs_body(policy: &Policy, tool: &Tool) -> bool {
    policy.approvals.as_ref().is_some_and(|a| a.risks.contains(&tool.risk))
        && matches!(tool.kind, crate::catalog::ToolKind::Http)
}

/// The digest an approver computes for an MCP tool call's arguments.
pub fn digest_of_arguments(arguments: &Value) -> String {
    let digest: [u8; 32] = Sha256::digest(jcs::canonical(arguments).as_bytes()).into();
    crate::binding::b64url(&digest)
}
