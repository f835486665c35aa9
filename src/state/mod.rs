//! The shared-state interface. For now only what the `signed` mode needs: one-time nonces,
//! kept in memory (per process). The state issue replaces this with the full interface
//! (memory and Redis); the signature `nonce_once(key, ttl) -> Result<bool, StateError>` is the
//! one agreed with it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a state operation could not be done. Callers deny with 503, never allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("state store full")]
    Full,
}

/// Nonces in memory, each kept until its TTL ends. Bounded: when full of live nonces, new ones
/// are refused with [`StateError::Full`] (a deny), never accepted unrecorded.
#[derive(Debug)]
pub struct MemoryNonces {
    inner: Mutex<Inner>,
    max: usize,
}

#[derive(Debug)]
struct Inner {
    seen: HashMap<Box<str>, Instant>,
    next_purge: Instant,
}

/// Default bound on remembered nonces.
pub const DEFAULT_MAX_NONCES: usize = 1_000_000;

impl Default for MemoryNonces {
    fn default() -> Self {
        MemoryNonces::new(DEFAULT_MAX_NONCES)
    }
}

impl MemoryNonces {
    pub fn new(max: usize) -> MemoryNonces {
        MemoryNonces {
            inner: Mutex::new(Inner {
                seen: HashMap::new(),
                next_purge: Instant::now(),
            }),
            max,
        }
    }

    /// Record `key` for `ttl`. `Ok(true)`: first use; `Ok(false)`: seen before and still live.
    pub async fn nonce_once(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StateError::Unavailable("nonce store poisoned".into()))?;
        if let Some(until) = g.seen.get(key) {
            if *until > now {
                return Ok(false);
            }
        }
        if g.seen.len() >= self.max || now >= g.next_purge {
            g.seen.retain(|_, until| *until > now);
            g.next_purge = now + Duration::from_secs(10);
        }
        if g.seen.len() >= self.max {
            return Err(StateError::Full);
        }
        g.seen.insert(key.into(), now + ttl);
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn once_then_replay_then_expiry_and_bound() {
        let n = MemoryNonces::new(2);
        let min = Duration::from_secs(60);
        assert_eq!(n.nonce_once("a", min).await, Ok(true));
        assert_eq!(n.nonce_once("a", min).await, Ok(false));
        // Expired at once: usable again, and purged when the store is full.
        assert_eq!(n.nonce_once("b", Duration::ZERO).await, Ok(true));
        assert_eq!(n.nonce_once("b", min).await, Ok(true));
        assert_eq!(n.nonce_once("c", min).await, Err(StateError::Full));
        assert_eq!(n.nonce_once("b", min).await, Ok(false));
    }
}
