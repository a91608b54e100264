//! Agent access tokens: from untrusted compact JWS to verified claims (token-profile.md §1–3).
//!
//! Only `verify` produces a `VerifiedToken`; every other path is a `Reason` for denial. The clock is a
//! parameter. The order of checks is: form → header → issuer → algorithm/key → signature → claims, so
//! nothing about the claims is judged before the signature holds.

use crate::crypto::{self, HostVerifier, Verifier};
use crate::keys::{Alg, VerificationKey};
use crate::keyset::{KeyStore, RemoteKeys};
use crate::outcome::Reason;
use crate::{b64url_decode, Risk};
use serde::Deserialize;
use std::collections::HashMap;

/// The `authorization_details` type intentgate understands (token-profile.md §4).
pub const TOOL_CALL_TYPE: &str = "urn:intentgate:tool-call";
/// `jti` values longer than this are refused: they end up in caches, logs and deny lists.
pub const MAX_JTI_LEN: usize = 256;
/// Nested `act` deeper than this is refused outright (the policy bound comes later, in delegation).
const MAX_ACT_PARSE_DEPTH: usize = 8;

/// One configured token issuer, compiled.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub issuer: String,
    /// Inline keys; the starting key set. Remote issuers start with none.
    pub keys: HashMap<String, VerificationKey>,
    pub remote: Option<RemoteKeys>,
    pub algorithms: Vec<Alg>,
    /// Accepted `typ` values, normalised (lower case, without `application/`).
    pub token_types: Vec<String>,
    pub max_ttl_s: i64,
    pub clock_skew_s: i64,
    pub subject_prefixes: Vec<String>,
    pub client_ids: Vec<String>,
    /// Who may appear in `act` (globs, `*` any run of characters); empty: no delegation.
    pub actor_patterns: Vec<String>,
    /// Longest `act` chain accepted.
    pub max_delegation_depth: usize,
    /// Tokens of this issuer must be sender-constrained (`cnf`: DPoP or mTLS).
    pub require_binding: bool,
}

/// One `authorization_details` entry of type `urn:intentgate:tool-call`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolCallDetail {
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    pub identifier: Option<String>,
    #[serde(default)]
    pub privileges: Vec<String>,
    /// Argument limits; checked by argument constraints (JSON-RPC issue), carried here already.
    #[serde(default)]
    pub limits: Option<serde_json::Value>,
}

impl ToolCallDetail {
    pub fn grants(&self, audience: &str, action: &str, tool: &str, risk: Risk) -> bool {
        self.locations.iter().any(|l| l == audience)
            && self.actions.iter().any(|a| a == action)
            && self.identifier.as_deref() == Some(tool)
            && self.privileges.iter().any(|p| p == risk.name())
    }
}

/// Claims of a token whose signature and every static rule have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: Option<String>,
    pub scope: Vec<String>,
    pub authorization_details: Vec<ToolCallDetail>,
    pub txn: Option<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
    /// Delegation chain from `act`, outermost (the current actor) first.
    pub act_chain: Vec<String>,
    pub cnf: Option<crate::binding::Confirmation>,
}

impl Claims {
    /// Who is acting now: the outermost actor, or the subject itself without delegation.
    pub fn presenter(&self) -> &str {
        self.act_chain.first().unwrap_or(&self.sub)
    }
}

/// A token that passed verification. Time-dependent checks are redone on every use (`check_time`).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub kid: String,
    pub alg: Alg,
    /// Position of the issuer in the policy (its key set in the `KeyStore`).
    pub issuer_index: usize,
    pub verified_by: Verifier,
    /// The issuer's clock skew, kept so that a cached token can be re-checked against a new `now`.
    pub clock_skew_s: i64,
}

