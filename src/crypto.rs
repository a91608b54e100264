//! Signature verification by the host. Envoy 1.40 offers BoringSSL's `verify_signature` to wasm
//! modules as a foreign function: ECDSA P-256/P-384 (DER signatures) and RSA PKCS#1 v1.5, about ten
//! times faster than the same verification compiled to wasm. This module prepares the call (DER
//! public keys built at load, JWS r||s signatures converted to DER, the protobuf arguments) and
//! reads the answer; the adapter makes the call. Algorithms the host cannot do (PS256, EdDSA,
//! HS256) always use the pure-Rust path, and so does everything on hosts without the function.

use crate::keys::{Alg, KeyMaterial, VerificationKey};

/// Which implementation checked a signature; reported in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    Host,
    Rust,
}

impl Verifier {
    pub fn name(self) -> &'static str {
        match self {
            Verifier::Host => "host",
            Verifier::Rust => "rust",
        }
    }
}

/// Verification by the host. `None` means the host could not answer (the caller falls back).
pub trait HostVerifier {
    fn verify(&self, arguments: &[u8]) -> Option<bool>;
}

/// The protobuf `VerifySignatureArguments` for one JWS signature, or `None` when the host cannot
/// verify this algorithm or key.
pub fn host_arguments(key: &VerificationKey, alg: Alg, message: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let spki = key.spki_der.as_deref()?;
    let (hash, signature) = match (alg, &key.material) {
        (Alg::Es256, KeyMaterial::P256(_)) => ("sha256", ecdsa_der(signature, 32)?),
        (Alg::Es384, KeyMaterial::P384(_)) => ("sha384", ecdsa_der(signature, 48)?),
        (Alg::Rs256, KeyMaterial::Rsa { .. }) => ("sha256", signature.to_vec()),
        _ => return None,
    };
    Some(verify_arguments(hash, spki, &signature, message))
}

/// `VerifySignatureArguments { hash_function = 1; public_key = 2; signature = 3; text = 4 }`.
pub fn verify_arguments(hash: &str, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki_der.len() + signature.len() + message.len() + 32);
    for (field, bytes) in [(1u8, hash.as_bytes()), (2, spki_der), (3, signature), (4, message)] {
        out.push(field << 3 | 2);
        varint(bytes.len(), &mut out);
        out.extend_from_slice(bytes);
    }
    out
}

/// `VerifySignatureResult { bool result = 1; string error = 2 }`: valid only as `result: true`.
pub fn verify_result(bytes: &[u8]) -> bool {
    let mut i = 0;
    let mut valid = false;
    while let Some(&tag) = bytes.get(i) {
        i += 1;
        match tag {
            0x08 => {
                valid = bytes.get(i) == Some(&1);
                i += 1;
            }
            0x12 => {
                let Some((len, used)) = read_varint(bytes.get(i..).unwrap_or_default()) else {
                    return false;
                };
                i += used + len;
            }
            _ => return false,
        }
    }
    valid
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate().take(5) {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// JWS ECDSA signatures are r||s; BoringSSL wants `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn ecdsa_der(raw: &[u8], size: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * size {
        return None;
    }
    let (r, s) = raw.split_at(size);
    let mut body = der_integer(r);
    body.extend(der_integer(s));
    Some(der(0x30, &body))
}

fn der_integer(unsigned: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match unsigned.iter().position(|b| *b != 0) {
        Some(first) => unsigned.get(first..).unwrap_or_default(),
        None => &[0],
    };
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(trimmed);
    der(0x02, &value)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

const EC_P256_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const EC_P384_PREFIX: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22, 0x03, 0x62, 0x00,
];
const RSA_ENCRYPTION: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// SubjectPublicKeyInfo DER of an uncompressed EC point (`04 || x || y`).
pub fn ec_spki(point: &[u8]) -> Option<Vec<u8>> {
    let prefix = match point.len() {
        65 => EC_P256_PREFIX,
        97 => EC_P384_PREFIX,
        _ => return None,
    };
    Some([prefix, point].concat())
}

