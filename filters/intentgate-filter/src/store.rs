//! State shared by every worker of one Envoy, in proxy-wasm shared data: fetched key sets, the last
//! good revocation feed, completed tasks, spent single-use tokens, and the fetch schedules whose
//! compare-and-swap leases make one worker fetch for all.

use intentgate::keyset::{parse_jwks, KeySet};
use intentgate::revocation::parse_feed;
use intentgate::{Claim, ClaimKind, Policy, State};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;

/// Spent one-time things kept at most per kind; past this a call is refused rather than unrecorded.
const MAX_USED: usize = 100_000;
/// Completed tasks kept at most.
const MAX_COMPLETED: usize = 100_000;
const CAS_RETRIES: usize = 8;

/// When a resource was fetched and when it may be fetched next. One per fetched resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub next_at: i64,
    pub failures: u32,
    /// A worker holds the fetch until then (or until it reports back).
    pub lease_until: i64,
    /// Last fetch triggered by an unknown `kid` (the debounce).
    pub kid_fetch_at: i64,
}

impl Schedule {
    fn from_bytes(bytes: &[u8]) -> Schedule {
        let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        Schedule {
            next_at: n("next_at"),
            failures: u32::try_from(n("failures")).unwrap_or(0),
            lease_until: n("lease_until"),
            kid_fetch_at: n("kid_fetch_at"),
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        json!({"next_at": self.next_at, "failures": self.failures, "lease_until": self.lease_until,
               "kid_fetch_at": self.kid_fetch_at})
        .to_string()
        .into_bytes()
    }
}

/// Why a fetch may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule says it is due.
    Scheduled,
    /// A token named a `kid` this worker does not know; at most one per `debounce_s`.
    UnknownKid { debounce_s: i64 },
}

/// Shared-data access for one plugin configuration (keys are prefixed with its fingerprint, so two
/// configurations in one Envoy never mix their keys or lists).
pub struct Store {
    prefix: String,
    /// The CAS of each shared value this VM last loaded: unchanged values are not parsed again.
    seen: RefCell<HashMap<String, u32>>,
}

fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

