//! The in-memory [`StateStore`] of one instance (the default): sharded maps whose entries carry
//! their deadline, tidied every minute, bounded in size (a full table fails closed with
//! [`StateError::Full`] rather than forgetting live entries). Rate limits use the same GCRA as the
//! Redis script.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Rate, RateDecision, RevocationScope, StateError, StateStore};

const SHARDS: usize = 16;
/// Entries per shard of one table (about 1M per table).
const SHARD_CAP: usize = 65_536;

/// What [`TtlMap::update`] does with an entry.
enum Next<V> {
    Keep,
    Set((Instant, V)),
    Remove,
}

/// One shard: key -> (deadline, value).
type Shard<V> = HashMap<Box<str>, (Instant, V)>;

/// A bounded map whose entries expire.
#[derive(Debug)]
struct TtlMap<V> {
    shards: Vec<Mutex<Shard<V>>>,
    hasher: foldhash::fast::RandomState,
}

impl<V: Clone> TtlMap<V> {
    fn new() -> Self {
        TtlMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn room(map: &mut Shard<V>, now: Instant) -> Result<(), StateError> {
        if map.len() >= SHARD_CAP {
            map.retain(|_, (d, _)| *d > now);
            if map.len() >= SHARD_CAP {
                return Err(StateError::Full);
            }
        }
        Ok(())
    }

    /// Apply `f` to the live value of `key` (None if absent or expired); `f` says what to do
    /// with the entry and gives the answer.
    fn update<R>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&V>, Instant) -> (Next<V>, R),
    ) -> Result<R, StateError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        let live = map.get(key).filter(|(d, _)| *d > now).map(|(_, v)| v);
        let (next, answer) = f(live, now);
        match next {
            Next::Keep => {}
            Next::Set(entry) => {
                if let Some(slot) = map.get_mut(key) {
                    *slot = entry;
                } else {
                    Self::room(&mut map, now)?;
                    map.insert(key.into(), entry);
                }
            }
            Next::Remove => {
                map.remove(key);
            }
        }
        Ok(answer)
    }

    fn get(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        let map = self.shard(key);
        map.get(key)
            .filter(|(d, _)| *d > now)
            .map(|(_, v)| v.clone())
    }

    fn tidy(&self) {
        let now = Instant::now();
        for s in &self.shards {
            let mut map = match s.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            map.retain(|_, (d, _)| *d > now);
            if map.capacity() > 4 * map.len() + 64 {
                map.shrink_to_fit();
            }
        }
    }
}

/// Every kind of state of one instance, in memory.
#[derive(Debug)]
pub struct MemoryStore {
    nonces: TtlMap<()>,
    /// Key -> theoretical arrival time (GCRA), as an instant.
    limits: TtlMap<Instant>,
    sessions: TtlMap<Arc<[u8]>>,
    codes: TtlMap<Arc<[u8]>>,
    /// Small maps (a key registry's keys), each with its deadline.
    maps: TtlMap<Arc<SmallMap>>,
    revocations: Mutex<HashMap<String, Arc<RevocationScope>>>,
}

/// The fields of one map.
type SmallMap = HashMap<Box<str>, Arc<[u8]>>;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            nonces: TtlMap::new(),
            limits: TtlMap::new(),
            sessions: TtlMap::new(),
            codes: TtlMap::new(),
            maps: TtlMap::new(),
            revocations: Mutex::new(HashMap::new()),
        }
    }
}

/// One GCRA step: with `tat` the theoretical arrival time of the key (None: fresh), allow when
/// `max(tat, now) + T - burst*T <= now`; the new TAT is `max(tat, now) + T`.
pub(crate) fn gcra(tat: Option<Instant>, now: Instant, rate: Rate) -> (Option<Instant>, Duration) {
    let t = Duration::from_micros(rate.interval_us());
    let base = tat.map_or(now, |x| x.max(now));
    let new_tat = base + t;
    let window = t.saturating_mul(rate.burst.max(1));
    let allow_at = new_tat.checked_sub(window).unwrap_or(now);
    if allow_at > now {
        (None, allow_at - now)
    } else {
        (Some(new_tat), Duration::ZERO)
    }
}

impl MemoryStore {
    /// A store tidied every minute on `control` (expired entries dropped) while it lives.
    pub fn new(control: Option<&tokio::runtime::Handle>) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore::default());
        if let Some(rt) = control {
            let weak: Weak<MemoryStore> = Arc::downgrade(&store);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(s) = weak.upgrade() else { break };
                    s.tidy();
                }
            });
        }
        store
    }

    /// Drop every expired entry.
    pub fn tidy(&self) {
        self.nonces.tidy();
        self.limits.tidy();
        self.sessions.tidy();
        self.codes.tidy();
        self.maps.tidy();
        let now_s = super::unix_ms().div_euclid(1000);
        let scopes: Vec<Arc<RevocationScope>> = match self.revocations.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        for s in scopes {
            s.purge(now_s);
        }
    }
}

/// The scope `name` in `map`, created on first use; a later build may raise its lifetime.
pub(crate) fn scope_in(
    map: &Mutex<HashMap<String, Arc<RevocationScope>>>,
    name: &str,
    max_lifetime: Duration,
) -> (Arc<RevocationScope>, bool) {
    let mut m = match map.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    if let Some(s) = m.get(name) {
        s.raise_lifetime(max_lifetime);
        return (s.clone(), false);
    }
    let s = Arc::new(RevocationScope::new(name, max_lifetime));
    m.insert(name.to_string(), s.clone());
    (s, true)
}

