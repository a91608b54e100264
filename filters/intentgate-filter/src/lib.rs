//! The proxy-wasm adapter: the only code that names proxy_wasm. It gathers the request's facts and
//! the host's clock, calls `intentgate::evaluate`, and applies the outcome: a local denial, or the
//! request forwarded with authoritative audit headers. No policy logic lives here.
//!
//! Every host call goes through `proxy_wasm::hostcalls` and its `Result`: the SDK's convenience
//! wrappers `unwrap()` (on non-UTF-8 header values, for example), and a panic kills the VM.

use intentgate::audit::{upstream_headers, AuditRecord, Responder};
use intentgate::config::UnparseableList;
use intentgate::{evaluate, start, tools_list, Body, Outcome, Policy, Reason, RequestFacts, Step, TokenCache};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
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
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default()
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
                .filter_map(|r| counter(&format!("intentgate.reason.{}", r.code())).map(|id| (*r, id)))
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
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Critical, "intentgate: invalid config at (root): no plugin configuration");
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
            headers: Vec::new(),
            reading_body: None,
            body_size: 0,
            outcome: None,
            filtering_response: None,
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
    /// Request headers, kept while the body of a JSON-RPC call is being read.
    headers: Vec<(String, String)>,
    /// Set while waiting for a JSON-RPC body: its cap.
    reading_body: Option<usize>,
    /// Bytes of request body buffered so far.
    body_size: usize,
    outcome: Option<Outcome>,
    /// Set while an MCP `tools/list` response is being buffered for filtering.
    filtering_response: Option<String>,
    audit: Option<AuditRecord>,
    responder: Responder,
    status: Option<u16>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started = now();
        self.headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(map) => {
                map.into_iter().map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned())).collect()
            }
            Err(_) => return self.fail("request headers unavailable"),
        };
        let shared = Rc::clone(&self.shared);
        let step = start(
            &shared.policy,
            &facts(&self.headers, Body::NotRead),
            self.started.as_secs() as i64,
            &mut shared.cache.borrow_mut(),
        );
        match step {
            Step::Decided(outcome) => self.apply(*outcome, Body::NotRead),
            Step::ReadBody { .. } if end_of_stream => self.decide_with_body(Body::Complete(&[])),
            // Needs `allow_on_headers_stop_iteration: true` in the Wasm filter config, so that the
            // body callback runs and headers can still be changed once the body is read.
            Step::ReadBody { max_bytes } => {
                self.reading_body = Some(max_bytes);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(max_bytes) = self.reading_body else {
            return Action::Continue;
        };
        self.body_size = body_size;
        if body_size > max_bytes {
            return self.decide_with_body(Body::TooLarge);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body()
    }

    // HTTP/2 requests with trailers never end the body stream: the trailers do.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.reading_body.is_some() {
            return self.finish_body();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.responder == Responder::Intentgate {
            return Action::Continue;
        }
        self.responder = Responder::Upstream;
        let header = |name: &str| hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten();
        self.status = header(":status").and_then(|s| s.parse().ok());
        let wants_filter = self.outcome.as_ref().is_some_and(|o| o.filter_tools_list && o.allowed());
        if wants_filter && self.status == Some(200) {
            let content_type = header("content-type").unwrap_or_default();
            // the filtered body has another length; without the header the response is chunked
            if hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None).is_ok() {
                self.filtering_response = Some(content_type);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(content_type) = self.filtering_response.clone() else {
            return Action::Continue;
        };
        let policy = &self.shared.policy;
        let too_large = body_size > policy.jsonrpc.max_response_bytes;
        if !end_of_stream && !too_large {
            return Action::Pause;
        }
        self.filtering_response = None;
        let body = if too_large {
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size).ok().flatten()
        };
        let (Some(outcome), Some(audit)) = (self.outcome.as_ref(), self.audit.as_mut()) else {
            return Action::Continue;
        };
        let token = outcome.token.as_deref();
        let filtered = match (body, token) {
            (Some(body), Some(token)) => tools_list::filter(policy, token, &content_type, &body).ok(),
            _ => None,
        };
        let replacement = match filtered {
            Some(filtered) => {
                audit.tools_list_removed = Some(filtered.removed);
                filtered.body
            }
            None if policy.jsonrpc.unparseable_tools_list == UnparseableList::Pass => return Action::Continue,
            None => {
                log(LogLevel::Warn, "intentgate: tools/list response could not be filtered; replaced by an error");
                let id = outcome.rpc.as_ref().map(|r| r.id.clone()).unwrap_or_default();
                tools_list::unfilterable_error(&id, &content_type)
            }
        };
        if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &replacement).is_err() {
            log(LogLevel::Critical, "intentgate: could not replace the tools/list response body");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(mut record) = self.audit.take() {
            let elapsed = now().saturating_sub(self.started);
            record.finish(self.status, self.responder, elapsed.as_millis() as u64);
            log(LogLevel::Info, &format!("intentgate.audit {}", record.to_json()));
        }
    }
}

