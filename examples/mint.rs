//! Mint a test token with the project's own signer: reads
//! `{"kid": "...", "alg": "ES256", "header": {...}, "claims": {...}}` on stdin, prints the compact JWS.
//! Keys come from `tests/fixtures/test-keys.json` (or the file named by `INTENTGATE_TEST_KEYS`).

use intentgate::testkit::TestKeys;
use serde_json::Value;
use std::io::Read;

fn main() {
    if let Err(message) = run() {
        eprintln!("mint: {message}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let path = std::env::var("INTENTGATE_TEST_KEYS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-keys.json").to_string());
    let keys = TestKeys::from_json(&std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| e.to_string())?;
    let request: Value = serde_json::from_str(&input).map_err(|e| format!("stdin: {e}"))?;
    let field = |name: &str| request.get(name).and_then(Value::as_str).ok_or(format!("stdin: {name} required"));
    let token = keys.sign(
        field("kid")?,
        field("alg")?,
        request.get("header").unwrap_or(&Value::Null),
        request.get("claims").ok_or("stdin: claims required")?,
    )?;
    println!("{token}");
    Ok(())
}
