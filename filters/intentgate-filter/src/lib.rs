//! The proxy-wasm adapter: the only code that names proxy_wasm. It gathers the request's facts and
//! the host's clock, calls `intentgate::evaluate`, and applies the outcome: a local denial, or the
//! request forwarded with authoritative audit headers. No policy logic lives here.
//!
//! Every host call goes through `proxy_wasm::hostcalls` and its `Result`: the SDK's convenience
//! wrappers `unwrap()` (on non-UTF-8 header values, for example), and a panic kills the VM.

use intentgate::audit::{upstream_headers, AuditRecord, Responder};
use intentgate::{evaluate, Outcome, Policy, Reason, RequestFacts, TokenCache};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Critical, &format!("intentgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Counters, defined once per VM. Names appear as `wasmcustom.<name>` in Envoy's `/stats`.
struct Metrics {
    allow: Option<u32>,
    deny: Option<u32>,
    dry_run_deny: Option<u32>,
    by_reason: HashMap<Reason, u32>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            allow: counter("intentgate.decision.allow"),
            deny: counter("intentgate.decision.deny"),
            dry_run_deny: counter("intentgate.decision.dry_run_deny"),
            by_reason: Reason::ALL
                .iter()
                .filter_map(|r| {
                    counter(&format!("intentgate.reason.{}", r.code())).map(|id| (*r, id))
                })
                .collect(),
            cache_hit: counter("intentgate.token_cache.hit"),
            cache_miss: counter("intentgate.token_cache.miss"),
        }
    }

    fn record(&self, outcome: &Outcome) {
        let bump = |id: Option<u32>| {
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, 1);
            }
        };
        bump(match (outcome.allowed(), outcome.passes()) {
            (true, _) => self.allow,
            (false, false) => self.deny,
            (false, true) => self.dry_run_deny,
        });
        bump(self.by_reason.get(&outcome.reason).copied());
        bump(match outcome.token_cache {
            Some(true) => self.cache_hit,
            Some(false) => self.cache_miss,
            None => None,
        });
    }
}

/// What every request of one plugin configuration shares.
struct Shared {
    policy: Policy,
    cache: RefCell<TokenCache>,
    metrics: Metrics,
    /// Makes audit ids unique within this VM even for requests in the same nanosecond.
    sequence: Cell<u64>,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(
                    LogLevel::Critical,
                    "intentgate: invalid config at (root): no plugin configuration",
                );
                return false;
            }
        };
        match Policy::from_json(&bytes) {
            Ok(policy) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "intentgate: loaded config: {} issuer(s), {} tool(s), mode {}",
                        policy.issuers.len(),
                        policy.catalog.tools.len(),
                        policy.mode.name()
                    ),
                );
                self.shared = Some(Rc::new(Shared {
                    cache: RefCell::new(TokenCache::new(policy.token_cache_entries)),
                    policy,
                    metrics: Metrics::define(),
                    sequence: Cell::new(0),
                }));
                true
            }
            Err(error) => {
                // Returning false makes Envoy refuse this configuration: fail closed at load.
                log(LogLevel::Critical, &format!("intentgate: {error}"));
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = Rc::clone(self.shared.as_ref()?);
        Some(Box::new(Request {
            shared,
            context_id,
            started: Duration::ZERO,
            audit: None,
            responder: Responder::None,
            status: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    shared: Rc<Shared>,
    context_id: u32,
    started: Duration,
    audit: Option<AuditRecord>,
    responder: Responder,
    status: Option<u16>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.started = now();
        let headers: Vec<(String, String)> =
            match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
                Ok(map) => map
                    .into_iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                    .collect(),
                Err(_) => return self.fail("request headers unavailable"),
            };
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let facts = RequestFacts {
            method: pseudo(":method"),
            path: pseudo(":path"),
            authority: pseudo(":authority"),
            headers: &headers,
        };
        let shared = Rc::clone(&self.shared);
        let policy = &shared.policy;
        let outcome = evaluate(
            policy,
            &facts,
            self.started.as_secs() as i64,
            &mut shared.cache.borrow_mut(),
        );
        let audit_id = self.audit_id(&facts, &outcome);
        self.audit = Some(AuditRecord::new(
            &outcome,
            &facts,
            &audit_id,
            self.started.as_millis() as u64,
        ));
        shared.metrics.record(&outcome);

        let prefix = &policy.audit.header_prefix;
        if let Some(denial) = outcome.enforced_denial(policy) {
            self.responder = Responder::Intentgate;
            self.status = Some(denial.status);
            let reason_header = format!("{prefix}reason");
            let audit_header = format!("{prefix}audit-id");
            let response_headers = vec![
                ("www-authenticate", denial.www_authenticate.as_str()),
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                (reason_header.as_str(), outcome.reason.code()),
                (audit_header.as_str(), audit_id.as_str()),
            ];
            if hostcalls::send_http_response(
                denial.status as u32,
                response_headers,
                Some(denial.body.as_bytes()),
            )
            .is_err()
            {
                log(LogLevel::Critical, "intentgate: could not send the denial");
            }
            return Action::Pause;
        }

        // Going upstream: first remove everything an agent could have spoofed, then set our own.
        let mut mutations: Vec<(String, Option<String>)> = headers
            .iter()
            .filter(|(name, _)| name.starts_with(prefix.as_str()))
            .map(|(name, _)| (name.clone(), None))
            .collect();
        if !policy.audit.forward_authorization {
            mutations.push(("authorization".into(), None));
        }
        if let Some(target) = &outcome.rewrite_target {
            mutations.push((":path".into(), Some(target.clone())));
        }
        mutations.extend(
            upstream_headers(prefix, &outcome, &audit_id)
                .into_iter()
                .map(|(n, v)| (n, Some(v))),
        );
        for (name, value) in &mutations {
            if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value.as_deref())
                .is_err()
            {
                return self.fail("request header mutation refused by the host");
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.responder != Responder::Intentgate {
            self.responder = Responder::Upstream;
            self.status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse().ok());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(mut record) = self.audit.take() {
            let elapsed = now().saturating_sub(self.started);
            record.finish(self.status, self.responder, elapsed.as_millis() as u64);
            log(
                LogLevel::Info,
                &format!("intentgate.audit {}", record.to_json()),
            );
        }
    }
}

impl Request {
    /// 128 bits from the clock, this VM's context id and sequence, and the request itself.
    fn audit_id(&self, facts: &RequestFacts<'_>, outcome: &Outcome) -> String {
        let sequence = self.shared.sequence.get().wrapping_add(1);
        self.shared.sequence.set(sequence);
        let mut hasher = Sha256::new();
        hasher.update(self.started.as_nanos().to_le_bytes());
        hasher.update(self.context_id.to_le_bytes());
        hasher.update(sequence.to_le_bytes());
        hasher.update(facts.path.as_bytes());
        if let Some(hash) = &outcome.token_sha256 {
            hasher.update(hash);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        intentgate::hex(&digest).chars().take(32).collect()
    }

    /// The host refused something the decision depends on: answer 500 rather than forward unchecked.
    fn fail(&mut self, what: &str) -> Action {
        log(
            LogLevel::Critical,
            &format!("intentgate: {what}; request refused"),
        );
        self.responder = Responder::Intentgate;
        self.status = Some(500);
        let body = br#"{"error":"server_error","reason":"filter_error"}"#;
        let _ = hostcalls::send_http_response(
            500,
            vec![("content-type", "application/json")],
            Some(body),
        );
        Action::Pause
    }
}
