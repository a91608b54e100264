//! One request's path through the filter: gather facts (headers, then the body on JSON-RPC
//! endpoints), decide with the core, refresh keys once for an unknown `kid`, apply the outcome, and
//! afterwards watch the response (task completion, `tools/list` filtering) and write the audit line.

use crate::fetch::{self, Pending, Resource};
use crate::store::Trigger;
use crate::{hostabi, log, now, Gate};
use intentgate::audit::{upstream_headers, AuditRecord, Responder};
use intentgate::binding::PeerCertificate;
use intentgate::config::UnparseableList;
use intentgate::{evaluate, start, tools_list, Body, Claim, ClaimKind, Outcome, RequestFacts, Step};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Where the request waits, if it waits.
enum Waiting {
    Nothing,
    /// For the JSON-RPC body, up to this many bytes.
    Body(usize),
    /// For a key refresh (dispatch token), holding the body it will be decided with.
    Keys {
        token: u32,
        pending: Pending,
        body: Option<Vec<u8>>,
    },
    /// For a key refresh another call (or worker) has in flight, until `deadline`.
    KeysElsewhere {
        issuer: usize,
        deadline: i64,
        body: Option<Vec<u8>>,
    },
}

pub struct Stream {
    gate: Rc<Gate>,
    context_id: u32,
    started: Duration,
    headers: Vec<(String, String)>,
    /// The TLS client certificate, read once per request.
    peer: Option<PeerCertificate>,
    /// The same headers as received, byte for byte: what is forwarded is rebuilt from these.
    raw_headers: Vec<(String, Vec<u8>)>,
    waiting: Waiting,
    /// Bytes of request body buffered so far.
    body_size: usize,
    /// A key refresh was already tried for this request: never twice.
    refreshed_keys: bool,
    outcome: Option<Outcome>,
    /// Set while an MCP `tools/list` response is being buffered for filtering: its content type.
    filtering_response: Option<String>,
    audit: Option<AuditRecord>,
    responder: Responder,
    status: Option<u16>,
}

impl Stream {
    pub fn new(gate: Rc<Gate>, context_id: u32) -> Stream {
        Stream {
            gate,
            context_id,
            started: Duration::ZERO,
            headers: Vec::new(),
            peer: None,
            raw_headers: Vec::new(),
            waiting: Waiting::Nothing,
            body_size: 0,
            refreshed_keys: false,
            outcome: None,
            filtering_response: None,
            audit: None,
            responder: Responder::None,
            status: None,
        }
    }
}

/// The host's handle on one stream. The stream's state lives behind `Rc<RefCell<…>>` so that a key
/// refresh answering in another context (the timer, or another call) can decide for it.
pub struct Request {
    pub stream: Rc<RefCell<Stream>>,
    gate: Rc<Gate>,
    context_id: u32,
}

impl Request {
    pub fn new(gate: Rc<Gate>, context_id: u32) -> Request {
        let stream = Rc::new(RefCell::new(Stream::new(Rc::clone(&gate), context_id)));
        gate.streams.borrow_mut().insert(context_id, Rc::downgrade(&stream));
        Request { stream, gate, context_id }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.gate.streams.borrow_mut().remove(&self.context_id);
    }
}

/// Let the calls waiting for a key refresh go on: those of `issuer` when its refresh answered in this
/// worker; from the timer (`None`), those whose refresh finished elsewhere or whose wait timed out.
pub fn wake(gate: &Gate, now: i64, issuer: Option<usize>) {
    let waiting = std::mem::take(&mut *gate.waiting.borrow_mut());
    let mut still = Vec::new();
    for context_id in waiting {
        let Some(stream) = gate.streams.borrow().get(&context_id).and_then(Weak::upgrade) else {
            continue;
        };
        let Ok(mut stream) = stream.try_borrow_mut() else {
            still.push(context_id);
            continue;
        };
        let Some((waited_for, deadline)) = stream.waiting_for() else {
            continue;
        };
        let ready = match issuer {
            Some(i) => i == waited_for,
            None => {
                now >= deadline
                    || gate.store.lease_until(&Resource::Keys(waited_for).schedule()).is_none_or(|until| until <= now)
            }
        };
        if !ready {
            still.push(context_id);
            continue;
        }
        if hostcalls::set_effective_context(context_id).is_ok() && matches!(stream.after_keys(), Action::Continue) {
            let _ = hostcalls::resume_http_request();
        }
    }
    gate.waiting.borrow_mut().extend(still);
}

impl Context for Request {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
        if let Ok(mut stream) = self.stream.try_borrow_mut() {
            stream.on_http_call_response(token_id, num_headers, body_size, num_trailers);
        }
    }
}