/// SubjectPublicKeyInfo DER of an RSA public key from its big-endian modulus and exponent.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut key = der_integer(n);
    key.extend(der_integer(e));
    let rsa_public_key = der(0x30, &key);
    let mut bit_string = vec![0];
    bit_string.extend(rsa_public_key);
    let mut spki = RSA_ENCRYPTION.to_vec();
    spki.extend(der(0x03, &bit_string));
    der(0x30, &spki)
}

/// Known answers the host must give before it is trusted with real tokens: a valid ES256 and RS256
/// signature (the public halves of the committed test keys), and the ES256 one with a flipped bit.
pub fn self_test(host: &dyn HostVerifier) -> bool {
    let message = SELF_TEST_MESSAGE.as_bytes();
    let (Some(es_spki), Some(es_sig), Some(rs_spki), Some(rs_sig)) =
        (unhex(ES256_SPKI), unhex(ES256_SIG), unhex(RS256_SPKI), unhex(RS256_SIG))
    else {
        return false;
    };
    let Some(es_der) = ecdsa_der(&es_sig, 32) else {
        return false;
    };
    let mut tampered = es_der.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    host.verify(&verify_arguments("sha256", &es_spki, &es_der, message)) == Some(true)
        && host.verify(&verify_arguments("sha256", &es_spki, &tampered, message)) == Some(false)
        && host.verify(&verify_arguments("sha256", &rs_spki, &rs_sig, message)) == Some(true)
}

/// Hex to bytes (either case); `None` on an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

