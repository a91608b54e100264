//! Verification keys: JWKs compiled once at load into typed keys whose algorithms are pinned by the
//! key itself (token-profile.md §2.2), never by the token.

use crate::b64url_decode;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The JWS algorithms intentgate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Es256,
    Es384,
    Rs256,
    Ps256,
    EdDsa,
    Hs256,
}

impl Alg {
    /// The algorithm named by a JWS `alg` (or a JWK `alg`, or a config allow-list entry). `none` and
    /// everything unknown is `None`. `Ed25519` is the fully-specified name of EdDSA over Ed25519.
    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            "RS256" => Some(Alg::Rs256),
            "PS256" => Some(Alg::Ps256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDsa),
            "HS256" => Some(Alg::Hs256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
        }
    }

    pub fn is_symmetric(self) -> bool {
        self == Alg::Hs256
    }
}

/// The public (or, for HMAC issuers, shared) key material.
#[derive(Clone)]
pub enum KeyMaterial {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    /// Both RSA verifiers are built once at load so no request pays for it.
    Rsa {
        pkcs1: rsa::pkcs1v15::VerifyingKey<Sha256>,
        pss: rsa::pss::VerifyingKey<Sha256>,
    },
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    // Never print key bytes (an HMAC secret is a secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyMaterial::P256(_) => "P256",
            KeyMaterial::P384(_) => "P384",
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::Hmac(_) => "HMAC",
        })
    }
}

/// A key with the algorithms it may verify: what the key type can do, narrowed by the JWK `alg` and
/// by the issuer's allow-list.
#[derive(Debug, Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub material: KeyMaterial,
    pub algs: Vec<Alg>,
    /// SubjectPublicKeyInfo DER, for verification by the host (EC and RSA keys).
    pub spki_der: Option<Vec<u8>>,
}

/// The members of a JWK that intentgate reads. Unknown members (`x5c`, `key_ops`, …) are ignored on
/// purpose: key sets from real issuers carry them.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
}

/// Why a JWK cannot be used; the caller prefixes the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

const MIN_RSA_BITS: usize = 2048;
const MIN_HMAC_BYTES: usize = 32;