// `try_borrow_mut`: a host call made while the stream is borrowed (a local reply) can call back into
// the same stream; such a nested callback has nothing left to do and continues.
impl HttpContext for Request {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.stream
            .try_borrow_mut()
            .map_or(Action::Continue, |mut s| s.on_http_request_headers(num_headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.try_borrow_mut().map_or(Action::Continue, |mut s| s.on_http_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.stream.try_borrow_mut().map_or(Action::Continue, |mut s| s.on_http_request_trailers(num_trailers))
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.stream
            .try_borrow_mut()
            .map_or(Action::Continue, |mut s| s.on_http_response_headers(num_headers, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.try_borrow_mut().map_or(Action::Continue, |mut s| s.on_http_response_body(body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        if let Ok(mut stream) = self.stream.try_borrow_mut() {
            stream.on_log();
        }
    }
}

/// The body a request kept while it waited (none for requests whose body is not read).
fn kept(body: &Option<Vec<u8>>) -> Body<'_> {
    match body {
        Some(bytes) => Body::Complete(bytes),
        None => Body::NotRead,
    }
}

fn facts<'a>(headers: &'a [(String, String)], body: Body<'a>, peer: Option<&'a PeerCertificate>) -> RequestFacts<'a> {
    let pseudo = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("");
    RequestFacts {
        method: pseudo(":method"),
        path: pseudo(":path"),
        authority: pseudo(":authority"),
        scheme: pseudo(":scheme"),
        headers,
        body,
        peer,
    }
}

/// The TLS client certificate of this connection (Envoy: hex SHA-256 of the DER, first URI SAN).
fn peer_certificate() -> Option<PeerCertificate> {
    let property = |name: &str| {
        hostcalls::get_property(vec!["connection", name]).ok().flatten().and_then(|b| String::from_utf8(b).ok())
    };
    let digest = property("sha256_peer_certificate_digest").filter(|d| !d.is_empty())?;
    let sha256 = intentgate::crypto::unhex(&digest);
    Some(PeerCertificate { sha256: sha256?, uri_san: property("uri_san_peer_certificate").filter(|s| !s.is_empty()) })
}

impl Stream {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Waiting::Keys { token, pending, body } = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return;
        };
        if token != token_id {
            return;
        }
        let now = now().as_secs() as i64;
        if let Some((next, next_pending)) = fetch::on_response(&self.gate, &pending, body_size, now) {
            self.waiting = Waiting::Keys { token: next, pending: next_pending, body };
            return;
        }
        let action = self.decide(kept(&body));
        if matches!(action, Action::Continue) {
            let _ = hostcalls::resume_http_request();
        }
        if let Resource::Keys(issuer) = pending.resource {
            wake(&self.gate, now, Some(issuer));
        }
    }

    /// A refresh this call was waiting for has answered (here or in another worker): decide again,
    /// now without fetching, and let the request go on or answer it.
    pub fn after_keys(&mut self) -> Action {
        let Waiting::KeysElsewhere { body, .. } = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return Action::Pause;
        };
        let gate = Rc::clone(&self.gate);
        gate.store.sync(&gate.policy, &mut gate.state.borrow_mut(), now().as_secs() as i64);
        self.decide(kept(&body))
    }

    pub fn waiting_for(&self) -> Option<(usize, i64)> {
        match self.waiting {
            Waiting::KeysElsewhere { issuer, deadline, .. } => Some((issuer, deadline)),
            _ => None,
        }
    }
}