const SELF_TEST_MESSAGE: &str = "intentgate host crypto self-test";
const ES256_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200041ec0a1a5c56fc3b3a5499bff64fed83bed8b337a9026a3dd331275f9c62090401f3faf86e244fcc2571d5f1f47d6f69b417b7e51ae446a724ce0c7e9e104cbc7";
const ES256_SIG: &str = "a999eafc77c85ebb5d59af11203bc9adf26b1ff2b3615d14f3fb1157baf08a5465e5bd0556ae52c2af7bfb45750c33fa780b271bd6939c1f7528cfed68680c9c";
const RS256_SPKI: &str = "30820122300d06092a864886f70d01010105000382010f003082010a0282010100ea494ddb8457ba86d8097eb4707c4b8bc40e063ae846053364bc9f9af49ebd893461ebf6b2f916d014d603bea49c394932dd8b1e36f4ae12b0c6fb0e68001d9595306377ebeda03f37e3c33882462d12de15b533622240d01fc72c8ef838689b3abac6bd0767136a089554e0d40f178f293ef5a9941dc2d2859ef7184cd0b2e29bb0e0f89e3dcbbadb48e3ee1561f9368898fbf87503fae2c7955906bfdfceda4b3449eee234a82eb391c78927114a1cdc6277a86cfcb52b5bd2322d27720a67ecca68b728bbc6591a7ae114e606d9402cf36c707892643b05a4626f799c3c57bb23be81d537653bbc7326d3e26e2e5353877d51366db056fa75bdb2ab83f8b70203010001";
const RS256_SIG: &str = "d7772b585e8abab161e5b0d8ac8782e93a362affe690032de9ee88abc7090274d6edf807837cab4ff114edd9213e25dc1018793e27b6c01a6ac102d3ebc3509d9d5aa1d977d65606df693af1157f1a2cc7c4a78824b95984496bd9127b51838ab4d82ee9c506596f187e6cca449306c7fa60b771cd8fc0e67254e343225bcf53c40fbfb9cdb86ed0f86dac97e2352084809b6b2bd478a6076c415ec67babcf617706bee2131fb22fb8a81cc9c2f706ee8591e8659b38cc1c109a51e5dd6ff400a8b37c47e501a279ed01bc61a877f2e8aa3a267d569c34844cfd3b490c4ea189713bc9e3e7f66f95fdb926ecc63393027d4785f0bb9dac7b1bafd2ed4d5d6570";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::compile_jwk;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A stand-in host that checks with the pure-Rust verifiers, through the same DER and protobuf
    /// encodings the real host reads — so a wrong encoding fails here.
    struct RustHost;

    fn field(bytes: &[u8], wanted: u8) -> Option<Vec<u8>> {
        let mut i = 0;
        while let Some(&tag) = bytes.get(i) {
            let (len, used) = read_varint(bytes.get(i + 1..)?)?;
            let value = bytes.get(i + 1 + used..i + 1 + used + len)?;
            if tag >> 3 == wanted {
                return Some(value.to_vec());
            }
            i += 1 + used + len;
        }
        None
    }

    impl HostVerifier for RustHost {
        fn verify(&self, arguments: &[u8]) -> Option<bool> {
            use p256::ecdsa::signature::Verifier as _;
            use p256::pkcs8::DecodePublicKey;
            let hash = String::from_utf8(field(arguments, 1)?).ok()?;
            let (spki, sig, text) = (field(arguments, 2)?, field(arguments, 3)?, field(arguments, 4)?);
            if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&spki) {
                let sig = p256::ecdsa::Signature::from_der(&sig).ok()?;
                return Some(hash == "sha256" && key.verify(&text, &sig).is_ok());
            }
            if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(&spki) {
                let sig = p384::ecdsa::Signature::from_der(&sig).ok()?;
                return Some(hash == "sha384" && key.verify(&text, &sig).is_ok());
            }
            let key = rsa::RsaPublicKey::from_public_key_der(&spki).ok()?;
            let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
            let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).ok()?;
            Some(hash == "sha256" && verifier.verify(&text, &sig).is_ok())
        }
    }

    #[test]
    fn encodings_match_what_a_der_reader_expects() {
        assert!(self_test(&RustHost));
        // the same SPKI as an independent encoder (Python cryptography) produced
        let keys = crate::testkit::TestKeys::from_json(include_str!("../tests/fixtures/test-keys.json")).unwrap();
        let p256 = compile_jwk(&keys.public("es256-1").unwrap(), &[Alg::Es256]).unwrap();
        assert_eq!(p256.spki_der, unhex(ES256_SPKI));
        let rsa = compile_jwk(&keys.public("rsa-1").unwrap(), &[Alg::Rs256]).unwrap();
        assert_eq!(rsa.spki_der, unhex(RS256_SPKI));
        let p384 = compile_jwk(&keys.public("es384-1").unwrap(), &[Alg::Es384]).unwrap();
        assert_eq!(p384.spki_der, unhex("3076301006072a8648ce3d020106052b81040022036200044f7b8bf19c950eeb0d2016138f4308a877c0299302f188a54db7f77750a433731c2236b36cd72a3a3e80402150a2b4c5921cef9f48c58f2f16eb0d432ee11ace18598409faf41f804e778d661d9c0395804961efe8b66713ef85a4cbe69dbf3e"));
        // r and s with high bits set and with leading zeros are both minimal DER
        let mut raw = [0u8; 64];
        raw[0] = 0x80;
        raw[32] = 0;
        raw[33] = 0x01;
        let der = ecdsa_der(&raw, 32).unwrap();
        // SEQUENCE(68) { INTEGER(33) 00 80 00…, INTEGER(31) 01 00… }
        assert_eq!((der.len(), der[1], der[2], der[3], der[4], der[5]), (70, 68, 0x02, 33, 0x00, 0x80));
        assert_eq!((der[37], der[38], der[39]), (0x02, 31, 0x01));
        assert!(ecdsa_der(&raw[..63], 32).is_none());
        assert!(verify_result(&[0x08, 0x01]));
        assert!(!verify_result(&[0x12, 0x03, b'b', b'a', b'd']));
        assert!(!verify_result(&[]));
        assert!(!verify_result(&[0x08, 0x00]));
    }
}
