//! intentgate's core: decides whether one request fits the task its agent token was minted for.
//!
//! Pure Rust with no proxy-wasm types: the adapter gathers `RequestFacts` and the host's clock, calls
//! [`evaluate`], and applies the [`Outcome`]. The whole request path is this file's `evaluate`:
//!
//! 1. the request itself: one `Authorization` header at most, a path that normalises safely;
//! 2. who is calling: the bearer token, verified (or taken from the verified-token cache);
//! 3. what is being asked: the catalog classifies the request into tool, action and risk;
//! 4. does the task cover it: scope or `authorization_details`, `txn`, step-up.
//!
//! Any failure is a deny with one [`Reason`]; `dry_run` only changes whether a deny is enforced.

pub mod audit;
pub mod authz;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod keys;
pub mod outcome;
pub mod path;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;

pub use audit::{AuditRecord, Responder};
pub use cache::TokenCache;
pub use config::{ConfigError, Mode, Policy, UnknownTool};
pub use outcome::{deny_response, DenyResponse, Needed, Reason};
pub use token::VerifiedToken;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::rc::Rc;

/// Risk classes, lowest first (token-profile.md §5). The catalog assigns them; nothing else can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Read,
    Write,
    Credential,
    Payment,
    Infra,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Credential => "credential",
            Risk::Payment => "payment",
            Risk::Infra => "infra",
        }
    }
}

/// What the adapter knows about a request when it decides. Header names are lower case.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path`, as received.
    pub path: &'a str,
    /// `:authority`, as received.
    pub authority: &'a str,
    /// Every request header, pseudo-headers included.
    pub headers: &'a [(String, String)],
}

/// The classified call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub tool: String,
    pub action: String,
    pub risk: Risk,
    pub rule: String,
}

/// The decision and everything the adapter needs to apply and audit it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    pub reason: Reason,
    pub needed: Needed,
    pub intent: Option<Intent>,
    pub token: Option<Rc<VerifiedToken>>,
    /// SHA-256 of the presented token text, whether or not it verified.
    pub token_sha256: Option<[u8; 32]>,
    /// `Some(true)` when the token came from the verified-token cache.
    pub token_cache: Option<bool>,
    pub normalised_path: Option<String>,
    /// The normalised request target (path + query) when it differs from `:path`: the adapter
    /// forwards this, so the upstream serves exactly what was authorised.
    pub rewrite_target: Option<String>,
}

impl Outcome {
    fn new(mode: Mode) -> Outcome {
        Outcome {
            mode,
            reason: Reason::TokenMissing,
            needed: Needed::Nothing,
            intent: None,
            token: None,
            token_sha256: None,
            token_cache: None,
            normalised_path: None,
            rewrite_target: None,
        }
    }

    fn decide(mut self, reason: Reason, needed: Needed) -> Outcome {
        self.reason = reason;
        self.needed = needed;
        self
    }

    pub fn allowed(&self) -> bool {
        self.reason.is_allow()
    }

    /// Whether the request goes upstream: allowed, or denied in `dry_run`.
    pub fn passes(&self) -> bool {
        self.allowed() || self.mode == Mode::DryRun
    }

    pub fn decision(&self) -> &'static str {
        if self.allowed() {
            "allow"
        } else {
            "deny"
        }
    }

    /// The response to send instead of forwarding, when the decision is enforced.
    pub fn enforced_denial(&self, policy: &Policy) -> Option<DenyResponse> {
        (!self.passes()).then(|| {
            deny_response(
                self.reason,
                &self.needed,
                policy.resource_metadata.as_deref(),
            )
        })
    }
}

/// Decide one request. `now` is the host's clock in Unix seconds; `cache` holds verified tokens
/// across requests (it is the only state, and it never changes a decision, only its cost).
pub fn evaluate(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    now: i64,
    cache: &mut TokenCache,
) -> Outcome {
    let mut outcome = Outcome::new(policy.mode);

    // 1. the request itself
    let mut authorization = facts
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let (Some(credentials), None) = (authorization.next(), authorization.next()) else {
        return match facts
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            true => outcome.decide(Reason::AuthorizationInvalid, Needed::Nothing),
            false => outcome.decide(Reason::TokenMissing, Needed::Nothing),
        };
    };
    let target = match path::normalise(facts.path) {
        Ok(target) => target,
        Err(_) => return outcome.decide(Reason::PathInvalid, Needed::Nothing),
    };
    if target.target() != facts.path {
        outcome.rewrite_target = Some(target.target());
    }
    outcome.normalised_path = Some(target.path.clone());

    // 2. who is calling
    let raw_token = match bearer_token(&credentials.1) {
        Ok(token) => token,
        Err(reason) => return outcome.decide(reason, Needed::Nothing),
    };
    let hash: [u8; 32] = Sha256::digest(raw_token.as_bytes()).into();
    outcome.token_sha256 = Some(hash);
    let token = match cache.get(&hash, now) {
        Some(token) => {
            outcome.token_cache = Some(true);
            token
        }
        None => {
            outcome.token_cache = Some(false);
            match token::verify(
                raw_token,
                &policy.issuers,
                &policy.audience,
                policy.max_token_bytes,
                now,
            ) {
                Ok(verified) => {
                    let verified = Rc::new(verified);
                    cache.insert(hash, Rc::clone(&verified));
                    verified
                }
                Err(reason) => return outcome.decide(reason, Needed::Nothing),
            }
        }
    };
    outcome.token = Some(Rc::clone(&token));

    // 3. what is being asked
    let host = catalog::host_of(facts.authority);
    let request = catalog::Target {
        method: facts.method,
        path: &target.path,
        host: &host,
        headers: facts.headers,
    };
    let Some((tool, rule)) = policy.catalog.classify(&request) else {
        return match policy.unknown_tool {
            UnknownTool::Deny => outcome.decide(Reason::ToolUnknown, Needed::Nothing),
            UnknownTool::AllowWithToken => {
                outcome.decide(Reason::UnknownToolAllowed, Needed::Nothing)
            }
        };
    };
    outcome.intent = Some(Intent {
        tool: tool.name.clone(),
        action: tool.action.clone(),
        risk: tool.risk,
        rule: rule.id.clone(),
    });

    // 4. does the task cover it
    match authz::authorize(policy, tool, &token, now) {
        Ok(granted) => outcome.decide(granted, Needed::Nothing),
        Err((reason, needed)) => outcome.decide(reason, needed),
    }
}

/// RFC 6750 §2.1: `Bearer` (any case), one or more spaces, the token. Other schemes are not
/// credentials this gateway accepts: the caller gets the bare challenge.
fn bearer_token(value: &str) -> Result<&str, Reason> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Reason::TokenMissing);
    }
    let token = rest.trim_start_matches(' ').trim_end_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(Reason::TokenMalformed);
    }
    Ok(token)
}

/// Unpadded base64url, as JOSE uses; padding or any other alphabet is refused.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

pub fn hex(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}