/// Compile one JWK against the issuer's algorithm allow-list.
pub fn compile_jwk(value: &serde_json::Value, allowed: &[Alg]) -> Result<VerificationKey, KeyError> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| KeyError(format!("not a valid JWK: {e}")))?;
    let kid = match jwk.kid.as_deref() {
        Some(kid) if !kid.is_empty() => kid.to_string(),
        _ => return Err(KeyError("kid: required".into())),
    };
    if let Some(use_) = jwk.use_.as_deref() {
        if use_ != "sig" {
            return Err(KeyError(format!("use: \"{use_}\" is not \"sig\"")));
        }
    }
    let kty = jwk.kty.as_deref().unwrap_or("");
    if kty != "oct" && (jwk.d.is_some() || jwk.p.is_some() || jwk.q.is_some()) {
        return Err(KeyError("contains private key members (d, p, q): configure public keys only".into()));
    }
    let mut spki_der = None;
    let (material, capable): (KeyMaterial, Vec<Alg>) = match (kty, jwk.crv.as_deref()) {
        ("EC", Some("P-256")) => {
            let point = ec_point(&jwk, 32)?;
            let key = p256::EncodedPoint::from_bytes(&point)
                .ok()
                .and_then(|p| p256::ecdsa::VerifyingKey::from_encoded_point(&p).ok())
                .ok_or_else(|| KeyError("x, y: not a point on P-256".into()))?;
            spki_der = crate::crypto::ec_spki(&point);
            (KeyMaterial::P256(key), vec![Alg::Es256])
        }
        ("EC", Some("P-384")) => {
            let point = ec_point(&jwk, 48)?;
            let key = p384::EncodedPoint::from_bytes(&point)
                .ok()
                .and_then(|p| p384::ecdsa::VerifyingKey::from_encoded_point(&p).ok())
                .ok_or_else(|| KeyError("x, y: not a point on P-384".into()))?;
            spki_der = crate::crypto::ec_spki(&point);
            (KeyMaterial::P384(key), vec![Alg::Es384])
        }
        ("EC", crv) => return Err(KeyError(format!("crv: {:?} is not supported (P-256, P-384)", crv.unwrap_or("")))),
        ("RSA", _) => {
            let n = member(&jwk.n, "n")?;
            let e = member(&jwk.e, "e")?;
            let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e))
                .map_err(|e| KeyError(format!("n, e: not a usable RSA public key: {e}")))?;
            let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeyError(format!("n: {bits}-bit modulus is below {MIN_RSA_BITS} bits")));
            }
            spki_der = Some(crate::crypto::rsa_spki(&n, &e));
            (
                KeyMaterial::Rsa {
                    pkcs1: rsa::pkcs1v15::VerifyingKey::new(key.clone()),
                    pss: rsa::pss::VerifyingKey::new(key),
                },
                vec![Alg::Rs256, Alg::Ps256],
            )
        }
        ("OKP", Some("Ed25519")) => {
            let x = member(&jwk.x, "x")?;
            let bytes: [u8; 32] =
                x.as_slice().try_into().map_err(|_| KeyError("x: an Ed25519 key is 32 bytes".into()))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| KeyError("x: not a valid Ed25519 public key".into()))?;
            (KeyMaterial::Ed25519(key), vec![Alg::EdDsa])
        }
        ("OKP", crv) => return Err(KeyError(format!("crv: {:?} is not supported (Ed25519)", crv.unwrap_or("")))),
        ("oct", _) => {
            let k = member(&jwk.k, "k")?;
            if k.len() < MIN_HMAC_BYTES {
                return Err(KeyError(format!(
                    "k: an HS256 secret needs at least {MIN_HMAC_BYTES} bytes, got {}",
                    k.len()
                )));
            }
            (KeyMaterial::Hmac(k), vec![Alg::Hs256])
        }
        (other, _) => return Err(KeyError(format!("kty: {other:?} is not supported (EC, RSA, OKP, oct)"))),
    };
    let pinned: Vec<Alg> = match jwk.alg.as_deref() {
        None => capable,
        Some(name) => match Alg::from_name(name) {
            Some(alg) if capable.contains(&alg) => vec![alg],
            _ => return Err(KeyError(format!("alg: {name:?} is not an algorithm this key can do"))),
        },
    };
    let algs: Vec<Alg> = pinned.into_iter().filter(|a| allowed.contains(a)).collect();
    if algs.is_empty() {
        return Err(KeyError(
            "can do none of the issuer's allowed algorithms (check algorithms and the key's alg)".into(),
        ));
    }
    Ok(VerificationKey { kid, material, algs, spki_der })
}

fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = value.as_deref().ok_or_else(|| KeyError(format!("{name}: required")))?;
    b64url_decode(text).ok_or_else(|| KeyError(format!("{name}: not base64url")))
}

fn ec_point(jwk: &Jwk, size: usize) -> Result<Vec<u8>, KeyError> {
    let x = member(&jwk.x, "x")?;
    let y = member(&jwk.y, "y")?;
    if x.len() != size || y.len() != size {
        return Err(KeyError(format!("x, y: each coordinate must be {size} bytes")));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

impl VerificationKey {
    /// Verify a JWS signature. `alg` has already been checked against `self.algs`.
    pub fn verify(&self, alg: Alg, signing_input: &[u8], signature: &[u8]) -> bool {
        use signature_traits::Verifier;
        match (&self.material, alg) {
            (KeyMaterial::P256(key), Alg::Es256) => p256::ecdsa::Signature::from_slice(signature)
                .map(|sig| key.verify(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::P384(key), Alg::Es384) => p384::ecdsa::Signature::from_slice(signature)
                .map(|sig| key.verify(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::Rsa { pkcs1, .. }, Alg::Rs256) => rsa::pkcs1v15::Signature::try_from(signature)
                .map(|sig| pkcs1.verify(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::Rsa { pss, .. }, Alg::Ps256) => rsa::pss::Signature::try_from(signature)
                .map(|sig| pss.verify(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::Ed25519(key), Alg::EdDsa) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| key.verify_strict(signing_input, &sig).is_ok())
                .unwrap_or(false),
            (KeyMaterial::Hmac(secret), Alg::Hs256) => match Hmac::<Sha256>::new_from_slice(secret) {
                Ok(mut mac) => {
                    mac.update(signing_input);
                    // constant-time comparison
                    mac.verify_slice(signature).is_ok()
                }
                Err(_) => false,
            },
            _ => false,
        }
    }
}

mod signature_traits {
    pub use p256::ecdsa::signature::Verifier;
}
