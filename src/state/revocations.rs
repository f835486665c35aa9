//! The local copy of one scope's revocations (an opaque realm): revoked token ids and per-user
//! cutoffs, each kept until the tokens it covers would have expired. The memory store keeps its
//! revocations here; the Redis store mirrors Redis into it through pub/sub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// Most entries kept per scope; beyond it (after dropping expired ones) revoking fails with
/// [`super::StateError::Full`] rather than forgetting older entries.
pub const MAX_REVOCATIONS: usize = 1_000_000;

#[derive(Debug, Default)]
struct Sets {
    /// Token id -> its expiry (unix seconds).
    tokens: HashMap<[u8; 16], i64>,
    /// User id -> (tokens issued at or before this ms are revoked, keep until unix seconds).
    users: HashMap<String, (i64, i64)>,
}

/// Revoked tokens and users of one scope.
#[derive(Debug)]
pub struct RevocationScope {
    name: String,
    sets: RwLock<Sets>,
    /// Entries in `sets`; lets the request path skip the lock when nothing is revoked.
    count: AtomicUsize,
    /// Longest token lifetime (seconds) the scope has been built with.
    max_lifetime: AtomicI64,
    /// The subscription epoch this copy was last synced in (Redis); 0: never.
    #[allow(dead_code)]
    pub(crate) synced: AtomicU64,
}

impl RevocationScope {
    pub fn new(name: &str, max_lifetime: Duration) -> RevocationScope {
        let r = RevocationScope {
            name: name.to_string(),
            sets: RwLock::default(),
            count: AtomicUsize::new(0),
            max_lifetime: AtomicI64::new(0),
            synced: AtomicU64::new(0),
        };
        r.raise_lifetime(max_lifetime);
        r
    }

    /// The scope's name (the realm).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A build with a longer token lifetime keeps per-user revocations longer.
    pub fn raise_lifetime(&self, lifetime: Duration) {
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self.max_lifetime.fetch_max(secs, Ordering::Relaxed);
    }

    /// Longest token lifetime in seconds.
    pub fn max_lifetime_s(&self) -> i64 {
        self.max_lifetime.load(Ordering::Relaxed)
    }

    /// Until when (unix s) a per-user revocation made at `cutoff_ms` is kept.
    pub fn user_keep_until(&self, cutoff_ms: i64) -> i64 {
        cutoff_ms
            .div_euclid(1000)
            .saturating_add(self.max_lifetime_s())
            .saturating_add(1)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Sets> {
        match self.sets.read() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Sets> {
        match self.sets.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether a token (by id, user and issue time) is revoked in this copy.
    pub fn is_revoked(&self, token_id: &[u8; 16], user_id: &str, issued_at_ms: i64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let sets = self.read();
        if sets.tokens.contains_key(token_id) {
            return true;
        }
        matches!(sets.users.get(user_id), Some((cutoff, _)) if issued_at_ms <= *cutoff)
    }

    /// The revoke-all cutoff of a user in this copy.
    pub fn user_cutoff(&self, user_id: &str) -> Option<i64> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.read().users.get(user_id).map(|(cutoff, _)| *cutoff)
    }

    fn make_room(sets: &mut Sets, now_s: i64) -> bool {
        if sets.tokens.len() + sets.users.len() < MAX_REVOCATIONS {
            return true;
        }
        sets.tokens.retain(|_, exp| *exp > now_s);
        sets.users.retain(|_, (_, keep)| *keep > now_s);
        sets.tokens.len() + sets.users.len() < MAX_REVOCATIONS
    }

    fn recount(&self, sets: &Sets) {
        self.count
            .store(sets.tokens.len() + sets.users.len(), Ordering::Release);
    }

    /// Record a revoked token until `expires_at_s`. False when the copy is full.
    pub fn add_token(&self, token_id: [u8; 16], expires_at_s: i64, now_s: i64) -> bool {
        if expires_at_s <= now_s {
            return true;
        }
        let mut sets = self.write();
        if !sets.tokens.contains_key(&token_id) && !Self::make_room(&mut sets, now_s) {
            return false;
        }
        let e = sets.tokens.entry(token_id).or_insert(expires_at_s);
        *e = (*e).max(expires_at_s);
        self.recount(&sets);
        true
    }

    /// Record a per-user cutoff (the later one wins), kept until `keep_until_s`. False when full.
    pub fn add_user(&self, user_id: &str, cutoff_ms: i64, keep_until_s: i64, now_s: i64) -> bool {
        let mut sets = self.write();
        if !sets.users.contains_key(user_id) && !Self::make_room(&mut sets, now_s) {
            return false;
        }
        let e = sets
            .users
            .entry(user_id.to_string())
            .or_insert((cutoff_ms, keep_until_s));
        e.0 = e.0.max(cutoff_ms);
        e.1 = e.1.max(keep_until_s);
        self.recount(&sets);
        true
    }

    /// Replace the whole copy (a sync from the backend).
    pub fn replace(&self, tokens: Vec<([u8; 16], i64)>, users: Vec<(String, i64, i64)>) {
        let mut sets = self.write();
        sets.tokens = tokens.into_iter().collect();
        sets.users = users.into_iter().map(|(u, c, k)| (u, (c, k))).collect();
        self.recount(&sets);
    }

    /// Drop entries whose tokens have all expired.
    pub fn purge(&self, now_s: i64) {
        if self.is_empty() {
            return;
        }
        let mut sets = self.write();
        sets.tokens.retain(|_, exp| *exp > now_s);
        sets.users.retain(|_, (_, keep)| *keep > now_s);
        self.recount(&sets);
    }

    /// Entries held (tokens and users).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hex of a token id (Redis members and messages).
pub fn hex_id(id: &[u8; 16]) -> String {
    let mut s = String::with_capacity(32);
    for b in id {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The token id a hex string names.
pub fn parse_hex_id(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_copy() {
        let r = RevocationScope::new("r", Duration::from_secs(3600));
        assert!(!r.is_revoked(&[1; 16], "u", 10));
        assert!(r.add_token([1; 16], 100, 0));
        assert!(r.is_revoked(&[1; 16], "u", 10));
        assert!(!r.is_revoked(&[2; 16], "u", 10));
        assert!(r.add_user("v", 5_000, r.user_keep_until(5_000), 0));
        assert!(r.is_revoked(&[2; 16], "v", 5_000));
        assert!(!r.is_revoked(&[2; 16], "v", 5_001));
        r.purge(101);
        assert!(!r.is_revoked(&[1; 16], "u", 10));
        assert!(r.is_revoked(&[2; 16], "v", 10));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn hex_round_trip() {
        let id = [0xab; 16];
        assert_eq!(parse_hex_id(&hex_id(&id)), Some(id));
        assert_eq!(parse_hex_id("zz"), None);
    }
}
