//! A bounded cache of verified tokens, keyed by the SHA-256 of the token text. Only successes are
//! cached; an entry is re-checked against the clock on every hit and dropped once the token expires.

use crate::token::VerifiedToken;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

pub type TokenHash = [u8; 32];

#[derive(Debug, Default)]
pub struct TokenCache {
    max_entries: usize,
    entries: HashMap<TokenHash, Rc<VerifiedToken>>,
    /// Insertion order, for evicting the oldest entry first. May hold keys already removed.
    order: VecDeque<TokenHash>,
}

impl TokenCache {
    /// `max_entries == 0` disables caching.
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache { max_entries, entries: HashMap::new(), order: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A cached token that is still within its lifetime at `now`.
    pub fn get(&mut self, key: &TokenHash, now: i64) -> Option<Rc<VerifiedToken>> {
        let token = self.entries.get(key)?;
        if token.check_time(now).is_ok() {
            return Some(Rc::clone(token));
        }
        // Expired (or not yet valid): drop it; the caller re-verifies and gets the precise reason.
        self.entries.remove(key);
        None
    }

    pub fn insert(&mut self, key: TokenHash, token: Rc<VerifiedToken>) {
        if self.max_entries == 0 {
            return;
        }
        while self.entries.len() >= self.max_entries {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if self.entries.insert(key, token).is_none() {
            self.order.push_back(key);
        }
        // keys removed on expiry stay in `order`; keep it from growing past twice the bound
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}
