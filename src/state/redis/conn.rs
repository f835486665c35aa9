//! The store's connections and running one command on them: the shared connection (made by
//! the health task, which says whether Redis is reachable) and one per calling thread, each
//! driven on that thread's runtime; a command that finds its thread's connection gone is tried
//! once more on the shared one within the same deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::FromRedisValue;

use super::RedisStore;
use crate::state::config::Target;
use crate::state::metrics::Op;
use crate::state::StateError;

/// A live connection of either kind (both clone cheaply and reconnect by themselves).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RedisStore {
    /// Connect (the cluster client needs a first answer); the connection then reconnects by
    /// itself.
    pub(crate) async fn connect(&self) -> Result<(), StateError> {
        if self.conn.load().is_some() {
            return Ok(());
        }
        let timeout = self.settings.timeout;
        let conn = match &self.settings.target {
            Target::Single(client) => Conn::Single(self.manager(client)?),
            Target::Cluster(client, _) => {
                let fut = client.get_async_connection();
                match tokio::time::timeout(timeout.max(Duration::from_secs(2)), fut).await {
                    Ok(Ok(c)) => Conn::Cluster(c),
                    Ok(Err(e)) => return Err(StateError::Backend(e.to_string())),
                    Err(_) => return Err(StateError::Timeout),
                }
            }
        };
        self.conn.store(Some(Arc::new(conn)));
        Ok(())
    }

    /// A reconnecting connection whose tasks run on the calling thread's runtime.
    fn manager(&self, client: &redis::Client) -> Result<redis::aio::ConnectionManager, StateError> {
        let timeout = self.settings.timeout;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(|e| StateError::Backend(e.to_string()))
    }

    /// This thread's connection once it has answered a ping (made on first use, probed in the
    /// background meanwhile); until then the shared one, so no request waits for a connect.
    fn connection(&self) -> Result<(Conn, Option<&LocalConn>), StateError> {
        let Some(shared) = self.conn.load_full() else {
            return Err(StateError::NotConnected);
        };
        let (Conn::Single(_), Target::Single(client)) = (&*shared, &self.settings.target) else {
            return Ok(((*shared).clone(), None));
        };
        let local = self.local.get_or_try(|| {
            self.manager(client).map(|conn| {
                Arc::new(LocalConn {
                    conn,
                    ready: AtomicBool::new(false),
                    probing: AtomicBool::new(false),
                })
            })
        })?;
        if local.ready.load(Ordering::Acquire) {
            return Ok((Conn::Single(local.conn.clone()), Some(local)));
        }
        if !local.probing.swap(true, Ordering::AcqRel) {
            tokio::spawn(LocalConn::probe(local.clone()));
        }
        Ok(((*shared).clone(), None))
    }

    /// The shared connection (kept answering by the health task's pings).
    fn shared(&self) -> Result<Conn, StateError> {
        match self.conn.load_full() {
            Some(c) => Ok((*c).clone()),
            None => Err(StateError::NotConnected),
        }
    }

    /// Run a command (or a script) with the timeout, counting errors and latency under `op`.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        op: Op,
        work: Work<'_>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let result = match self.connection() {
            Err(e) => Err(e),
            Ok((conn, local)) => {
                let deadline = tokio::time::Instant::now() + self.settings.timeout;
                let first = tokio::time::timeout_at(deadline, exec(conn, work)).await;
                match (first, local) {
                    // A thread's own connection that lost Redis (it went away, or came back and
                    // this connection has not reconnected yet): stop using it until it answers a
                    // ping again, and try once on the shared connection, which the health task
                    // keeps answering, within the same deadline.
                    (Ok(Err(e)), Some(l)) if lost_connection(&e) => {
                        l.ready.store(false, Ordering::Release);
                        match self.shared() {
                            Ok(conn) => {
                                settle(tokio::time::timeout_at(deadline, exec(conn, work)).await)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (first, _) => settle(first),
                }
            }
        };
        self.metrics.observe(op, started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.error(op);
            tracing::debug!(op = op.label(), error = %e, "shared state operation failed");
        }
        result
    }
}

/// A thread's own connection and whether it has answered yet.
pub(crate) struct LocalConn {
    conn: redis::aio::ConnectionManager,
    ready: AtomicBool,
    probing: AtomicBool,
}

impl LocalConn {
    /// One PING on this thread's runtime (which connects it); ready when answered.
    async fn probe(me: Arc<LocalConn>) {
        let mut c = me.conn.clone();
        let ping = redis::cmd("PING");
        let fut = ping.query_async::<String>(&mut c);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), fut).await {
            me.ready.store(true, Ordering::Release);
        }
        me.probing.store(false, Ordering::Release);
    }
}

/// One attempt's outcome as the store's error.
fn settle<T>(
    r: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
) -> Result<T, StateError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StateError::Backend(e.to_string())),
        Err(_) => Err(StateError::Timeout),
    }
}

/// Whether `e` says the connection is gone (so another connection may answer), not that Redis
/// refused the command.
fn lost_connection(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// A command or a script invocation.
#[derive(Clone, Copy)]
pub(crate) enum Work<'a> {
    Cmd(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

async fn on<C: redis::aio::ConnectionLike, T: FromRedisValue>(
    c: &mut C,
    work: Work<'_>,
) -> redis::RedisResult<T> {
    match work {
        Work::Cmd(cmd) => cmd.query_async(c).await,
        Work::Script(inv) => inv.invoke_async(c).await,
    }
}

async fn exec<T: FromRedisValue>(conn: Conn, work: Work<'_>) -> redis::RedisResult<T> {
    match conn {
        Conn::Single(mut c) => on(&mut c, work).await,
        Conn::Cluster(mut c) => on(&mut c, work).await,
    }
}
