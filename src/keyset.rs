//! Key sets that change at run time: remote JWKS (plain, via OIDC discovery, or SPIFFE trust
//! bundles), the refresh schedule, and the per-issuer store the verifier reads.

use crate::keys::{compile_jwk, Alg, VerificationKey};
use serde_json::Value;
use std::collections::HashMap;

/// Where and how an issuer's keys are fetched. The adapter does the I/O; this is the policy for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    /// The Envoy cluster serving the keys.
    pub cluster: String,
    /// Path of the JWKS, or of the OIDC discovery document when `discovery` is set.
    pub path: String,
    pub authority: String,
    pub discovery: bool,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    pub min_refresh_s: u64,
    pub max_refresh_s: u64,
    /// At most one fetch per issuer per this many seconds because of an unknown `kid`.
    pub unknown_kid_debounce_s: u64,
}

/// The keys of one issuer, as last obtained.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: HashMap<String, VerificationKey>,
}

/// Every issuer's current key set, by issuer index. `None`: never obtained (fail closed, 503).
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    sets: Vec<Option<KeySet>>,
}

impl KeyStore {
    pub fn new(issuers: usize) -> KeyStore {
        KeyStore { sets: vec![None; issuers] }
    }

    pub fn get(&self, issuer: usize) -> Option<&KeySet> {
        self.sets.get(issuer).and_then(Option::as_ref)
    }

    pub fn set(&mut self, issuer: usize, keys: KeySet) {
        if let Some(slot) = self.sets.get_mut(issuer) {
            *slot = Some(keys);
        }
    }
}

/// Why a fetched document was not used (the last good set stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Status(u32),
    TooLarge,
    Malformed(&'static str),
    Timeout,
}

impl FetchError {
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Status(_) => "status",
            FetchError::TooLarge => "too_large",
            FetchError::Malformed(_) => "malformed",
            FetchError::Timeout => "timeout",
        }
    }
}

/// A parsed key set document.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub keys: KeySet,
    /// `spiffe_refresh_hint` of a SPIFFE trust bundle, seconds.
    pub refresh_hint_s: Option<u64>,
    /// Keys that could not be used (unsupported type, bad coordinates, not for JWT signing).
    pub skipped: usize,
}

/// Parse a JWKS or SPIFFE trust bundle. A key that cannot be used is skipped, not fatal: one odd key
/// in a provider's set must not take the others down. A document with no `keys` array is malformed;
/// a set with no usable key is an empty set, which trusts nothing.
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<Fetched, FetchError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| FetchError::Malformed("not json"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or(FetchError::Malformed("no keys array"))?;
    let mut set = KeySet::default();
    let mut skipped = 0;
    for key in keys {
        // SPIFFE bundles mark JWT-SVID keys `use: jwt-svid` (and X.509 ones `x509-svid`)
        let usable = match key.get("use").and_then(Value::as_str) {
            None | Some("sig") => Some(key.clone()),
            Some("jwt-svid") => {
                let mut k = key.clone();
                if let Some(map) = k.as_object_mut() {
                    map.insert("use".into(), "sig".into());
                }
                Some(k)
            }
            Some(_) => None,
        };
        match usable.map(|k| compile_jwk(&k, allowed)) {
            Some(Ok(compiled)) if !set.keys.contains_key(&compiled.kid) => {
                set.keys.insert(compiled.kid.clone(), compiled);
            }
            _ => skipped += 1,
        }
    }
    let refresh_hint_s = doc.get("spiffe_refresh_hint").and_then(Value::as_u64);
    Ok(Fetched { keys: set, refresh_hint_s, skipped })
}

/// The path of `jwks_uri` in an OIDC discovery document (fetched from the same cluster).
pub fn parse_discovery(body: &[u8]) -> Result<String, FetchError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| FetchError::Malformed("not json"))?;
    let uri = doc.get("jwks_uri").and_then(Value::as_str).ok_or(FetchError::Malformed("no jwks_uri"))?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or(FetchError::Malformed("jwks_uri not http(s)"))?;
    let path = rest.find('/').map(|i| rest.split_at(i).1).unwrap_or("/");
    Ok(path.to_string())
}

/// Seconds until the next scheduled refresh: `Cache-Control: max-age`, else the SPIFFE refresh hint,
/// else the maximum — clamped to the configured bounds.
pub fn refresh_after(cache_control: Option<&str>, hint_s: Option<u64>, remote: &RemoteKeys) -> u64 {
    let max_age = cache_control.and_then(|cc| {
        cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=").and_then(|v| v.trim().parse::<u64>().ok()))
    });
    max_age.or(hint_s).unwrap_or(remote.max_refresh_s).clamp(remote.min_refresh_s, remote.max_refresh_s)
}

/// Retry delay after `failures` consecutive failed fetches: doubling from one second, capped (by the
/// minimum refresh interval, or the feed's poll interval), so a broken server is neither hammered nor
/// forgotten.
pub fn backoff_s(failures: u32, cap_s: u64) -> u64 {
    let doubled = 1u64.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u64::MAX);
    doubled.min(cap_s.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn remote() -> RemoteKeys {
        RemoteKeys {
            cluster: "keys".into(),
            path: "/jwks".into(),
            authority: "keys".into(),
            discovery: false,
            timeout_ms: 1000,
            max_bytes: 65536,
            min_refresh_s: 30,
            max_refresh_s: 3600,
            unknown_kid_debounce_s: 10,
        }
    }

    #[test]
    fn documents() {
        let ed =
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let svid = json!({"kty": "OKP", "crv": "Ed25519", "kid": "b", "use": "jwt-svid", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let x509 = json!({"kty": "OKP", "crv": "Ed25519", "kid": "c", "use": "x509-svid", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let odd = json!({"kty": "XYZ", "kid": "d"});
        let doc = json!({"keys": [ed, svid, x509, odd], "spiffe_refresh_hint": 120}).to_string();
        let fetched = parse_jwks(doc.as_bytes(), &[Alg::EdDsa]).unwrap();
        let mut kids: Vec<&String> = fetched.keys.keys.keys().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!((fetched.refresh_hint_s, fetched.skipped), (Some(120), 2));
        assert_eq!(parse_jwks(b"<html>", &[Alg::EdDsa]).err(), Some(FetchError::Malformed("not json")));
        assert_eq!(parse_jwks(b"{\"k\":[]}", &[Alg::EdDsa]).err(), Some(FetchError::Malformed("no keys array")));
        assert!(parse_jwks(b"{\"keys\":[]}", &[Alg::EdDsa]).unwrap().keys.keys.is_empty());
        assert_eq!(parse_discovery(br#"{"jwks_uri":"https://idp.test/oauth/jwks?x=1"}"#), Ok("/oauth/jwks?x=1".into()));
        assert!(parse_discovery(br#"{"issuer":"x"}"#).is_err());
    }

    #[test]
    fn schedule() {
        let r = remote();
        assert_eq!(refresh_after(Some("public, max-age=300"), None, &r), 300);
        assert_eq!(refresh_after(Some("max-age=5"), None, &r), 30);
        assert_eq!(refresh_after(Some("max-age=999999"), None, &r), 3600);
        assert_eq!(refresh_after(None, Some(120), &r), 120);
        assert_eq!(refresh_after(Some("no-store"), None, &r), 3600);
        assert_eq!((backoff_s(1, 30), backoff_s(4, 30), backoff_s(40, 30)), (1, 8, 30));
    }
}
