//! Background work of the Redis store on the control runtime: connect, ping (readiness), and the
//! revocation subscription that keeps each scope's local copy current. While the subscription is
//! up and a scope is synced, revocation checks cost no round trip; when it is down (or a ping
//! fails) the copy stops being trusted and checks fall back to lookups (which fail closed when
//! Redis is down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::config::Target;
use super::metrics::Op;
use super::redis::{RedisStore, Work};
use super::revocations::parse_hex_id;
use super::RevocationScope;

/// Subscription epochs, unique in the process (0 means "not synced").
static EPOCHS: AtomicU64 = AtomicU64::new(1);

const RETRY: Duration = Duration::from_millis(250);
const PING_EVERY: Duration = Duration::from_millis(500);

/// Start the tasks; each ends when the store is dropped.
pub(crate) fn start(store: &Arc<RedisStore>, rt: &tokio::runtime::Handle) {
    let weak = Arc::downgrade(store);
    rt.spawn(health(weak.clone()));
    rt.spawn(subscriber(weak));
}

/// Connect, then ping every half second; `ready()` follows the answers.
async fn health(weak: Weak<RedisStore>) {
    loop {
        let Some(s) = weak.upgrade() else { return };
        let ok = match s.connect().await {
            Ok(()) => {
                let cmd = redis::cmd("PING");
                s.run::<String>(Op::Ping, Work::Cmd(&cmd)).await.is_ok()
            }
            Err(e) => {
                tracing::debug!(error = %e, "shared state: not connected yet");
                false
            }
        };
        let was = s.healthy.swap(ok, Ordering::AcqRel);
        if was != ok {
            if ok {
                tracing::info!(backend = s.backend_name(), "shared state: Redis answers");
            } else {
                tracing::warn!(
                    backend = s.backend_name(),
                    "shared state: Redis does not answer; requests that need it get 503"
                );
            }
        }
        if !ok {
            // Do not trust the local copy while Redis is unreachable.
            s.epoch.store(0, Ordering::Release);
        }
        drop(s);
        tokio::time::sleep(PING_EVERY).await;
    }
}

impl RedisStore {
    fn backend_name(&self) -> &'static str {
        match self.settings.target {
            Target::Single(_) => "redis",
            Target::Cluster(..) => "redis-cluster",
        }
    }

    fn sub_clients(&self) -> Vec<redis::Client> {
        match &self.settings.target {
            Target::Single(c) => vec![(**c).clone()],
            Target::Cluster(_, nodes) => nodes.clone(),
        }
    }

    fn all_scopes(&self) -> Vec<Arc<RevocationScope>> {
        match self.scopes.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    /// Load a scope's revocations from Redis into its local copy and mark it synced in `epoch`.
    async fn sync_scope(&self, scope: &RevocationScope, epoch: u64) -> bool {
        let now_s = super::unix_ms().div_euclid(1000);
        let keys = self.scope_keys(scope.name());
        let mut t = redis::cmd("ZRANGE");
        t.arg(&keys[0])
            .arg(format!("({now_s}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES");
        let mut u = redis::cmd("HGETALL");
        u.arg(&keys[1]);
        let mut ue = redis::cmd("ZRANGE");
        ue.arg(&keys[2])
            .arg(format!("({now_s}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES");
        let tokens: Vec<(String, f64)> = match self.run(Op::RevocationSync, Work::Cmd(&t)).await {
            Ok(v) => v,
            Err(_) => return false,
        };
        let cutoffs: std::collections::HashMap<String, i64> =
            match self.run(Op::RevocationSync, Work::Cmd(&u)).await {
                Ok(v) => v,
                Err(_) => return false,
            };
        let keeps: Vec<(String, f64)> = match self.run(Op::RevocationSync, Work::Cmd(&ue)).await {
            Ok(v) => v,
            Err(_) => return false,
        };
        let tokens = tokens
            .into_iter()
            .filter_map(|(id, exp)| parse_hex_id(&id).map(|id| (id, exp as i64)))
            .collect();
        let users = keeps
            .into_iter()
            .filter_map(|(u, keep)| cutoffs.get(&u).map(|c| (u, *c, keep as i64)))
            .collect();
        scope.replace(tokens, users);
        scope.synced.store(epoch, Ordering::Release);
        true
    }

    /// Apply one published revocation to the local copy.
    fn apply(&self, payload: &str) {
        let mut f = payload.splitn(5, '\x1f');
        let (Some(kind), Some(scope), Some(v), Some(keep), Some(member)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return;
        };
        let Some(scope) = (match self.scopes.lock() {
            Ok(m) => m.get(scope).cloned(),
            Err(p) => p.into_inner().get(scope).cloned(),
        }) else {
            return;
        };
        let (Ok(v), Ok(keep)) = (v.parse::<i64>(), keep.parse::<i64>()) else {
            return;
        };
        let now_s = super::unix_ms().div_euclid(1000);
        let stored = match kind {
            "t" => parse_hex_id(member).is_some_and(|id| scope.add_token(id, v, now_s)),
            "u" => scope.add_user(member, v, keep, now_s),
            _ => true,
        };
        if !stored {
            // The copy is full: stop trusting it (checks go to Redis).
            scope.synced.store(0, Ordering::Release);
        }
    }
}

/// Subscribe, sync every scope, then apply messages; on any break, mark the copies stale and
/// start again (on the next seed node for a cluster).
async fn subscriber(weak: Weak<RedisStore>) {
    let mut node = 0usize;
    loop {
        let Some(s) = weak.upgrade() else { return };
        let clients = s.sub_clients();
        let client = clients[node % clients.len().max(1)].clone();
        node = node.wrapping_add(1);
        let timeout = s.settings.timeout.max(Duration::from_millis(500));
        let channel = s.channel();
        drop(s);
        let ps = match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(mut ps)) => match tokio::time::timeout(timeout, ps.subscribe(&channel)).await {
                Ok(Ok(())) => Some(ps),
                _ => None,
            },
            _ => None,
        };
        let Some(ps) = ps else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let epoch = EPOCHS.fetch_add(1, Ordering::Relaxed);
        let mut stream = ps.into_on_message();
        let every = Duration::from_millis(200);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        'live: loop {
            let Some(s) = weak.upgrade() else { return };
            // Sync scopes not synced in this epoch (new ones, or all after a reconnect).
            let mut all = true;
            for scope in s.all_scopes() {
                if scope.synced.load(Ordering::Acquire) != epoch
                    && !s.sync_scope(&scope, epoch).await
                {
                    all = false;
                }
            }
            if all && s.healthy.load(Ordering::Acquire) {
                s.epoch.store(epoch, Ordering::Release);
            }
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        if let Ok(p) = m.get_payload::<String>() {
                            s.apply(&p);
                        }
                    }
                    None => break 'live,
                },
                _ = s.new_scope.notified() => {}
                _ = check.tick() => {
                    // Redis stopped answering pings: this subscription may be stale; start over.
                    if !s.healthy.load(Ordering::Acquire) && s.epoch.load(Ordering::Acquire) == 0 {
                        break 'live;
                    }
                }
            }
        }
        if let Some(s) = weak.upgrade() {
            s.epoch.store(0, Ordering::Release);
        }
        tokio::time::sleep(RETRY).await;
    }
}
