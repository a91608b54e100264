//! Token minting for tests, the demo and the `mint` example (feature `testkit`). Never part of the
//! filter: it signs with private keys, which a gateway never holds.

use crate::b64url_decode;
use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rand_chacha::rand_core::SeedableRng;
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// Private JWKs (as in `tests/fixtures/test-keys.json`).
pub struct TestKeys {
    keys: Vec<Value>,
}

const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKeys {
    pub fn from_json(text: &str) -> Result<TestKeys, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("no keys array")?.clone();
        Ok(TestKeys { keys })
    }

    pub fn private(&self, kid: &str) -> Result<&Value, String> {
        self.keys
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .ok_or_else(|| format!("no test key {kid:?}"))
    }

    /// The public JWK of `kid` (private members removed).
    pub fn public(&self, kid: &str) -> Result<Value, String> {
        let mut key = self.private(kid)?.clone();
        if let Some(map) = key.as_object_mut() {
            if map.get("kty").and_then(Value::as_str) != Some("oct") {
                for member in PRIVATE_MEMBERS {
                    map.remove(member);
                }
            }
        }
        Ok(key)
    }

    /// `{"keys": [...]}` with the public JWKs of `kids`.
    pub fn jwks(&self, kids: &[&str]) -> Result<Value, String> {
        let keys: Result<Vec<Value>, String> = kids.iter().map(|k| self.public(k)).collect();
        Ok(json!({ "keys": keys? }))
    }

    /// Sign `claims` with the private key `kid`. The header gets `alg`, `kid` and `typ: at+jwt`; members
    /// of `extra_header` are added or override (a `null` removes one).
    pub fn sign(&self, kid: &str, alg: &str, extra_header: &Value, claims: &Value) -> Result<String, String> {
        let key = self.private(kid)?;
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg));
        header.insert("kid".into(), json!(kid));
        header.insert("typ".into(), json!("at+jwt"));
        if let Some(extra) = extra_header.as_object() {
            for (name, value) in extra {
                if value.is_null() {
                    header.remove(name);
                } else {
                    header.insert(name.clone(), value.clone());
                }
            }
        }
        let input = signing_input(&Value::Object(header), claims);
        let signature = sign_bytes(key, alg, input.as_bytes())?;
        Ok(format!("{input}.{}", b64url(&signature)))
    }
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// HS256 over `input` with an arbitrary secret (for algorithm-confusion tests).
pub fn hs256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn member(key: &Value, name: &str) -> Result<Vec<u8>, String> {
    key.get(name).and_then(Value::as_str).and_then(b64url_decode).ok_or_else(|| format!("key member {name} missing"))
}

fn sign_bytes(key: &Value, alg: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match alg {
        "ES256" => {
            let sk = p256::ecdsa::SigningKey::from_slice(&member(key, "d")?).map_err(|e| err(&e))?;
            let sig: p256::ecdsa::Signature = sk.sign(input);
            Ok(sig.to_vec())
        }
        "ES384" => {
            let sk = p384::ecdsa::SigningKey::from_slice(&member(key, "d")?).map_err(|e| err(&e))?;
            let sig: p384::ecdsa::Signature = sk.sign(input);
            Ok(sig.to_vec())
        }
        "RS256" | "PS256" => {
            let big = |name: &str| member(key, name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let private =
                rsa::RsaPrivateKey::from_components(big("n")?, big("e")?, big("d")?, vec![big("p")?, big("q")?])
                    .map_err(|e| err(&e))?;
            if alg == "RS256" {
                let sk = rsa::pkcs1v15::SigningKey::<Sha256>::new(private);
                Ok(sk.sign(input).to_vec())
            } else {
                // PSS needs randomness; a fixed seed keeps tests reproducible and wasm-friendly
                let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
                let sk = rsa::pss::BlindedSigningKey::<Sha256>::new(private);
                Ok(sk.sign_with_rng(&mut rng, input).to_vec())
            }
        }
        "EdDSA" | "Ed25519" => {
            let seed: [u8; 32] = member(key, "d")?.try_into().map_err(|_| "Ed25519 seed is 32 bytes".to_string())?;
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            Ok(sk.sign(input).to_bytes().to_vec())
        }
        "HS256" => Ok(hs256(&member(key, "k")?, input)),
        other => Err(format!("cannot sign with {other}")),
    }
}
