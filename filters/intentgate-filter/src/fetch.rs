//! Fetching remote key sets and the revocation feed with `dispatch_http_call`: what is due, the
//! request, and what a response does. A failed, slow, oversized or malformed fetch keeps the last
//! good data and retries with backoff.

use crate::store::{Store, Trigger};
use crate::{log, Gate};
use intentgate::keyset::{backoff_s, parse_discovery, refresh_after, FetchError};
use intentgate::revocation::parse_feed;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::time::Duration;

/// What a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Keys(usize),
    Feed,
}

impl Resource {
    pub fn schedule(self) -> String {
        match self {
            Resource::Keys(i) => format!("keys/{i}/schedule"),
            Resource::Feed => "feed/schedule".to_string(),
        }
    }

    fn label(self, gate: &Gate) -> String {
        match self {
            Resource::Keys(i) => {
                format!("keys of {}", gate.policy.issuers.get(i).map(|x| x.issuer.as_str()).unwrap_or("?"))
            }
            Resource::Feed => "revocation feed".to_string(),
        }
    }
}

/// A fetch in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub resource: Resource,
    /// OIDC discovery first, then the key set it points to.
    pub discovery: bool,
}

/// Every resource this configuration fetches.
pub fn resources(gate: &Gate) -> Vec<Resource> {
    let mut all: Vec<Resource> = (0..gate.policy.issuers.len())
        .filter(|i| gate.policy.issuers.get(*i).is_some_and(|x| x.remote.is_some()))
        .map(Resource::Keys)
        .collect();
    if gate.policy.revocation.feed.is_some() {
        all.push(Resource::Feed);
    }
    all
}

struct Upstream<'a> {
    cluster: &'a str,
    path: String,
    authority: &'a str,
    timeout_ms: u64,
    max_bytes: usize,
}

fn upstream<'g>(gate: &'g Gate, pending: &Pending, path_override: Option<String>) -> Option<Upstream<'g>> {
    match pending.resource {
        Resource::Keys(i) => {
            let remote = gate.policy.issuers.get(i)?.remote.as_ref()?;
            Some(Upstream {
                cluster: &remote.cluster,
                path: path_override.unwrap_or_else(|| remote.path.clone()),
                authority: &remote.authority,
                timeout_ms: remote.timeout_ms,
                max_bytes: remote.max_bytes,
            })
        }
        Resource::Feed => {
            let feed = gate.policy.revocation.feed.as_ref()?;
            Some(Upstream {
                cluster: &feed.cluster,
                path: feed.path.clone(),
                authority: &feed.authority,
                timeout_ms: feed.timeout_ms,
                max_bytes: feed.max_bytes,
            })
        }
    }
}

/// How long a worker holds a fetch: the timeout (twice with discovery) and a margin.
pub fn lease_s(gate: &Gate, resource: Resource) -> i64 {
    let pending = Pending { resource, discovery: false };
    let timeout_s = upstream(gate, &pending, None).map_or(1, |u| u.timeout_ms.div_ceil(1000)) as i64;
    2 * timeout_s + 2
}

/// Send the request for `pending`. `path` overrides the configured path (the discovered JWKS).
pub fn dispatch(gate: &Gate, pending: &Pending, path: Option<String>) -> Option<u32> {
    let up = upstream(gate, pending, path)?;
    let headers = vec![
        (":method", "GET"),
        (":path", up.path.as_str()),
        (":authority", up.authority),
        ("accept", "application/json"),
    ];
    match hostcalls::dispatch_http_call(up.cluster, headers, None, vec![], Duration::from_millis(up.timeout_ms)) {
        Ok(token) => Some(token),
        Err(status) => {
            log(LogLevel::Warn, &format!("intentgate: cannot fetch {}: {status:?}", pending.resource.label(gate)));
            None
        }
    }
}

/// Start a fetch of `resource` if `trigger` allows one now (one worker wins the lease).
pub fn start(gate: &Gate, resource: Resource, trigger: Trigger, now: i64) -> Option<(u32, Pending)> {
    gate.store.lease(&resource.schedule(), now, lease_s(gate, resource), trigger)?;
    let discovery = match resource {
        Resource::Keys(i) => gate.policy.issuers.get(i).and_then(|x| x.remote.as_ref()).is_some_and(|r| r.discovery),
        Resource::Feed => false,
    };
    let pending = Pending { resource, discovery };
    match dispatch(gate, &pending, None) {
        Some(token) => Some((token, pending)),
        None => {
            fail(gate, resource, now, FetchError::Status(0));
            None
        }
    }
}