#[async_trait]
impl StateStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn ready(&self) -> bool {
        true
    }

    async fn nonce_once(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        // A replay leaves the first use's record as it was.
        self.nonces.update(key, |live, now| match live {
            Some(()) => (Next::Keep, false),
            None => (Next::Set((now + ttl, ())), true),
        })
    }

    async fn rate_limit(&self, key: &str, rate: Rate) -> Result<RateDecision, StateError> {
        self.limits.update(key, |tat, now| {
            let (next, wait) = gcra(tat.copied(), now, rate);
            match next {
                // The entry lives until its TAT: past it the key is as good as fresh.
                Some(new_tat) => (Next::Set((new_tat, new_tat)), RateDecision::Allowed),
                None => (Next::Keep, RateDecision::Limited { retry_after: wait }),
            }
        })
    }

    fn revocations(&self, scope: &str, max_lifetime: Duration) -> Arc<RevocationScope> {
        scope_in(&self.revocations, scope, max_lifetime).0
    }

    async fn revoke_token(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        expires_at_s: i64,
    ) -> Result<(), StateError> {
        let now_s = super::unix_ms().div_euclid(1000);
        if scope.add_token(*token_id, expires_at_s, now_s) {
            Ok(())
        } else {
            Err(StateError::Full)
        }
    }

    async fn revoke_user(
        &self,
        scope: &RevocationScope,
        user_id: &str,
        cutoff_ms: i64,
    ) -> Result<(), StateError> {
        let now_s = super::unix_ms().div_euclid(1000);
        let keep = scope.user_keep_until(cutoff_ms);
        if scope.add_user(user_id, cutoff_ms, keep, now_s) {
            Ok(())
        } else {
            Err(StateError::Full)
        }
    }

    fn revoked_local(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Option<bool> {
        Some(scope.is_revoked(token_id, user_id, issued_at_ms))
    }

    async fn is_revoked(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Result<bool, StateError> {
        Ok(scope.is_revoked(token_id, user_id, issued_at_ms))
    }

    async fn user_cutoff(
        &self,
        scope: &RevocationScope,
        user_id: &str,
    ) -> Result<Option<i64>, StateError> {
        Ok(scope.user_cutoff(user_id))
    }

    async fn session_get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.sessions.get(key).map(|v| v.to_vec()))
    }

    async fn session_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let v: Arc<[u8]> = value.into();
        self.sessions
            .update(key, |_, now| (Next::Set((now + ttl, v)), ()))
    }

    async fn session_delete(&self, key: &str) -> Result<(), StateError> {
        self.sessions.update(key, |_, _| (Next::Remove, ()))
    }

    async fn code_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let v: Arc<[u8]> = value.into();
        self.codes.update(key, |live, now| match live {
            Some(_) => (Next::Keep, false),
            None => (Next::Set((now + ttl, v)), true),
        })
    }

    async fn code_take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.codes
            .update(key, |live, _| (Next::Remove, live.map(|v| v.to_vec())))
    }

    async fn map_put(
        &self,
        map: &str,
        field: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        let mut shard = self.maps.shard(map);
        let until = now + ttl;
        match shard.get_mut(map).filter(|(d, _)| *d > now) {
            Some((deadline, m)) => {
                let m = Arc::make_mut(m);
                if m.len() >= super::MAP_MAX_FIELDS && !m.contains_key(field) {
                    return Err(StateError::Full);
                }
                m.insert(field.into(), value.into());
                *deadline = (*deadline).max(until);
            }
            None => {
                let mut m = SmallMap::new();
                m.insert(field.into(), value.into());
                shard.remove(map);
                TtlMap::room(&mut shard, now)?;
                shard.insert(map.into(), (until, Arc::new(m)));
            }
        }
        Ok(())
    }

    async fn map_get(&self, map: &str, field: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .maps
            .get(map)
            .and_then(|m| m.get(field).map(|v| v.to_vec())))
    }

    async fn map_all(&self, map: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        Ok(self
            .maps
            .get(map)
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect())
            .unwrap_or_default())
    }

    async fn map_delete(&self, map: &str, field: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut shard = self.maps.shard(map);
        let Some((_, m)) = shard.get_mut(map).filter(|(d, _)| *d > now) else {
            return Ok(false);
        };
        let gone = Arc::make_mut(m).remove(field).is_some();
        if m.is_empty() {
            shard.remove(map);
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_semantics() {
        let s = MemoryStore::new(None);
        super::super::suite::run_all(s.as_ref(), "").await;
    }

    #[test]
    fn gcra_matches_a_token_bucket() {
        let rate = Rate {
            per_second: 1.0,
            burst: 3,
        };
        let now = Instant::now();
        let mut tat = None;
        for _ in 0..3 {
            let (next, wait) = gcra(tat, now, rate);
            assert_eq!(wait, Duration::ZERO);
            tat = next;
        }
        let (next, wait) = gcra(tat, now, rate);
        assert!(next.is_none());
        assert_eq!(wait, Duration::from_secs(1));
        // One interval later, one more.
        let (next, _) = gcra(tat, now + Duration::from_secs(1), rate);
        assert!(next.is_some());
    }
}