impl VerifiedToken {
    /// `exp` and `nbf` against `now`, with skew. Called on every use, cached or not.
    pub fn check_time(&self, now: i64) -> Result<(), Reason> {
        let skew = self.clock_skew_s;
        if now >= self.claims.exp.saturating_add(skew) {
            return Err(Reason::TokenExpired);
        }
        if let Some(nbf) = self.claims.nbf {
            if nbf > now.saturating_add(skew) {
                return Err(Reason::TokenNotYetValid);
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A JSON value that may be a string or an array of strings (`aud`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    jti: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    authorization_details: Option<Vec<serde_json::Value>>,
    txn: Option<String>,
    acr: Option<String>,
    auth_time: Option<serde_json::Number>,
    act: Option<serde_json::Value>,
    cnf: Option<crate::binding::Confirmation>,
}

/// Verify a compact JWS access token against the configured issuers.
pub fn verify(
    token: &str,
    issuers: &[Issuer],
    key_store: &KeyStore,
    host: Option<&dyn HostVerifier>,
    audience: &str,
    max_token_bytes: usize,
    now: i64,
) -> Result<VerifiedToken, Reason> {
    // §2.1 compact form, bounded, base64url alphabet only
    if token.len() > max_token_bytes {
        return Err(Reason::TokenTooLarge);
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(Reason::TokenMalformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::TokenMalformed);
    };
    let header: Header = decode_json(header_b64)?;
    let raw: RawClaims = decode_json(payload_b64)?;
    let signature = b64url_decode(signature_b64).ok_or(Reason::TokenMalformed)?;

    // §2.2–2.4 header
    let alg_name = header.alg.as_deref().ok_or(Reason::AlgNotAllowed)?;
    if header.crit.is_some() {
        return Err(Reason::CritUnsupported);
    }
    let kid = match header.kid.as_deref() {
        Some(kid) if !kid.is_empty() => kid,
        _ => return Err(Reason::KidMissing),
    };

    // the issuer decides which keys and algorithms apply; `iss` is still untrusted here
    let iss = raw.iss.as_deref().ok_or(Reason::IssuerUnknown)?;
    let (issuer_index, issuer) =
        issuers.iter().enumerate().find(|(_, i)| i.issuer == iss).ok_or(Reason::IssuerUnknown)?;
    let alg = Alg::from_name(alg_name).filter(|a| issuer.algorithms.contains(a)).ok_or(Reason::AlgNotAllowed)?;
    // before the first key set arrives nothing from this issuer can be checked: not the token's fault
    let key_set = key_store.get(issuer_index).ok_or(Reason::KeysUnavailable)?;
    let key = key_set.keys.get(kid).ok_or(Reason::KidUnknown)?;
    if !key.algs.contains(&alg) {
        return Err(Reason::AlgKeyMismatch);
    }
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.get(..signing_input_len).ok_or(Reason::TokenMalformed)?;
    // the host (BoringSSL) where it can and passed its self-test, else pure Rust
    let host_answer = host
        .and_then(|h| crypto::host_arguments(key, alg, signing_input.as_bytes(), &signature).map(|args| (h, args)))
        .and_then(|(h, args)| h.verify(&args));
    let (valid, verified_by) = match host_answer {
        Some(valid) => (valid, Verifier::Host),
        None => (key.verify(alg, signing_input.as_bytes(), &signature), Verifier::Rust),
    };
    if !valid {
        return Err(Reason::SignatureInvalid);
    }

    // from here on the claims are the issuer's
    let typ = header.typ.as_deref().map(normalise_typ).unwrap_or_default();
    if !issuer.token_types.contains(&typ) {
        return Err(Reason::TypInvalid);
    }
    let claims = check_claims(raw, issuer, audience, now)?;
    let verified = VerifiedToken {
        claims,
        kid: kid.to_string(),
        alg,
        issuer_index,
        verified_by,
        clock_skew_s: issuer.clock_skew_s,
    };
    verified.check_time(now)?;
    Ok(verified)
}

/// The configured issuer a token names (unverified), for deciding whether an unknown `kid` is worth
/// a key refresh.
pub fn issuer_index_of(token: &str, issuers: &[Issuer]) -> Option<usize> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let claims: Iss = decode_json(payload).ok()?;
    let iss = claims.iss?;
    issuers.iter().position(|i| i.issuer == iss)
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, `application/` optional.
pub fn normalise_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, Reason> {
    let bytes = b64url_decode(segment).ok_or(Reason::TokenMalformed)?;
    // serde accepts a JSON array for a struct (positional fields): only an object is a JOSE header
    // or a claims set
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Reason::TokenMalformed);
    }
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        // JSON with claims of the wrong type, or a claim twice, is not a transport problem: it is a
        // token whose claims cannot be trusted
        serde_json::error::Category::Data => Reason::ClaimsInvalid,
        _ => Reason::TokenMalformed,
    })
}

fn numeric_date(value: Option<serde_json::Number>) -> Result<Option<i64>, Reason> {
    match value {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    // RFC 7519 NumericDate may carry fractions; whole seconds are enough here
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(Reason::ClaimsInvalid),
                }
            }
        }
    }
}

