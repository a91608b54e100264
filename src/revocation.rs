//! Revocation (token-profile.md §7): deny lists for one token (`jti`), a whole task (`txn`), an agent
//! (`sub`, `client_id`, actor) and a key (`kid`), from config, from a polled feed, and from completed
//! tasks. Checked on every use of a token, cached or not.

use crate::outcome::Reason;
use crate::token::VerifiedToken;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Jti,
    Txn,
    Sub,
    ClientId,
    Actor,
    Kid,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Jti, Kind::Txn, Kind::Sub, Kind::ClientId, Kind::Actor, Kind::Kid];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Txn => "txn",
            Kind::Sub => "sub",
            Kind::ClientId => "client_id",
            Kind::Actor => "actor",
            Kind::Kid => "kid",
        }
    }

    fn reason(self) -> Reason {
        match self {
            Kind::Jti => Reason::TokenRevoked,
            Kind::Txn => Reason::TaskRevoked,
            Kind::Sub | Kind::ClientId | Kind::Actor => Reason::AgentRevoked,
            Kind::Kid => Reason::KeyRevoked,
        }
    }
}

/// `expires_at` (Unix seconds) of each entry; `None` never expires.
pub type Entries = HashMap<(Kind, String), Option<i64>>;

/// The deny lists a decision consults.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    /// From the configuration: never expire.
    pub configured: Entries,
    /// The last good feed document (replaced whole on every successful poll).
    pub feed: Entries,
    /// Tasks ended by a completing call or a trusted upstream signal: `txn` → expiry.
    pub completed: HashMap<String, i64>,
    /// When the feed was last fetched successfully; `None` before the first success.
    pub feed_ok_at: Option<i64>,
}

impl Revocations {
    /// The reason the token may not be used at `now`, if any.
    pub fn check(&self, token: &VerifiedToken, now: i64) -> Result<(), Reason> {
        if self.configured.is_empty() && self.feed.is_empty() && self.completed.is_empty() {
            return Ok(());
        }
        let claims = &token.claims;
        if let Some(txn) = &claims.txn {
            if self.completed.get(txn).is_some_and(|expires| *expires > now) {
                return Err(Reason::TaskCompleted);
            }
        }
        let mut values: Vec<(Kind, &str)> =
            vec![(Kind::Jti, &claims.jti), (Kind::Sub, &claims.sub), (Kind::Kid, &token.kid)];
        values.extend(claims.txn.as_deref().map(|t| (Kind::Txn, t)));
        values.extend(claims.client_id.as_deref().map(|c| (Kind::ClientId, c)));
        values.extend(claims.act_chain.iter().map(|a| (Kind::Actor, a.as_str())));
        for (kind, value) in values {
            let key = (kind, value.to_string());
            for list in [&self.configured, &self.feed] {
                if let Some(expires) = list.get(&key) {
                    if expires.is_none_or(|at| at > now) {
                        return Err(kind.reason());
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the feed is older than `max_staleness_s` (or never arrived).
    pub fn feed_stale(&self, now: i64, max_staleness_s: i64) -> bool {
        self.feed_ok_at.is_none_or(|at| now.saturating_sub(at) > max_staleness_s)
    }
}

/// Why a feed document was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedMalformed;

/// Parse the revocation feed:
/// `{"revoked": [{"txn": "task-7", "expires_at": 1800000000}, {"jti": "…"}, {"sub": "…"}, …]}` — each
/// entry names exactly one of `jti`, `txn`, `sub`, `client_id`, `actor`, `kid`, and may expire.
/// Entries already expired at `now` are dropped.
pub fn parse_feed(body: &[u8], now: i64) -> Result<Entries, FeedMalformed> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| FeedMalformed)?;
    let list = doc.get("revoked").and_then(Value::as_array).ok_or(FeedMalformed)?;
    let mut entries = Entries::new();
    for entry in list {
        let object = entry.as_object().ok_or(FeedMalformed)?;
        let expires_at = match object.get("expires_at") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or(FeedMalformed)?),
        };
        let mut named = Kind::ALL.iter().filter_map(|k| object.get(k.name()).map(|v| (*k, v)));
        let (Some((kind, Value::String(value))), None) = (named.next(), named.next()) else {
            return Err(FeedMalformed);
        };
        if object.len() != 1 + usize::from(object.contains_key("expires_at")) {
            return Err(FeedMalformed);
        }
        if expires_at.is_none_or(|at| at > now) {
            entries.insert((kind, value.clone()), expires_at);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn feed_documents() {
        let doc =
            br#"{"revoked": [{"txn": "t1", "expires_at": 200}, {"jti": "j1"}, {"sub": "old", "expires_at": 50}]}"#;
        let entries = parse_feed(doc, 100).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.get(&(Kind::Txn, "t1".into())), Some(&Some(200)));
        assert_eq!(entries.get(&(Kind::Jti, "j1".into())), Some(&None));
        for bad in [
            &b"not json"[..],
            br#"{"revoked": {}}"#,
            br#"{"revoked": [{"txn": 5}]}"#,
            br#"{"revoked": [{"txn": "a", "jti": "b"}]}"#,
            br#"{"revoked": [{"txn": "a", "note": "b"}]}"#,
            br#"{"revoked": [{"txn": "a", "expires_at": "soon"}]}"#,
        ] {
            assert_eq!(parse_feed(bad, 100), Err(FeedMalformed), "{}", String::from_utf8_lossy(bad));
        }
    }
}
