//! The proxy-wasm adapter: the only code that names proxy_wasm. It gathers the request's facts and
//! the host's clock, calls the `intentgate` core, and applies the outcome: a local denial, or the
//! request forwarded with authoritative audit headers. No policy logic lives here.
//!
//! * `lib.rs` — the plugin: configuration, the timer that keeps keys and the feed fresh;
//! * `request.rs` — one request's path;
//! * `fetch.rs` — fetching key sets and the revocation feed;
//! * `store.rs` — what all workers of one Envoy share;
//! * `metrics.rs` — counters.
//!
//! Every host call goes through `proxy_wasm::hostcalls` and its `Result`: the SDK's convenience
//! wrappers `unwrap()` (on non-UTF-8 header values, for example), and a panic kills the VM.

mod fetch;
mod hostabi;
mod metrics;
mod request;
mod store;

use fetch::Pending;
use intentgate::crypto::{self, HostVerifier};
use intentgate::{Policy, State, VerifierChoice};
use metrics::Metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use store::{Store, Trigger};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Critical, &format!("intentgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub(crate) fn now() -> Duration {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default()
}

/// Envoy's BoringSSL `verify_signature` foreign function.
struct HostCrypto;

impl HostVerifier for HostCrypto {
    fn verify(&self, arguments: &[u8]) -> Option<bool> {
        match hostcalls::call_foreign_function("verify_signature", Some(arguments)) {
            // a valid signature answers `result: true`; an invalid one only an error string
            Ok(answer) => Some(answer.is_some_and(|bytes| crypto::verify_result(&bytes))),
            // not offered by this host, or it failed: the caller falls back to Rust
            Err(_) => None,
        }
    }
}

/// How often every worker looks for fetched data of other workers and for fetches that are due, and
/// reports its token cache's size.
const TICK: Duration = Duration::from_secs(1);

/// What every request of one plugin configuration shares, within one VM (one worker).
pub(crate) struct Gate {
    pub policy: Policy,
    pub state: RefCell<State>,
    pub metrics: Metrics,
    pub store: Store,
    /// Makes audit ids unique within this VM even for requests in the same nanosecond.
    sequence: Cell<u64>,
    /// When this VM was configured: tells apart the audit ids of different workers.
    pub vm_started_ns: u64,
    /// The live streams of this VM, by context id, so that a key refresh can decide for the calls
    /// that wait for it.
    pub streams: RefCell<HashMap<u32, std::rc::Weak<RefCell<request::Stream>>>>,
    /// Streams waiting for a key refresh that somebody else has in flight.
    pub waiting: RefCell<Vec<u32>>,
}

impl Gate {
    pub fn next_sequence(&self) -> u64 {
        let next = self.sequence.get().wrapping_add(1);
        self.sequence.set(next);
        next
    }
}

#[derive(Default)]
struct Root {
    gate: Option<Rc<Gate>>,
    /// Fetches this worker started, by dispatch token.
    fetches: HashMap<u32, Pending>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let (Some(gate), Some(pending)) = (self.gate.as_ref(), self.fetches.remove(&token_id)) else {
            return;
        };
        let now = now().as_secs() as i64;
        match fetch::on_response(gate, &pending, body_size, now) {
            Some((token, next)) => {
                self.fetches.insert(token, next);
            }
            None => {
                if let fetch::Resource::Keys(issuer) = pending.resource {
                    request::wake(gate, now, Some(issuer));
                }
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Critical, "intentgate: invalid config at (root): no plugin configuration");
                return false;
            }
        };
        let policy = match Policy::from_json(&bytes) {
            Ok(policy) => policy,
            Err(error) => {
                // Returning false makes Envoy refuse this configuration: fail closed at load.
                log(LogLevel::Critical, &format!("intentgate: {error}"));
                return false;
            }
        };
        log(
            LogLevel::Info,
            &format!(
                "intentgate: loaded config: {} issuer(s), {} tool(s), mode {}",
                policy.issuers.len(),
                policy.catalog.tools.len(),
                policy.mode.name()
            ),
        );
        let mut state = State::new(&policy);
        match (policy.verifier, crypto::self_test(&HostCrypto)) {
            (VerifierChoice::Rust, _) => {}
            (_, true) => {
                state.host_verifier = Some(Box::new(HostCrypto));
                log(
                    LogLevel::Info,
                    "intentgate: signatures verified by the host (verify_signature passed its self-test)",
                );
            }
            (VerifierChoice::Host, false) => {
                log(
                    LogLevel::Critical,
                    "intentgate: invalid config at verifier: \"host\" but this host's verify_signature is missing or failed its self-test",
                );
                return false;
            }
            (VerifierChoice::Auto, false) => {
                log(LogLevel::Info, "intentgate: host verify_signature unavailable; signatures verified in Rust");
            }
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let fingerprint: String = intentgate::hex(&digest).chars().take(16).collect();
        let gate = Gate {
            state: RefCell::new(state),
            policy,
            metrics: Metrics::define(),
            store: Store::new(&fingerprint),
            sequence: Cell::new(0),
            vm_started_ns: now().as_nanos() as u64,
            streams: RefCell::new(HashMap::new()),
            waiting: RefCell::new(Vec::new()),
        };
        let resources = fetch::resources(&gate);
        gate.store.init(&resources.iter().map(|r| r.schedule()).collect::<Vec<_>>());
        if hostcalls::set_tick_period(TICK).is_err() {
            log(LogLevel::Critical, "intentgate: no timer: keys and the feed would never refresh");
            return false;
        }
        self.gate = Some(Rc::new(gate));
        true
    }

    fn on_tick(&mut self) {
        let Some(gate) = self.gate.clone() else {
            return;
        };
        let now = now().as_secs() as i64;
        gate.store.sync(&gate.policy, &mut gate.state.borrow_mut(), now);
        {
            let state = gate.state.borrow();
            gate.metrics.cache_size(state.cache.len(), state.cache.bytes());
        }
        for resource in fetch::resources(&gate) {
            if let Some((token, pending)) = fetch::start(&gate, resource, Trigger::Scheduled, now) {
                self.fetches.insert(token, pending);
            }
        }
        request::wake(&gate, now, None);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let gate = Rc::clone(self.gate.as_ref()?);
        Some(Box::new(request::Request::new(gate, context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
