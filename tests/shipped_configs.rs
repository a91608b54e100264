//! Configs and docs cannot drift: every policy shipped in the repository — the JSON files under
//! `envoy/policies/`, the plugin configurations embedded in `envoy/*.yaml` and the example in the
//! README — goes through the real loader. (Native only: it reads files.)
// Tests may index and panic: a failure is the point (wasm-bindgen-test hides #[test] from clippy).
#![allow(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]
#![cfg(not(target_arch = "wasm32"))]

use intentgate::Policy;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().and_then(|e| e.to_str()) == Some(extension));
    found.sort();
    found
}

/// Every `configuration.value` of a wasm filter named in an Envoy bootstrap. Templates carry a
/// `${POLICY_JSON}` placeholder instead, which the e2e harness fills from `envoy/policies/`.
fn embedded_policies(yaml: &serde_yaml::Value, out: &mut Vec<String>) {
    match yaml {
        serde_yaml::Value::Mapping(map) => {
            if let Some(config) = map.get("configuration") {
                if let Some(value) = config.get("value").and_then(|v| v.as_str()) {
                    out.push(value.to_string());
                }
            }
            for value in map.values() {
                embedded_policies(value, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| embedded_policies(v, out)),
        _ => {}
    }
}

fn load(what: &str, text: &str) -> Result<(), String> {
    Policy::from_json(text.as_bytes()).map(|_| ()).map_err(|e| format!("{what}: {e}"))
}

#[test]
fn every_shipped_policy_loads() {
    let mut loaded = 0;
    let mut errors = Vec::new();
    for path in files(&repo().join("envoy/policies"), "json") {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        errors.extend(load(&path.display().to_string(), &text).err());
        loaded += 1;
    }
    for path in files(&repo().join("envoy"), "yaml") {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("${") {
            continue; // a template: its policy comes from envoy/policies/
        }
        let yaml: serde_yaml::Value = match serde_yaml::from_str(&text) {
            Ok(yaml) => yaml,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let mut policies = Vec::new();
        embedded_policies(&yaml, &mut policies);
        for policy in policies {
            errors.extend(load(&path.display().to_string(), &policy).err());
            loaded += 1;
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(loaded >= 2, "expected the e2e policy and the demo config, loaded {loaded}");
}

#[test]
fn the_readme_example_loads() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap_or_default();
    // the complete example is the first ```json block after the "Configuration" heading
    let section = readme.split("## Configuration").nth(1).unwrap_or("");
    let example = section.split("```json").nth(1).and_then(|s| s.split("```").next()).unwrap_or("");
    assert!(!example.is_empty(), "README has no json example under ## Configuration");
    if let Err(e) = load("README example", example) {
        panic!("{e}");
    }
}
