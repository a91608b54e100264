//! Counters, defined once per VM. Names appear as `wasmcustom.<name>` in Envoy's `/stats`.

use intentgate::crypto::Verifier;
use intentgate::{Outcome, Reason};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

pub struct Metrics {
    allow: Option<u32>,
    deny: Option<u32>,
    dry_run_deny: Option<u32>,
    by_reason: HashMap<Reason, u32>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
    pub keys_fetch_ok: Option<u32>,
    pub keys_fetch_failed: Option<u32>,
    pub keys_kid_refresh: Option<u32>,
    pub feed_fetch_ok: Option<u32>,
    pub feed_fetch_failed: Option<u32>,
    pub tasks_completed: Option<u32>,
    verified_by_host: Option<u32>,
    verified_by_rust: Option<u32>,
    cache_entries: Option<u32>,
    cache_bytes: Option<u32>,
}

impl Metrics {
    pub fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            allow: counter("intentgate.decision.allow"),
            deny: counter("intentgate.decision.deny"),
            dry_run_deny: counter("intentgate.decision.dry_run_deny"),
            by_reason: Reason::ALL
                .iter()
                .filter_map(|r| counter(&format!("intentgate.reason.{}", r.code())).map(|id| (*r, id)))
                .collect(),
            cache_hit: counter("intentgate.token_cache.hit"),
            cache_miss: counter("intentgate.token_cache.miss"),
            keys_fetch_ok: counter("intentgate.keys.fetch_ok"),
            keys_fetch_failed: counter("intentgate.keys.fetch_failed"),
            keys_kid_refresh: counter("intentgate.keys.unknown_kid_refresh"),
            feed_fetch_ok: counter("intentgate.revocation_feed.fetch_ok"),
            feed_fetch_failed: counter("intentgate.revocation_feed.fetch_failed"),
            tasks_completed: counter("intentgate.tasks.completed"),
            verified_by_host: counter("intentgate.signature.host"),
            verified_by_rust: counter("intentgate.signature.rust"),
            cache_entries: hostcalls::define_metric(MetricType::Gauge, "intentgate.token_cache.entries").ok(),
            cache_bytes: hostcalls::define_metric(MetricType::Gauge, "intentgate.token_cache.bytes").ok(),
        }
    }

    pub fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// The verified-token cache's size, set from the timer (not per request: a host call each).
    pub fn cache_size(&self, entries: usize, bytes: usize) {
        for (id, value) in [(self.cache_entries, entries), (self.cache_bytes, bytes)] {
            if let Some(id) = id {
                let _ = hostcalls::record_metric(id, value as u64);
            }
        }
    }

    pub fn record(&self, outcome: &Outcome) {
        self.bump(match (outcome.allowed(), outcome.passes()) {
            (true, _) => self.allow,
            (false, false) => self.deny,
            (false, true) => self.dry_run_deny,
        });
        self.bump(self.by_reason.get(&outcome.reason).copied());
        self.bump(match outcome.token_cache {
            Some(true) => self.cache_hit,
            Some(false) => self.cache_miss,
            None => None,
        });
        if let (Some(false), Some(token)) = (outcome.token_cache, &outcome.token) {
            self.bump(match token.verified_by {
                Verifier::Host => self.verified_by_host,
                Verifier::Rust => self.verified_by_rust,
            });
        }
    }
}
