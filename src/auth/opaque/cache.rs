//! A bounded cache of tokens that already opened, so a request with a known token skips base64
//! and the AEAD (a few microseconds) for a hash lookup. It lives in the [`Realm`](super::Realm),
//! so a reload (keys removed, users changed) starts from empty. Only tokens that opened are
//! stored (minting one takes a login); expiry is checked on every hit; revocation and user checks
//! run after the cache in the filter, so they are never skipped.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use crate::tokens::aead::Claims;

const SHARDS: usize = 16;

struct Entry {
    token: Box<[u8]>,
    claims: Arc<Claims>,
}

/// The map keys are already keyed hash values: hash them again as themselves.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

pub struct OpenCache {
    shards: Vec<RwLock<Shard>>,
    /// Seeded per process; a hit still compares the whole token, and only tokens that opened
    /// are ever stored, so a collision can cost a cache miss, never a wrong answer.
    hasher: foldhash::quality::RandomState,
    per_shard: usize,
}

impl std::fmt::Debug for OpenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl OpenCache {
    /// A cache of about `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        OpenCache {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: foldhash::quality::RandomState::default(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    /// The keyed hash of a token and its shard. Only the token's tail is hashed: it holds the
    /// AEAD tag, which differs for every sealed token, and a hit compares the whole token anyway.
    /// The shard comes from the top bits, the map bucket from the low ones.
    fn locate(&self, token: &str) -> (u64, usize) {
        let b = token.as_bytes();
        let h = self.hasher.hash_one(&b[b.len().saturating_sub(32)..]);
        (h, (h >> 60) as usize % SHARDS)
    }

    /// The claims of a cached token, unless expired at `now_ms`.
    pub fn get(&self, token: &str, now_ms: i64) -> Option<Arc<Claims>> {
        if self.per_shard == 0 {
            return None;
        }
        let (h, s) = self.locate(token);
        let shard = match self.shards.get(s)?.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let e = shard.get(&h)?;
        // A plain comparison is safe here: the entry compared is the one under the keyed
        // (per-process seeded) hash of the presented token, which a client cannot aim at
        // someone else's token.
        let same = *e.token == *token.as_bytes();
        if !same || e.claims.expires_at.saturating_mul(1000) <= now_ms {
            return None;
        }
        Some(e.claims.clone())
    }

    /// Remember a token that opened. A full shard is emptied first (bounded memory).
    pub fn insert(&self, token: &str, claims: Arc<Claims>) {
        if self.per_shard == 0 {
            return;
        }
        let (h, s) = self.locate(token);
        let Some(lock) = self.shards.get(s) else {
            return;
        };
        let mut shard = match lock.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(
            h,
            Entry {
                token: token.as_bytes().into(),
                claims,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Arc<Claims> {
        Arc::new(Claims {
            user_id: "u".into(),
            issued_at_ms: 0,
            expires_at: exp,
            token_id: [0; 16],
        })
    }

    #[test]
    fn hits_misses_expiry_and_bound() {
        let c = OpenCache::new(32);
        assert!(c.get("a", 0).is_none());
        c.insert("a", claims(10));
        assert_eq!(c.get("a", 0).unwrap().user_id, "u");
        assert!(c.get("a", 10_000).is_none(), "expired");
        assert!(c.get("b", 0).is_none());
        for i in 0..10_000 {
            c.insert(&format!("t{i}"), claims(10));
        }
        let held: usize = c.shards.iter().map(|s| s.read().unwrap().len()).sum();
        assert!(held <= 32, "{held}");
        // Same tail (same hash), different token: never a hit for the other one.
        let tail = "x".repeat(40);
        c.insert(&format!("a{tail}"), claims(10));
        assert!(c.get(&format!("b{tail}"), 0).is_none());
        assert!(c.get(&format!("a{tail}"), 0).is_some());
        let off = OpenCache::new(0);
        off.insert("a", claims(10));
        assert!(off.get("a", 0).is_none());
    }
}