fn facts<'a>(headers: &'a [(String, String)], body: Body<'a>) -> RequestFacts<'a> {
    let pseudo = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("");
    RequestFacts { method: pseudo(":method"), path: pseudo(":path"), authority: pseudo(":authority"), headers, body }
}

impl Request {
    fn finish_body(&mut self) -> Action {
        let body =
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size).ok().flatten().unwrap_or_default();
        self.decide_with_body(Body::Complete(&body))
    }

    fn decide_with_body(&mut self, body: Body<'_>) -> Action {
        self.reading_body = None;
        let shared = Rc::clone(&self.shared);
        let headers = std::mem::take(&mut self.headers);
        let outcome = evaluate(
            &shared.policy,
            &facts(&headers, body),
            self.started.as_secs() as i64,
            &mut shared.cache.borrow_mut(),
        );
        self.headers = headers;
        self.apply(outcome, body)
    }

    /// Send the denial, or forward with authoritative audit headers.
    fn apply(&mut self, outcome: Outcome, body: Body<'_>) -> Action {
        let shared = Rc::clone(&self.shared);
        let policy = &shared.policy;
        let headers = std::mem::take(&mut self.headers);
        let facts = facts(&headers, body);
        let audit_id = self.audit_id(&facts, &outcome);
        self.audit = Some(AuditRecord::new(&outcome, &facts, &audit_id, self.started.as_millis() as u64));
        shared.metrics.record(&outcome);
        let prefix = &policy.audit.header_prefix;
        if let Some(denial) = outcome.enforced_denial(policy) {
            self.responder = Responder::Intentgate;
            self.status = Some(denial.status);
            let reason_header = format!("{prefix}reason");
            let audit_header = format!("{prefix}audit-id");
            let mut response_headers = vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
                (reason_header.as_str(), outcome.reason.code()),
                (audit_header.as_str(), audit_id.as_str()),
            ];
            if let Some(challenge) = denial.www_authenticate.as_deref() {
                response_headers.push(("www-authenticate", challenge));
            }
            if hostcalls::send_http_response(denial.status as u32, response_headers, Some(denial.body.as_bytes()))
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
        mutations.extend(upstream_headers(prefix, &outcome, &audit_id).into_iter().map(|(n, v)| (n, Some(v))));
        self.outcome = Some(outcome);
        for (name, value) in &mutations {
            if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value.as_deref()).is_err() {
                return self.fail("request header mutation refused by the host");
            }
        }
        Action::Continue
    }

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
        log(LogLevel::Critical, &format!("intentgate: {what}; request refused"));
        self.responder = Responder::Intentgate;
        self.status = Some(500);
        let body = br#"{"error":"server_error","reason":"filter_error"}"#;
        let _ = hostcalls::send_http_response(500, vec![("content-type", "application/json")], Some(body));
        Action::Pause
    }
}