/// Handle a fetch response. Returns the next fetch when this one was the discovery step.
pub fn on_response(gate: &Gate, pending: &Pending, body_size: usize, now: i64) -> Option<(u32, Pending)> {
    let header = |name: &str| hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name).ok().flatten();
    let result = read_body(gate, pending, header(":status"), body_size);
    let body = match result {
        Ok(body) => body,
        Err(error) => {
            fail(gate, pending.resource, now, error);
            return None;
        }
    };
    match pending.resource {
        Resource::Keys(_) if pending.discovery => match parse_discovery(&body) {
            Ok(path) => {
                let next = Pending { resource: pending.resource, discovery: false };
                dispatch(gate, &next, Some(path)).map(|token| (token, next))
            }
            Err(error) => {
                fail(gate, pending.resource, now, error);
                None
            }
        },
        Resource::Keys(i) => {
            match crate::store::key_set(&body, &gate.policy, i) {
                Some((keys, hint, skipped)) => {
                    let count = keys.keys.len();
                    gate.state.borrow_mut().keys.set(i, keys);
                    gate.store.put_keys(i, &body);
                    let remote = gate.policy.issuers.get(i).and_then(|x| x.remote.as_ref());
                    let after = remote.map_or(60, |r| refresh_after(header("cache-control").as_deref(), hint, r));
                    gate.store.reschedule(&pending.resource.schedule(), now.saturating_add(after as i64), 0);
                    gate.metrics.bump(gate.metrics.keys_fetch_ok);
                    log(
                        LogLevel::Info,
                        &format!(
                            "intentgate: {}: {count} key(s), {skipped} skipped, next refresh in {after}s",
                            pending.resource.label(gate)
                        ),
                    );
                }
                None => fail(gate, pending.resource, now, FetchError::Malformed("not a key set")),
            }
            None
        }
        Resource::Feed => {
            match parse_feed(&body, now) {
                Ok(entries) => {
                    let count = entries.len();
                    {
                        let mut state = gate.state.borrow_mut();
                        state.revocations.feed = entries;
                        state.revocations.feed_ok_at = Some(now);
                    }
                    let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    gate.store.put_feed(&document, now);
                    let poll = gate.policy.revocation.feed.as_ref().map_or(30, |f| f.poll_s);
                    gate.store.reschedule(&pending.resource.schedule(), now.saturating_add(poll as i64), 0);
                    gate.metrics.bump(gate.metrics.feed_fetch_ok);
                    log(LogLevel::Debug, &format!("intentgate: revocation feed: {count} entries"));
                }
                Err(_) => fail(gate, pending.resource, now, FetchError::Malformed("not a feed")),
            }
            None
        }
    }
}

fn read_body(gate: &Gate, pending: &Pending, status: Option<String>, body_size: usize) -> Result<Vec<u8>, FetchError> {
    let max_bytes = upstream(gate, pending, None).map_or(0, |u| u.max_bytes);
    match status.as_deref() {
        // no response at all: the call timed out or the cluster had nobody to ask
        None => return Err(FetchError::Timeout),
        Some("200") => {}
        Some(other) => return Err(FetchError::Status(other.parse().unwrap_or(0))),
    }
    if body_size > max_bytes {
        return Err(FetchError::TooLarge);
    }
    Ok(hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default())
}

/// Keep the last good data, count, log, and retry with backoff.
fn fail(gate: &Gate, resource: Resource, now: i64, error: FetchError) {
    let store: &Store = &gate.store;
    let failures = store.failures(&resource.schedule()).saturating_add(1);
    let cap = match resource {
        Resource::Keys(i) => gate.policy.issuers.get(i).and_then(|x| x.remote.as_ref()).map_or(30, |r| r.min_refresh_s),
        Resource::Feed => gate.policy.revocation.feed.as_ref().map_or(30, |f| f.poll_s),
    };
    let retry = backoff_s(failures, cap);
    store.reschedule(&resource.schedule(), now.saturating_add(retry as i64), failures);
    gate.metrics.bump(match resource {
        Resource::Keys(_) => gate.metrics.keys_fetch_failed,
        Resource::Feed => gate.metrics.feed_fetch_failed,
    });
    log(
        LogLevel::Warn,
        &format!(
            "intentgate: fetching {} failed ({}{}); keeping the last good data, retry in {retry}s",
            resource.label(gate),
            error.code(),
            match error {
                FetchError::Status(s) if s > 0 => format!(" {s}"),
                _ => String::new(),
            }
        ),
    );
}