impl Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started = now();
        self.raw_headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(map) => map,
            Err(_) => return self.fail("request headers unavailable"),
        };
        // a client certificate needs TLS: on plain connections spare the two property host calls
        let tls = self.raw_headers.iter().any(|(name, value)| name == ":scheme" && value.as_slice() == b"https");
        self.peer = if tls { peer_certificate() } else { None };
        self.headers = self
            .raw_headers
            .iter()
            .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect();
        let gate = Rc::clone(&self.gate);
        if gate.policy.tracks_completion() {
            gate.store.sync_completed(&mut gate.state.borrow_mut());
        }
        let step = start(
            &gate.policy,
            &facts(&self.headers, Body::NotRead, self.peer.as_ref()),
            self.started.as_secs() as i64,
            &mut gate.state.borrow_mut(),
        );
        match step {
            Step::Decided(outcome) => self.settle(*outcome, None),
            Step::ReadBody { .. } if end_of_stream => self.decide(Body::Complete(&[])),
            // Needs `allow_on_headers_stop_iteration: true` in the Wasm filter config, so that the
            // body callback runs and headers can still be changed once the body is read.
            Step::ReadBody { max_bytes } => {
                self.waiting = Waiting::Body(max_bytes);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.waiting {
            Waiting::Nothing => Action::Continue,
            Waiting::Keys { .. } | Waiting::KeysElsewhere { .. } => Action::Pause,
            Waiting::Body(max_bytes) => {
                self.body_size = body_size;
                if body_size > max_bytes {
                    self.waiting = Waiting::Nothing;
                    return self.decide(Body::TooLarge);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                self.finish_body()
            }
        }
    }

    // HTTP/2 requests with trailers never end the body stream: the trailers do.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.waiting {
            Waiting::Body(_) => self.finish_body(),
            Waiting::Keys { .. } | Waiting::KeysElsewhere { .. } => Action::Pause,
            Waiting::Nothing => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.responder == Responder::Intentgate {
            return Action::Continue;
        }
        self.responder = Responder::Upstream;
        let header = |name: &str| hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten();
        self.status = header(":status").and_then(|s| s.parse().ok());
        let gate = Rc::clone(&self.gate);
        let now = now().as_secs() as i64;
        let succeeded = self.status.is_some_and(|s| (200..300).contains(&s));
        // the task ends when its completing call succeeds, or when a trusted upstream says so
        let mut completed: Vec<String> = Vec::new();
        if let Some(txn) = self.outcome.as_ref().filter(|o| o.allowed()).and_then(|o| o.completes_txn.clone()) {
            if succeeded {
                completed.push(txn);
            }
        }
        if let Some(name) = &gate.policy.revocation.revoke_header {
            if let Some(txn) = header(name).filter(|t| !t.is_empty()) {
                completed.push(txn);
            }
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
        }
        for txn in completed {
            let expires_at = now.saturating_add(gate.policy.longest_token_life_s());
            if !gate.store.complete(&mut gate.state.borrow_mut(), &txn, expires_at, now) {
                log(LogLevel::Critical, "intentgate: could not record a completed task for all workers");
            }
            gate.metrics.bump(gate.metrics.tasks_completed);
        }
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
        let policy = &self.gate.policy;
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
        let filtered = match (body, outcome.token.as_deref()) {
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
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Nothing);
        if let Waiting::Keys { pending, .. } = waiting {
            // the client went away before the refresh answered: its response will never be read,
            // so free the fetch (lease and debounce) for the next caller rather than block it
            self.gate.store.release(&pending.resource.schedule());
        }
        if self.audit.is_none() && !self.headers.is_empty() {
            // ended while the body was being read: still one audit line per request
            let outcome = intentgate::abandoned(&self.gate.policy);
            let facts = facts(&self.headers, Body::NotRead, self.peer.as_ref());
            let audit_id = self.audit_id();
            self.audit = Some(AuditRecord::new(&outcome, &facts, &audit_id, self.started.as_millis() as u64));
            self.gate.metrics.record(&outcome);
        }
        if let Some(mut record) = self.audit.take() {
            let elapsed = now().saturating_sub(self.started);
            record.finish(self.status, self.responder, elapsed.as_millis() as u64);
            log(LogLevel::Info, &format!("intentgate.audit {}", record.to_json()));
        }
    }
}

