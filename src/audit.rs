//! Audit output (token-profile.md §10): the headers the upstream sees and the one JSON record per
//! request. Neither ever contains the token; both carry a SHA-256 of it.

use crate::{hex, Outcome, Protocol, RequestFacts};
use serde::Serialize;
use serde_json::Value;

/// The suffixes of every audit header; the configured prefix goes in front. Inbound headers with the
/// prefix are removed before these are set, so an agent cannot spoof any of them.
pub const HEADER_SUFFIXES: [&str; 12] = [
    "subject",
    "client-id",
    "actor",
    "txn",
    "tool",
    "action",
    "risk",
    "decision",
    "reason",
    "mode",
    "audit-id",
    "token-sha256",
];

/// How many hex characters of the token hash go into the upstream header (64 bits).
const HEADER_HASH_HEX: usize = 16;
/// Claim values in headers are cut here; the audit record keeps them whole.
const HEADER_VALUE_MAX: usize = 256;

/// The headers to set on a request that goes upstream (allowed, or denied in `dry_run`).
pub fn upstream_headers(prefix: &str, outcome: &Outcome, audit_id: &str) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(HEADER_SUFFIXES.len());
    let mut push = |suffix: &str, value: &str| {
        if !value.is_empty() {
            headers.push((format!("{prefix}{suffix}"), header_safe(value)));
        }
    };
    if let Some(token) = &outcome.token {
        let claims = &token.claims;
        push("subject", &claims.sub);
        push("client-id", claims.client_id.as_deref().unwrap_or(""));
        push("actor", claims.act_chain.first().map(String::as_str).unwrap_or(""));
        push("txn", claims.txn.as_deref().unwrap_or(""));
    }
    if let Some(intent) = &outcome.intent {
        push("tool", &intent.tool);
        push("action", &intent.action);
        push("risk", intent.risk.name());
    }
    push("decision", outcome.decision());
    push("reason", outcome.reason.code());
    push("mode", outcome.mode.name());
    push("audit-id", audit_id);
    if let Some(hash) = &outcome.token_sha256 {
        let full = hex(hash);
        push("token-sha256", full.get(..HEADER_HASH_HEX).unwrap_or(&full));
    }
    headers
}

/// Header values are visible ASCII; anything else is percent-encoded so that a claim cannot inject a
/// header line or trip the proxy's header validation.
fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if out.len() >= HEADER_VALUE_MAX {
            break;
        }
        if (0x21..0x7f).contains(&b) && b != b'%' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who produced the response the client got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Responder {
    /// intentgate denied the request itself.
    Intentgate,
    Upstream,
    /// The stream ended before any response (client went away, upstream reset).
    None,
}

/// One audit record. Attribute names follow OpenTelemetry (HTTP, GenAI, MCP) where they exist.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub audit_id: String,
    pub time_unix_ms: u64,
    pub mode: &'static str,
    pub decision: &'static str,
    /// False when `dry_run` let a denied request through.
    pub enforced: bool,
    pub reason: &'static str,
    /// The policy rule that classified the request, `tools[i].match[j]`.
    pub rule: Option<String>,
    #[serde(rename = "http.request.method")]
    pub method: String,
    #[serde(rename = "url.path")]
    pub path: String,
    #[serde(rename = "server.address")]
    pub host: String,
    #[serde(rename = "server.port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(rename = "gen_ai.tool.name")]
    pub tool: Option<String>,
    #[serde(rename = "mcp.method.name", skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<String>,
    /// A2A calls: the method as sent.
    #[serde(rename = "rpc.method", skip_serializing_if = "Option::is_none")]
    pub rpc_method: Option<String>,
    #[serde(rename = "jsonrpc.request.id", skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<String>,
    #[serde(rename = "mcp.protocol.version", skip_serializing_if = "Option::is_none")]
    pub mcp_protocol_version: Option<String>,
    /// The argument constraint that decided, and how (`passed`, `failed`, `argument_missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint_outcome: Option<&'static str>,
    /// For filtered MCP `tools/list` responses: how many tools the agent did not get to see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_list_removed: Option<usize>,
    pub action: Option<String>,
    pub risk: Option<&'static str>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    /// The outermost actor (the one acting now), and the whole chain, outermost first.
    pub actor: Option<String>,
    pub act_chain: Vec<String>,
    pub txn: Option<String>,
    pub jti: Option<String>,
    /// The caller authenticated by its client certificate (X.509-SVID SPIFFE ID), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// How the token was bound to its presenter: `dpop` or `mtls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_binding: Option<&'static str>,
    /// The human approval this call used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_jti: Option<String>,
    pub token_sha256: Option<String>,
    pub token_cache: Option<&'static str>,
    /// Who checked the signature on a cache miss: `host` (BoringSSL) or `rust`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_verifier: Option<&'static str>,
    #[serde(rename = "http.response.status_code")]
    pub status: Option<u16>,
    pub responder: Responder,
    pub duration_ms: Option<u64>,
}

