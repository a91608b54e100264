//! A bounded cache of verified tokens, keyed by the SHA-256 of the token text. Only successes are
//! cached; an entry is re-checked against the clock on every hit and dropped once the token expires.
//! Bounded twice: by entries and by the (estimated) bytes the entries hold, since a claim set can be
//! large (`authorization_details`).

use crate::token::VerifiedToken;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

pub type TokenHash = [u8; 32];

#[derive(Debug, Default)]
pub struct TokenCache {
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<TokenHash, (Rc<VerifiedToken>, usize)>,
    /// Insertion order, for evicting the oldest entry first. May hold keys already removed.
    order: VecDeque<TokenHash>,
}

/// What one cached token costs, roughly: the strings it holds plus fixed overhead.
fn estimate(token: &VerifiedToken) -> usize {
    let c = &token.claims;
    let strings = [c.iss.len(), c.sub.len(), c.jti.len(), token.kid.len()].iter().sum::<usize>()
        + c.aud.iter().chain(&c.scope).chain(&c.act_chain).map(String::len).sum::<usize>()
        + c.client_id.as_ref().map_or(0, String::len)
        + c.txn.as_ref().map_or(0, String::len)
        + c.acr.as_ref().map_or(0, String::len);
    let details: usize = c
        .authorization_details
        .iter()
        .map(|d| {
            d.locations.iter().chain(&d.actions).chain(&d.privileges).map(String::len).sum::<usize>()
                + d.identifier.as_ref().map_or(0, String::len)
                + d.limits.as_ref().map_or(0, |l| l.to_string().len())
                + 64
        })
        .sum();
    256 + strings + details
}

impl TokenCache {
    /// `max_entries == 0` (or `max_bytes == 0`) disables caching.
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        TokenCache { max_entries, max_bytes, bytes: 0, entries: HashMap::new(), order: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated bytes held by the entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A cached token that is still within its lifetime at `now`.
    pub fn get(&mut self, key: &TokenHash, now: i64) -> Option<Rc<VerifiedToken>> {
        let (token, _) = self.entries.get(key)?;
        if token.check_time(now).is_ok() {
            return Some(Rc::clone(token));
        }
        // Expired (or not yet valid): drop it; the caller re-verifies and gets the precise reason.
        self.remove(key);
        None
    }

    fn remove(&mut self, key: &TokenHash) {
        if let Some((_, size)) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(size);
        }
    }

    pub fn insert(&mut self, key: TokenHash, token: Rc<VerifiedToken>) {
        let size = estimate(&token);
        if self.max_entries == 0 || size > self.max_bytes {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            match self.order.pop_front() {
                Some(oldest) => self.remove(&oldest),
                None => break,
            }
        }
        self.entries.insert(key, (token, size));
        self.bytes += size;
        self.order.push_back(key);
        // keys removed on expiry stay in `order`; keep it from growing past twice the bound
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}
