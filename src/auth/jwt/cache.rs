//! The verified-token cache: a token whose signature was verified is remembered (the exact
//! token bytes, see [`crate::tokens::memo`]) until its `exp`, so the next request skips the
//! signature check. The entry records which provider's keys verified it (and the `kid`), so a
//! hit is only honoured by a filter that trusts that provider and while the key is still
//! published; the route's claims policy (audience, scopes, time) is checked again on every hit.
//!
//! Bounded and lock-free (the memo's slots). An entry keeps the identity the filter built from it
//! the first time, so a hit allocates nothing.

use std::sync::{Arc, OnceLock};

use jsonwebtoken::Algorithm;

use super::token::Claims;
use crate::tokens::memo::{Entry, Memo};

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

/// A verified token, as the cache hands it out (derefs to [`Verified`]).
pub type Hit = Arc<Entry<Verified>>;

#[derive(Debug)]
pub struct VerifiedCache {
    memo: Memo<Verified>,
}

impl VerifiedCache {
    /// A cache of about `capacity` entries (0: nothing is kept).
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache {
            memo: Memo::new(capacity),
        }
    }

    /// The entry for a token, if present and not past `exp + leeway`.
    pub fn get(&self, token: &str, now: i64, leeway: i64) -> Option<Hit> {
        let hit = self.memo.get(token.as_bytes())?;
        if now > hit.claims.exp.saturating_add(leeway) {
            self.memo.remove(token.as_bytes());
            return None;
        }
        Some(hit)
    }

    /// Remember a verified token (unless it is already past `exp + leeway`); the entry either way.
    pub fn put(&self, token: &str, v: Verified, now: i64, leeway: i64) -> Hit {
        if v.claims.exp.saturating_add(leeway) < now {
            return Memo::detached(token.as_bytes(), v);
        }
        self.memo.put(token.as_bytes(), v)
    }

    pub fn len(&self) -> usize {
        self.memo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memo.is_empty()
    }
}