impl Store {
    pub fn new(fingerprint: &str) -> Store {
        Store { prefix: format!("intentgate/{fingerprint}/"), seen: RefCell::new(HashMap::new()) }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value under `name` when it changed since this VM last looked.
    fn changed(&self, name: &str) -> Option<Vec<u8>> {
        let key = self.key(name);
        let (bytes, cas) = get(&key);
        let cas = cas?;
        let mut seen = self.seen.borrow_mut();
        if seen.get(&key) == Some(&cas) {
            return None;
        }
        seen.insert(key, cas);
        bytes
    }

    /// Create the shared values nobody created yet: the schedules of `fetched` resources and the
    /// completed/used maps. Run at configuration, which Envoy does on the main thread before the
    /// workers start, so that workers only ever update values with compare-and-swap (a value that
    /// does not exist yet cannot be compare-and-swapped).
    pub fn init(&self, fetched: &[String]) {
        let empty_map = b"{}".to_vec();
        let initial = fetched
            .iter()
            .map(|name| (name.clone(), Schedule::default().to_bytes()))
            .chain(std::iter::once(("completed".to_string(), empty_map.clone())))
            .chain(
                [ClaimKind::SingleUse, ClaimKind::DpopProof, ClaimKind::Approval]
                    .map(|kind| (kind.set_name().to_string(), empty_map.clone())),
            );
        for (name, value) in initial {
            let key = self.key(&name);
            if get(&key).1.is_none() {
                let _ = hostcalls::set_shared_data(&key, Some(&value), None);
            }
        }
    }

    /// Take the fetch lease of `name` if the trigger allows a fetch now.
    pub fn lease(&self, name: &str, now: i64, lease_s: i64, trigger: Trigger) -> Option<Schedule> {
        let key = self.key(name);
        for _ in 0..CAS_RETRIES {
            let (bytes, cas) = get(&key);
            let mut schedule = bytes.map(|b| Schedule::from_bytes(&b)).unwrap_or_default();
            if schedule.lease_until > now {
                return None;
            }
            match trigger {
                Trigger::Scheduled if now < schedule.next_at => return None,
                Trigger::UnknownKid { debounce_s } if now < schedule.kid_fetch_at.saturating_add(debounce_s) => {
                    return None
                }
                Trigger::UnknownKid { .. } => schedule.kid_fetch_at = now,
                Trigger::Scheduled => {}
            }
            schedule.lease_until = now.saturating_add(lease_s);
            match hostcalls::set_shared_data(&key, Some(&schedule.to_bytes()), cas) {
                Ok(()) => return Some(schedule),
                Err(Status::CasMismatch) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Release the lease and set the next fetch time.
    pub fn reschedule(&self, name: &str, next_at: i64, failures: u32) {
        let key = self.key(name);
        for _ in 0..CAS_RETRIES {
            let (bytes, cas) = get(&key);
            let mut schedule = bytes.map(|b| Schedule::from_bytes(&b)).unwrap_or_default();
            schedule.next_at = next_at;
            schedule.failures = failures;
            schedule.lease_until = 0;
            if !matches!(hostcalls::set_shared_data(&key, Some(&schedule.to_bytes()), cas), Err(Status::CasMismatch)) {
                return;
            }
        }
    }

    /// Give up a fetch whose answer will never be read: clear its lease and its unknown-kid debounce.
    pub fn release(&self, name: &str) {
        let key = self.key(name);
        for _ in 0..CAS_RETRIES {
            let (bytes, cas) = get(&key);
            let mut schedule = bytes.map(|b| Schedule::from_bytes(&b)).unwrap_or_default();
            schedule.lease_until = 0;
            schedule.kid_fetch_at = 0;
            if !matches!(hostcalls::set_shared_data(&key, Some(&schedule.to_bytes()), cas), Err(Status::CasMismatch)) {
                return;
            }
        }
    }

    /// Until when a fetch of `name` is held by somebody, if it is.
    pub fn lease_until(&self, name: &str) -> Option<i64> {
        get(&self.key(name)).0.map(|b| Schedule::from_bytes(&b).lease_until).filter(|until| *until > 0)
    }

    pub fn failures(&self, name: &str) -> u32 {
        get(&self.key(name)).0.map(|b| Schedule::from_bytes(&b).failures).unwrap_or(0)
    }

    /// Publish a key set document that parsed (the last good one for every worker).
    pub fn put_keys(&self, issuer: usize, document: &[u8]) {
        let _ = hostcalls::set_shared_data(&self.key(&format!("keys/{issuer}")), Some(document), None);
    }

    /// Publish the last good feed and when it was fetched.
    pub fn put_feed(&self, document: &Value, fetched_at: i64) {
        let value = json!({"ok_at": fetched_at, "doc": document}).to_string();
        let _ = hostcalls::set_shared_data(&self.key("feed"), Some(value.as_bytes()), None);
    }

    /// Bring this VM's state up to what other workers published: key sets, the feed, completed tasks.
    pub fn sync(&self, policy: &Policy, state: &mut State, now: i64) {
        for (i, issuer) in policy.issuers.iter().enumerate() {
            if issuer.remote.is_none() {
                continue;
            }
            if let Some(document) = self.changed(&format!("keys/{i}")) {
                if let Ok(fetched) = parse_jwks(&document, &issuer.algorithms) {
                    state.keys.set(i, fetched.keys);
                }
            }
        }
        if policy.revocation.feed.is_some() {
            if let Some(bytes) = self.changed("feed") {
                let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let document = value.get("doc").map(Value::to_string).unwrap_or_default();
                if let Ok(entries) = parse_feed(document.as_bytes(), now) {
                    state.revocations.feed = entries;
                    state.revocations.feed_ok_at = value.get("ok_at").and_then(Value::as_i64);
                }
            }
        }
        self.sync_completed(state);
    }

    /// Completed tasks, which every request checks: cheap when nothing changed (the CAS is equal).
    pub fn sync_completed(&self, state: &mut State) {
        if let Some(bytes) = self.changed("completed") {
            state.revocations.completed = read_map(&bytes);
        }
    }

    /// End a task on this Envoy: its `txn` stays revoked until `expires_at`.
    pub fn complete(&self, state: &mut State, txn: &str, expires_at: i64, now: i64) -> bool {
        state.revocations.completed.insert(txn.to_string(), expires_at);
        self.add("completed", txn, expires_at, now, MAX_COMPLETED).is_ok()
    }

    /// Spend a one-time thing (a single-use token, a DPoP proof, an approval) for every worker.
    /// `Ok(false)`: another call already spent it.
    pub fn claim(&self, state: &mut State, claim: &Claim, now: i64) -> Result<bool, ()> {
        let claimed = self.add(claim.kind.set_name(), &claim.id, claim.expires_at, now, MAX_USED)?;
        if claimed {
            state.claimed.insert((claim.kind, claim.id.clone()), claim.expires_at);
        }
        Ok(claimed)
    }

    /// Add `item` to the shared map `name` (dropping expired entries); `Ok(false)` if it was there.
    fn add(&self, name: &str, item: &str, expires_at: i64, now: i64, max: usize) -> Result<bool, ()> {
        let key = self.key(name);
        for _ in 0..CAS_RETRIES {
            let (bytes, cas) = get(&key);
            let mut map = bytes.map(|b| read_map(&b)).unwrap_or_default();
            map.retain(|_, exp| *exp > now);
            if map.contains_key(item) {
                return Ok(false);
            }
            if map.len() >= max {
                return Err(());
            }
            map.insert(item.to_string(), expires_at);
            let object: Map<String, Value> = map.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            match hostcalls::set_shared_data(&key, Some(Value::Object(object).to_string().as_bytes()), cas) {
                Ok(()) => return Ok(true),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(()),
            }
        }
        Err(())
    }
}

fn read_map(bytes: &[u8]) -> HashMap<String, i64> {
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    value
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_i64().map(|exp| (k.clone(), exp))).collect())
        .unwrap_or_default()
}

/// The key set to install locally from a fetched document (used by the fetching worker at once).
pub fn key_set(document: &[u8], policy: &Policy, issuer: usize) -> Option<(KeySet, Option<u64>, usize)> {
    let algorithms = &policy.issuers.get(issuer)?.algorithms;
    parse_jwks(document, algorithms).ok().map(|f| (f.keys, f.refresh_hint_s, f.skipped))
}
