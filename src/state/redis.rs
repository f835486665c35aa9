//! The Redis (or Redis Cluster) [`StateStore`], shared by every instance that points at the same
//! Redis and key prefix. One connection (redis-rs `ConnectionManager`, or the cluster client) with
//! automatic reconnects, connected in the background; every command bounded by the configured
//! timeout (past it: [`StateError::Timeout`], the caller answers 503). Rate limits are one Lua
//! GCRA step on Redis' clock; revocations are written by a Lua script that also publishes them,
//! and mirrored locally by [`super::mirror`] so that checking costs no round trip while the
//! subscription is up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::Script;

use super::config::{RedisSettings, Target};
use super::lua::{CHECK, GCRA, MAP_PUT, REVOKE};
use super::metrics::{Op, StateMetrics};
use super::revocations::hex_id;
use super::{Rate, RateDecision, RevocationScope, StateError, StateStore};

mod conn;

use conn::LocalConn;
pub(crate) use conn::{Conn, Work};

/// The shared store.
pub struct RedisStore {
    pub(crate) settings: RedisSettings,
    pub(crate) conn: ArcSwapOption<Conn>,
    pub(crate) metrics: Arc<StateMetrics>,
    /// The last ping answered.
    pub(crate) healthy: AtomicBool,
    /// The subscription epoch while the subscription is up and synced; 0 when down.
    pub(crate) epoch: AtomicU64,
    pub(crate) scopes: Mutex<HashMap<String, Arc<RevocationScope>>>,
    /// Wakes the subscriber when a scope is added.
    pub(crate) new_scope: tokio::sync::Notify,
    /// One connection per thread that makes calls (each Pingora worker), its driver task on that
    /// thread's runtime: a call then costs no wake-up of another thread. `conn` (on the control
    /// runtime) stays the one that says whether Redis is reachable.
    local: thread_local::ThreadLocal<Arc<LocalConn>>,
    gcra: Script,
    revoke: Script,
    check: Script,
    map_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.backend())
            .field("key_prefix", &self.settings.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store that connects in the background on `control` (`None`: never connects, for
    /// `check`).
    pub fn new(
        settings: RedisSettings,
        metrics: Arc<StateMetrics>,
        control: Option<&tokio::runtime::Handle>,
    ) -> Arc<RedisStore> {
        let store = Arc::new(RedisStore {
            settings,
            conn: ArcSwapOption::empty(),
            metrics,
            healthy: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            scopes: Mutex::new(HashMap::new()),
            new_scope: tokio::sync::Notify::new(),
            local: thread_local::ThreadLocal::new(),
            gcra: Script::new(GCRA),
            revoke: Script::new(REVOKE),
            check: Script::new(CHECK),
            map_script: Script::new(MAP_PUT),
        });
        if let Some(rt) = control {
            super::mirror::start(&store, rt);
        }
        store
    }

    /// `prefix` + `kind` + `key`.
    fn key(&self, kind: &str, key: &str) -> String {
        let p = &self.settings.key_prefix;
        let mut s = String::with_capacity(p.len() + kind.len() + key.len());
        s.push_str(p);
        s.push_str(kind);
        s.push_str(key);
        s
    }

    /// The keys of a revocation scope (one hash slot: the scope is the hash tag).
    pub(crate) fn scope_keys(&self, scope: &str) -> [String; 3] {
        let p = &self.settings.key_prefix;
        [
            format!("{p}rev:{{{scope}}}:t"),
            format!("{p}rev:{{{scope}}}:u"),
            format!("{p}rev:{{{scope}}}:ue"),
        ]
    }

    /// The channel revocations are published on.
    pub(crate) fn channel(&self) -> String {
        format!("{}revocations", self.settings.key_prefix)
    }

    fn ttl_ms(ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether the local copy of `scope` is current.
    fn mirrored(&self, scope: &RevocationScope) -> bool {
        let e = self.epoch.load(Ordering::Acquire);
        e != 0 && scope.synced.load(Ordering::Acquire) == e
    }
}

#[async_trait]
impl StateStore for RedisStore {
    fn backend(&self) -> &'static str {
        match self.settings.target {
            Target::Single(_) => "redis",
            Target::Cluster(..) => "redis-cluster",
        }
    }

    fn ready(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    async fn nonce_once(&self, key: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("nonce:", key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(Self::ttl_ms(ttl));
        let r: Option<String> = self.run(Op::Nonce, Work::Cmd(&cmd)).await?;
        Ok(r.is_some())
    }

    async fn rate_limit(&self, key: &str, rate: Rate) -> Result<RateDecision, StateError> {
        let mut inv = self.gcra.key(self.key("rl:", key));
        inv.arg(rate.interval_us()).arg(rate.burst.max(1));
        let wait_us: u64 = self.run(Op::RateLimit, Work::Script(&inv)).await?;
        Ok(if wait_us == 0 {
            RateDecision::Allowed
        } else {
            RateDecision::Limited {
                retry_after: Duration::from_micros(wait_us),
            }
        })
    }

    fn revocations(&self, scope: &str, max_lifetime: Duration) -> Arc<RevocationScope> {
        let (s, created) = super::memory::scope_in(&self.scopes, scope, max_lifetime);
        if created {
            self.new_scope.notify_one();
        }
        s
    }

    async fn revoke_token(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        expires_at_s: i64,
    ) -> Result<(), StateError> {
        let now_s = super::unix_ms().div_euclid(1000);
        let id = hex_id(token_id);
        let msg = format!("t\x1f{}\x1f{expires_at_s}\x1f0\x1f{id}", scope.name());
        let keys = self.scope_keys(scope.name());
        let mut inv = self.revoke.prepare_invoke();
        inv.key(&keys[0]).key(&keys[1]).key(&keys[2]);
        inv.arg("t").arg(&id).arg(expires_at_s).arg(0).arg(now_s);
        inv.arg(self.channel()).arg(msg);
        let _: i64 = self.run(Op::Revoke, Work::Script(&inv)).await?;
        scope.add_token(*token_id, expires_at_s, now_s);
        Ok(())
    }

    async fn revoke_user(
        &self,
        scope: &RevocationScope,
        user_id: &str,
        cutoff_ms: i64,
    ) -> Result<(), StateError> {
        let now_s = super::unix_ms().div_euclid(1000);
        let keep = scope.user_keep_until(cutoff_ms);
        let msg = format!(
            "u\x1f{}\x1f{cutoff_ms}\x1f{keep}\x1f{user_id}",
            scope.name()
        );
        let keys = self.scope_keys(scope.name());
        let mut inv = self.revoke.prepare_invoke();
        inv.key(&keys[0]).key(&keys[1]).key(&keys[2]);
        inv.arg("u")
            .arg(user_id)
            .arg(cutoff_ms)
            .arg(keep)
            .arg(now_s);
        inv.arg(self.channel()).arg(msg);
        let _: i64 = self.run(Op::Revoke, Work::Script(&inv)).await?;
        scope.add_user(user_id, cutoff_ms, keep, now_s);
        Ok(())
    }

    fn revoked_local(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Option<bool> {
        self.mirrored(scope)
            .then(|| scope.is_revoked(token_id, user_id, issued_at_ms))
    }

    async fn is_revoked(
        &self,
        scope: &RevocationScope,
        token_id: &[u8; 16],
        user_id: &str,
        issued_at_ms: i64,
    ) -> Result<bool, StateError> {
        if let Some(r) = self.revoked_local(scope, token_id, user_id, issued_at_ms) {
            return Ok(r);
        }
        let keys = self.scope_keys(scope.name());
        let mut inv = self.check.prepare_invoke();
        inv.key(&keys[0]).key(&keys[1]);
        inv.arg(hex_id(token_id))
            .arg(user_id)
            .arg(issued_at_ms)
            .arg(super::unix_ms().div_euclid(1000));
        let r: i64 = self.run(Op::RevocationLookup, Work::Script(&inv)).await?;
        Ok(r == 1)
    }

    async fn user_cutoff(
        &self,
        scope: &RevocationScope,
        user_id: &str,
    ) -> Result<Option<i64>, StateError> {
        if self.mirrored(scope) {
            return Ok(scope.user_cutoff(user_id));
        }
        let keys = self.scope_keys(scope.name());
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&keys[1]).arg(user_id);
        self.run(Op::RevocationLookup, Work::Cmd(&cmd)).await
    }

    async fn session_get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key("sess:", key));
        self.run(Op::SessionGet, Work::Cmd(&cmd)).await
    }

    async fn session_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("sess:", key))
            .arg(value)
            .arg("PX")
            .arg(Self::ttl_ms(ttl));
        let _: String = self.run(Op::SessionPut, Work::Cmd(&cmd)).await?;
        Ok(())
    }

    async fn session_delete(&self, key: &str) -> Result<(), StateError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key("sess:", key));
        let _: i64 = self.run(Op::SessionDelete, Work::Cmd(&cmd)).await?;
        Ok(())
    }

    async fn code_put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("code:", key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(Self::ttl_ms(ttl));
        let r: Option<String> = self.run(Op::CodePut, Work::Cmd(&cmd)).await?;
        Ok(r.is_some())
    }

    async fn code_take(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key("code:", key));
        self.run(Op::CodeTake, Work::Cmd(&cmd)).await
    }

    async fn map_put(
        &self,
        map: &str,
        field: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut inv = self.map_script.key(self.key("map:", map));
        inv.arg(field)
            .arg(value)
            .arg(Self::ttl_ms(ttl))
            .arg(super::MAP_MAX_FIELDS);
        let r: i64 = self.run(Op::MapPut, Work::Script(&inv)).await?;
        if r < 0 {
            return Err(StateError::Full);
        }
        Ok(())
    }

    async fn map_get(&self, map: &str, field: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.key("map:", map)).arg(field);
        self.run(Op::MapGet, Work::Cmd(&cmd)).await
    }

    async fn map_all(&self, map: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.key("map:", map));
        let mut all: Vec<(String, Vec<u8>)> = self.run(Op::MapGet, Work::Cmd(&cmd)).await?;
        all.truncate(super::MAP_MAX_FIELDS);
        Ok(all)
    }

    async fn map_delete(&self, map: &str, field: &str) -> Result<bool, StateError> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.key("map:", map)).arg(field);
        let n: i64 = self.run(Op::MapDelete, Work::Cmd(&cmd)).await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