fn check_claims(raw: RawClaims, issuer: &Issuer, audience: &str, now: i64) -> Result<Claims, Reason> {
    let aud = match raw.aud {
        Some(OneOrMany::One(a)) => vec![a],
        Some(OneOrMany::Many(list)) => list,
        None => Vec::new(),
    };
    if !aud.iter().any(|a| a == audience) {
        return Err(Reason::AudienceMismatch);
    }
    let exp = numeric_date(raw.exp)?.ok_or(Reason::ExpMissing)?;
    let iat = numeric_date(raw.iat)?.ok_or(Reason::IatMissing)?;
    let nbf = numeric_date(raw.nbf)?;
    let auth_time = numeric_date(raw.auth_time)?;
    let skew = issuer.clock_skew_s;
    if now >= exp.saturating_add(skew) {
        return Err(Reason::TokenExpired);
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(skew) {
            return Err(Reason::TokenNotYetValid);
        }
    }
    if iat > now.saturating_add(skew) {
        return Err(Reason::IatInFuture);
    }
    if exp.saturating_sub(iat) > issuer.max_ttl_s {
        return Err(Reason::LifetimeTooLong);
    }
    let jti = raw.jti.ok_or(Reason::JtiMissing)?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(Reason::JtiInvalid);
    }
    let sub = match raw.sub {
        Some(sub) if !sub.is_empty() => sub,
        _ => return Err(Reason::SubMissing),
    };
    if !issuer.subject_prefixes.is_empty() && !issuer.subject_prefixes.iter().any(|p| sub.starts_with(p.as_str())) {
        return Err(Reason::SubjectNotAllowed);
    }
    if !issuer.client_ids.is_empty() {
        match raw.client_id.as_deref() {
            Some(id) if issuer.client_ids.iter().any(|c| c == id) => {}
            _ => return Err(Reason::ClientNotAllowed),
        }
    }
    let mut authorization_details = Vec::new();
    for entry in raw.authorization_details.unwrap_or_default() {
        // RFC 9396 §2: every entry has a string `type`; entries of other types are not ours to judge
        match entry.get("type").and_then(|t| t.as_str()) {
            Some(TOOL_CALL_TYPE) => {
                let detail: ToolCallDetail = serde_json::from_value(entry).map_err(|_| Reason::ClaimsInvalid)?;
                authorization_details.push(detail);
            }
            Some(_) => {}
            None => return Err(Reason::ClaimsInvalid),
        }
    }
    let act_chain = match raw.act {
        None => Vec::new(),
        Some(act) => parse_act_chain(&act)?,
    };
    check_delegation(&sub, &act_chain, issuer)?;
    Ok(Claims {
        iss: issuer.issuer.clone(),
        sub,
        aud,
        exp,
        iat,
        nbf,
        jti,
        client_id: raw.client_id,
        scope: raw
            .scope
            .map(|s| s.split(' ').filter(|v| !v.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        authorization_details,
        txn: raw.txn.filter(|t| !t.is_empty()),
        acr: raw.acr,
        auth_time,
        act_chain,
        cnf: raw.cnf.filter(|c| c.jkt.is_some() || c.x5t_s256.is_some()),
    })
}

/// token-profile.md §6: bounded depth, no subject twice, every actor allowed by the issuer.
fn check_delegation(sub: &str, chain: &[String], issuer: &Issuer) -> Result<(), Reason> {
    if chain.is_empty() {
        return Ok(());
    }
    if chain.len() > issuer.max_delegation_depth {
        return Err(Reason::DelegationTooDeep);
    }
    let mut seen = std::collections::HashSet::new();
    for who in std::iter::once(sub).chain(chain.iter().map(String::as_str)) {
        if !seen.insert(who) {
            return Err(Reason::DelegationCycle);
        }
    }
    for actor in chain {
        if !issuer.actor_patterns.iter().any(|p| crate::constraints::glob_match(p, actor)) {
            return Err(Reason::DelegationActorNotAllowed);
        }
    }
    Ok(())
}

/// RFC 8693 §4.1: `act` is an object with a `sub` and optionally a nested `act` (the prior actor).
fn parse_act_chain(act: &serde_json::Value) -> Result<Vec<String>, Reason> {
    let mut chain = Vec::new();
    let mut current = Some(act);
    while let Some(actor) = current {
        if chain.len() >= MAX_ACT_PARSE_DEPTH {
            return Err(Reason::ClaimsInvalid);
        }
        let sub = actor.get("sub").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).ok_or(Reason::ClaimsInvalid)?;
        chain.push(sub.to_string());
        current = actor.get("act");
    }
    Ok(chain)
}