impl Stream {
    fn finish_body(&mut self) -> Action {
        self.waiting = Waiting::Nothing;
        let body =
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size).ok().flatten().unwrap_or_default();
        self.decide(Body::Complete(&body))
    }

    fn decide(&mut self, body: Body<'_>) -> Action {
        let gate = Rc::clone(&self.gate);
        let outcome = evaluate(
            &gate.policy,
            &facts(&self.headers, body, self.peer.as_ref()),
            self.started.as_secs() as i64,
            &mut gate.state.borrow_mut(),
        );
        let body = match body {
            Body::Complete(bytes) => Some(bytes.to_vec()),
            _ => None,
        };
        self.settle(outcome, body)
    }

    /// An unknown `kid` of a remote issuer: fetch its keys once (debounced across workers) and decide
    /// again; otherwise apply the outcome.
    fn settle(&mut self, mut outcome: Outcome, body: Option<Vec<u8>>) -> Action {
        if let (Some(issuer), false) = (outcome.key_refresh, self.refreshed_keys) {
            self.refreshed_keys = true;
            let gate = Rc::clone(&self.gate);
            let now = now().as_secs() as i64;
            // another worker (or the main thread's timer) may have fetched the key already: look in
            // shared data first, and fetch only if the key is still unknown
            gate.store.sync(&gate.policy, &mut gate.state.borrow_mut(), now);
            let body_ref = kept(&body);
            outcome = evaluate(
                &gate.policy,
                &facts(&self.headers, body_ref, self.peer.as_ref()),
                self.started.as_secs() as i64,
                &mut gate.state.borrow_mut(),
            );
            if outcome.key_refresh == Some(issuer) {
                let debounce_s = gate
                    .policy
                    .issuers
                    .get(issuer)
                    .and_then(|i| i.remote.as_ref())
                    .map_or(60, |r| r.unknown_kid_debounce_s as i64);
                if let Some((token, pending)) =
                    fetch::start(&gate, Resource::Keys(issuer), Trigger::UnknownKid { debounce_s }, now)
                {
                    gate.metrics.bump(gate.metrics.keys_kid_refresh);
                    self.waiting = Waiting::Keys { token, pending, body };
                    return Action::Pause;
                }
                // a refresh is already on its way (another call's, or another worker's): wait for it
                if let Some(until) = gate.store.lease_until(&Resource::Keys(issuer).schedule()).filter(|u| *u > now) {
                    self.waiting = Waiting::KeysElsewhere { issuer, deadline: until, body };
                    gate.waiting.borrow_mut().push(self.context_id);
                    return Action::Pause;
                }
                // no lease: the refresh may have finished between our two looks; take its result
                gate.store.sync(&gate.policy, &mut gate.state.borrow_mut(), now);
                outcome = evaluate(
                    &gate.policy,
                    &facts(&self.headers, kept(&body), self.peer.as_ref()),
                    self.started.as_secs() as i64,
                    &mut gate.state.borrow_mut(),
                );
            }
        }
        let body_ref = kept(&body);
        self.apply(outcome, body_ref)
    }

    /// Send the denial, or forward with authoritative audit headers.
    fn apply(&mut self, mut outcome: Outcome, body: Body<'_>) -> Action {
        let gate = Rc::clone(&self.gate);
        let policy = &gate.policy;
        // one-time things (single-use token, DPoP proof, approval) are spent for every worker before
        // the call may go anywhere
        let now = self.started.as_secs() as i64;
        // a refused call spends only its DPoP proof (replay protection), never a token or approval
        let spend: Vec<Claim> =
            outcome.claims.iter().filter(|c| outcome.allowed() || c.kind == ClaimKind::DpopProof).cloned().collect();
        for claim in spend {
            match gate.store.claim(&mut gate.state.borrow_mut(), &claim, now) {
                Ok(true) => {}
                Ok(false) => {
                    outcome = outcome.refuse(claim.kind.reason_if_taken(), claim.kind.needed_if_taken(policy));
                    break;
                }
                Err(()) => return self.fail("a one-time credential could not be recorded for all workers"),
            }
        }
        let headers = std::mem::take(&mut self.headers);
        let facts = facts(&headers, body, self.peer.as_ref());
        let audit_id = self.audit_id();
        self.audit = Some(AuditRecord::new(&outcome, &facts, &audit_id, self.started.as_millis() as u64));
        gate.metrics.record(&outcome);
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

        // Going upstream: the headers as received, less everything an agent could have spoofed
        // (and the token), plus our own — written back in one host call, since every host call
        // crosses the VM boundary.
        let ours = upstream_headers(prefix, &outcome, &audit_id);
        let path = outcome.rewrite_target.clone();
        self.outcome = Some(outcome);
        let mut forwarded: Vec<(&str, &[u8])> = Vec::with_capacity(self.raw_headers.len() + ours.len());
        for (name, value) in &self.raw_headers {
            let spoofable = name.starts_with(prefix.as_str());
            let token = name == "authorization" && !policy.audit.forward_authorization;
            // the DPoP proof and the approval are credentials of this hop only
            let credential = name == "dpop" || policy.approvals.as_ref().is_some_and(|a| a.header == *name);
            match (name.as_str(), &path) {
                (":path", Some(path)) => forwarded.push((":path", path.as_bytes())),
                _ if spoofable || token || credential => {}
                _ => forwarded.push((name, value)),
            }
        }
        forwarded.extend(ours.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        if hostabi::set_request_headers(&forwarded).is_err() {
            return self.fail("request header mutation refused by the host");
        }
        Action::Continue
    }

    /// 128 bits, unique per Envoy: the request's start (ns), this VM's start (ns) and this VM's
    /// request sequence. No hashing: uniqueness is all an audit id needs.
    fn audit_id(&self) -> String {
        let vm = self.gate.vm_started_ns ^ (u64::from(self.context_id) << 40);
        format!("{:016x}{:016x}", self.started.as_nanos() as u64, vm.wrapping_add(self.gate.next_sequence()))
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
