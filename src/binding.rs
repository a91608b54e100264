//! Sender-constrained tokens: a token copied out of an agent must not work for anyone else.
//! DPoP (RFC 9449): the proof JWT signed by the key the token is bound to (`cnf.jkt`). mTLS
//! (RFC 8705): the client certificate whose SHA-256 the token names (`cnf["x5t#S256"]`).

use crate::crypto::HostVerifier;
use crate::keys::{compile_jwk, Alg};
use crate::outcome::Reason;
use crate::{b64url_decode, path};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the token says it is bound to (RFC 7800 `cnf`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Confirmation {
    pub jkt: Option<String>,
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
}

/// The authenticated TLS client, from the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCertificate {
    /// SHA-256 of the certificate's DER.
    pub sha256: Vec<u8>,
    /// The first URI SAN (an X.509-SVID's SPIFFE ID).
    pub uri_san: Option<String>,
}

impl PeerCertificate {
    /// The caller's SPIFFE ID, when the certificate is an X.509-SVID.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uri_san.as_deref().filter(|s| s.starts_with("spiffe://"))
    }
}

/// DPoP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    pub algorithms: Vec<Alg>,
    pub iat_window_s: i64,
    /// The origin (`https://tools.example.com`) requests are made to, when the gateway's own
    /// `:scheme` and `:authority` are not what clients see (TLS terminated in front of it).
    pub htu_origin: Option<String>,
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let canonical = match member("kty")? {
        "EC" => json!({"crv": member("crv")?, "kty": "EC", "x": member("x")?, "y": member("y")?}),
        "RSA" => json!({"e": member("e")?, "kty": "RSA", "n": member("n")?}),
        "OKP" => json!({"crv": member("crv")?, "kty": "OKP", "x": member("x")?}),
        _ => return None,
    };
    // serde_json writes object members sorted (BTreeMap) and without white space: RFC 7638's form
    Some(b64url(&Sha256::digest(canonical.to_string().as_bytes())))
}

#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Value>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<serde_json::Number>,
    ath: Option<String>,
}

/// A proof that passed every check; its `jti` must still be claimed against replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedProof {
    pub jti: String,
    /// Until when the `jti` must be remembered.
    pub remember_until: i64,
}

/// The request a proof must match.
pub struct ProofRequest<'a> {
    pub method: &'a str,
    /// `scheme://authority` as clients address this gateway.
    pub origin: &'a str,
    /// Normalised path, without query.
    pub path: &'a str,
    pub access_token: &'a str,
    pub jkt: &'a str,
}

/// RFC 9449 §4.3: check a DPoP proof against the request and the token it accompanies.
pub fn check_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    settings: &DpopSettings,
    host: Option<&dyn HostVerifier>,
    now: i64,
) -> Result<AcceptedProof, Reason> {
    let invalid = Reason::DpopProofInvalid;
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(invalid);
    };
    let decode = |segment: &str| b64url_decode(segment).ok_or(invalid);
    let header: ProofHeader = serde_json::from_slice(&decode(h)?).map_err(|_| invalid)?;
    let claims: ProofClaims = serde_json::from_slice(&decode(p)?).map_err(|_| invalid)?;
    let signature = decode(s)?;
    if header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() != Some("dpop+jwt") {
        return Err(invalid);
    }
    let alg = header.alg.as_deref().and_then(Alg::from_name).filter(|a| !a.is_symmetric()).ok_or(invalid)?;
    if !settings.algorithms.contains(&alg) {
        return Err(invalid);
    }
    // the proof's own key: public only (compile_jwk refuses private members), and able to do `alg`
    let mut jwk = header.jwk.filter(Value::is_object).ok_or(invalid)?;
    let thumb = thumbprint(&jwk).ok_or(invalid)?;
    if let Some(map) = jwk.as_object_mut() {
        map.insert("kid".into(), Value::String("dpop-proof".into()));
    }
    let key = compile_jwk(&jwk, &[alg]).map_err(|_| invalid)?;
    let input = proof.get(..h.len() + 1 + p.len()).ok_or(invalid)?.as_bytes();
    let host_answer = host
        .and_then(|hv| crate::crypto::host_arguments(&key, alg, input, &signature).map(|args| (hv, args)))
        .and_then(|(hv, args)| hv.verify(&args));
    if !host_answer.unwrap_or_else(|| key.verify(alg, input, &signature)) {
        return Err(invalid);
    }
    // the request
    if claims.htm.as_deref() != Some(request.method) {
        return Err(Reason::DpopHtmMismatch);
    }
    let htu = claims.htu.as_deref().ok_or(Reason::DpopHtuMismatch)?;
    if normalise_uri(htu).as_deref() != normalise_uri(&format!("{}{}", request.origin, request.path)).as_deref() {
        return Err(Reason::DpopHtuMismatch);
    }
    let iat =
        claims.iat.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))).ok_or(Reason::DpopIatInvalid)?;
    if (now - iat).abs() > settings.iat_window_s {
        return Err(Reason::DpopIatInvalid);
    }
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(invalid)?;
    // the token
    let ath = b64url(&Sha256::digest(request.access_token.as_bytes()));
    if claims.ath.as_deref() != Some(ath.as_str()) {
        return Err(Reason::DpopAthMismatch);
    }
    if thumb != request.jkt {
        return Err(Reason::DpopKeyMismatch);
    }
    Ok(AcceptedProof { jti, remember_until: iat.saturating_add(settings.iat_window_s).saturating_add(1) })
}

/// RFC 9449 §4.3 / RFC 3986 §6.2: scheme and host in lower case, default port removed, the path
/// normalised as requests are; query and fragment dropped.
pub fn normalise_uri(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, raw_path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let mut authority = authority.to_ascii_lowercase();
    for default in [(":443", "https"), (":80", "http")] {
        if scheme == default.1 && authority.ends_with(default.0) {
            authority.truncate(authority.len() - default.0.len());
        }
    }
    let path = path::normalise(raw_path).ok()?.path;
    Some(format!("{scheme}://{authority}{path}"))
}

/// RFC 8705 §3: the certificate presented on this connection is the one the token names.
pub fn check_certificate(x5t_s256: &str, peer: Option<&PeerCertificate>) -> Result<(), Reason> {
    match peer {
        Some(peer) if !peer.sha256.is_empty() && b64url(&peer.sha256) == x5t_s256 => Ok(()),
        _ => Err(Reason::CertificateBindingMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(thumbprint(&jwk).as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        assert_eq!(thumbprint(&json!({"kty": "oct", "k": "x"})), None);
    }

    #[test]
    fn uris_normalise_per_rfc3986() {
        let n = |u: &str| normalise_uri(u);
        assert_eq!(
            n("HTTPS://Tools.Example.com:443/api/./tickets?x=1#f"),
            Some("https://tools.example.com/api/tickets".into())
        );
        assert_eq!(n("http://127.0.0.1:80/a/%74"), n("http://127.0.0.1/a/t"));
        assert_ne!(n("http://127.0.0.1:8080/a"), n("http://127.0.0.1/a"));
        assert_eq!(n("http://h"), Some("http://h/".into()));
        assert_eq!(n("not a uri"), None);
    }
}
