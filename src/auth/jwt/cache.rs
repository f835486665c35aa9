//! The verified-token cache: a token whose signature was verified is remembered, keyed by the
//! SHA-256 of the token, until its `exp`, so the next request skips the signature check. The
//! entry records which provider's keys verified it (and the `kid`), so a hit is only honoured by a
//! filter that trusts that provider and while the key is still published; the route's claims
//! policy (audience, scopes, time) is checked again on every hit.
//!
//! Bounded: 16 shards, each an `RwLock<HashMap>` with a share of the capacity (a hit takes only
//! the read lock). A full shard drops its expired entries, then arbitrary ones. An entry keeps
//! the identity the filter built from it the first time, so a hit allocates nothing.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

use super::token::Claims;

const SHARDS: usize = 16;

/// What a successful verification established.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    pub typ: Option<String>,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The verifying provider's identity (its share key).
    pub provider: Arc<str>,
    /// The identity the (one) filter owning this cache built from these claims.
    pub identity: OnceLock<Arc<crate::identity::Identity>>,
}

pub type Key = [u8; 32];

/// The cache key of a token.
pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub struct VerifiedCache {
    shards: Vec<RwLock<HashMap<Key, Arc<Verified>>>>,
    per_shard: usize,
}

impl VerifiedCache {
    /// A cache of about `capacity` entries (0: nothing is kept).
    pub fn new(capacity: usize) -> VerifiedCache {
        let per_shard = capacity.div_ceil(SHARDS);
        VerifiedCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    fn shard(&self, k: &Key) -> Option<&RwLock<HashMap<Key, Arc<Verified>>>> {
        self.shards.get(k[0] as usize % SHARDS)
    }

    /// The entry for a token, if present and not past `exp + leeway`.
    pub fn get(&self, k: &Key, now: i64, leeway: i64) -> Option<Arc<Verified>> {
        if self.per_shard == 0 {
            return None;
        }
        let shard = self.shard(k)?;
        let hit = shard.read().ok()?.get(k)?.clone();
        if now > hit.claims.exp.saturating_add(leeway) {
            if let Ok(mut map) = shard.write() {
                map.remove(k);
            }
            return None;
        }
        Some(hit)
    }

    pub fn put(&self, k: Key, v: Arc<Verified>, now: i64) {
        if self.per_shard == 0 {
            return;
        }
        let Some(shard) = self.shard(&k) else { return };
        let Ok(mut map) = shard.write() else { return };
        if map.len() >= self.per_shard {
            map.retain(|_, e| e.claims.exp >= now);
            while map.len() >= self.per_shard {
                let Some(victim) = map.keys().next().copied() else {
                    break;
                };
                map.remove(&victim);
            }
        }
        map.insert(k, v);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