impl AuditRecord {
    /// The record as far as the decision knows it; the adapter completes it when the request ends.
    pub fn new(outcome: &Outcome, facts: &RequestFacts<'_>, audit_id: &str, time_unix_ms: u64) -> AuditRecord {
        let claims = outcome.token.as_ref().map(|t| &t.claims);
        let rpc = outcome.rpc.as_ref();
        AuditRecord {
            audit_id: audit_id.to_string(),
            time_unix_ms,
            mode: outcome.mode.name(),
            decision: outcome.decision(),
            enforced: !outcome.passes() || outcome.allowed(),
            reason: outcome.reason.code(),
            rule: outcome.intent.as_ref().map(|i| i.rule.clone()),
            method: facts.method.to_string(),
            path: outcome
                .normalised_path
                .clone()
                .unwrap_or_else(|| facts.path.split('?').next().unwrap_or("").to_string()),
            host: crate::catalog::host_of(facts.authority),
            port: facts.authority.rsplit_once(':').and_then(|(_, p)| p.parse().ok()),
            tool: outcome
                .intent
                .as_ref()
                .map(|i| i.tool.clone())
                .or_else(|| outcome.rpc.as_ref().and_then(|r| r.name.clone())),
            mcp_method: rpc.filter(|r| r.protocol == Some(Protocol::Mcp)).and_then(|r| r.method.clone()),
            rpc_method: rpc.filter(|r| r.protocol == Some(Protocol::A2a)).and_then(|r| r.method.clone()),
            rpc_id: rpc.and_then(|r| match &r.id {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }),
            mcp_protocol_version: rpc.and_then(|r| r.protocol_version.clone()),
            constraint: outcome.constraint.as_ref().and_then(|c| c.constraint().map(str::to_string)),
            constraint_outcome: outcome.constraint.as_ref().map(|c| c.outcome()),
            tools_list_removed: None,
            action: outcome.intent.as_ref().map(|i| i.action.clone()),
            risk: outcome.intent.as_ref().map(|i| i.risk.name()),
            iss: claims.map(|c| c.iss.clone()),
            sub: claims.map(|c| c.sub.clone()),
            client_id: claims.and_then(|c| c.client_id.clone()),
            actor: claims.and_then(|c| c.act_chain.first().cloned()),
            act_chain: claims.map(|c| c.act_chain.clone()).unwrap_or_default(),
            txn: claims.and_then(|c| c.txn.clone()),
            jti: claims.map(|c| c.jti.clone()),
            caller: facts.peer.and_then(|p| p.spiffe_id()).map(str::to_string),
            token_binding: claims
                .and_then(|c| c.cnf.as_ref())
                .map(|cnf| if cnf.jkt.is_some() { "dpop" } else { "mtls" }),
            approval_jti: outcome.claims.iter().find(|c| c.kind == crate::ClaimKind::Approval).map(|c| c.id.clone()),
            token_sha256: outcome.token_sha256.as_ref().map(hex),
            token_cache: outcome.token_cache.map(|hit| if hit { "hit" } else { "miss" }),
            signature_verifier: outcome
                .token
                .as_ref()
                .filter(|_| outcome.token_cache == Some(false))
                .map(|t| t.verified_by.name()),
            status: None,
            responder: Responder::None,
            duration_ms: None,
        }
    }

    pub fn finish(&mut self, status: Option<u16>, responder: Responder, duration_ms: u64) {
        self.status = status;
        self.responder = responder;
        self.duration_ms = Some(duration_ms);
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"error\":\"audit_serialisation_failed\"}"))
    }
}
