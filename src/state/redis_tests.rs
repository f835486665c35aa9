//! The shared semantic suite against a real `redis-server` started on a free loopback port,
//! plus what only Redis has: two stores sharing one server (revocations mirrored through
//! pub/sub, one rate budget), and failing closed while Redis is down.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Problems;
use crate::state::config::{validate, RedisConfig};
use crate::state::metrics::StateMetrics;
use crate::state::redis::RedisStore;
use crate::state::{Rate, RateDecision, StateError, StateStore};

pub(crate) struct RedisServer {
    child: Child,
    pub port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Start redis-server (it must be installed: the test fails, never skips) and wait for PING.
pub(crate) fn redis_server(port: u16) -> RedisServer {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .expect("redis-cli");
        if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
            break;
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    RedisServer { child, port }
}

fn store(port: u16, prefix: &str) -> Arc<RedisStore> {
    let yaml =
        format!("url: redis://127.0.0.1:{port}/0\nkey_prefix: \"{prefix}\"\ntimeout: 200ms\n");
    let cfg: RedisConfig = serde_norway::from_str(&yaml).expect("yaml");
    let mut p = Problems::default();
    let s = validate(&cfg, &|n| n.to_string(), &mut p).expect("valid");
    RedisStore::new(
        s,
        Arc::new(StateMetrics::detached()),
        Some(&tokio::runtime::Handle::current()),
    )
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_semantics_and_sharing() {
    let server = redis_server(free_port());
    let a = store(server.port, "t1:");
    let b = store(server.port, "t1:");
    until("ready", || a.ready() && b.ready()).await;
    crate::state::suite::run_all(a.as_ref(), "a-").await;

    // A nonce used at A is a replay at B.
    assert_eq!(
        a.nonce_once("shared", Duration::from_secs(5)).await,
        Ok(true)
    );
    assert_eq!(
        b.nonce_once("shared", Duration::from_secs(5)).await,
        Ok(false)
    );

    // One budget across both.
    let rate = Rate {
        per_second: 0.01,
        burst: 4,
    };
    let mut allowed = 0;
    for i in 0..8 {
        let s = if i % 2 == 0 { &a } else { &b };
        if s.rate_limit("carol", rate).await == Ok(RateDecision::Allowed) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4);

    // A revocation at A reaches B's local copy (no round trip) within 1 s.
    let sa = a.revocations("realm", Duration::from_secs(3600));
    let sb = b.revocations("realm", Duration::from_secs(3600));
    let now = crate::state::unix_ms();
    until("b mirrored", || {
        b.revoked_local(&sb, &[9; 16], "u", now).is_some()
    })
    .await;
    assert_eq!(b.revoked_local(&sb, &[9; 16], "u", now), Some(false));
    let t0 = Instant::now();
    a.revoke_token(&sa, &[9; 16], now / 1000 + 60)
        .await
        .expect("revoke");
    until("b sees it", || {
        b.revoked_local(&sb, &[9; 16], "u", now) == Some(true)
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(1));
    a.revoke_user(&sa, "dave", now).await.expect("revoke user");
    until("b sees the user", || {
        b.revoked_local(&sb, &[8; 16], "dave", now) == Some(true)
    })
    .await;

    // A third store started later syncs what is already there.
    let c = store(server.port, "t1:");
    let sc = c.revocations("realm", Duration::from_secs(3600));
    until("c synced", || {
        c.revoked_local(&sc, &[9; 16], "u", now).is_some()
    })
    .await;
    assert_eq!(c.revoked_local(&sc, &[9; 16], "u", now), Some(true));
    assert_eq!(c.is_revoked(&sc, &[7; 16], "dave", now).await, Ok(true));

    // Another prefix shares nothing.
    let other = store(server.port, "t2:");
    until("other ready", || other.ready()).await;
    assert_eq!(
        other.nonce_once("shared", Duration::from_secs(5)).await,
        Ok(true)
    );

    // Redis gone: every operation fails (closed), the local copy is no longer trusted.
    drop(server);
    until("not ready", || !b.ready()).await;
    assert_eq!(b.revoked_local(&sb, &[9; 16], "u", now), None);
    assert!(b.is_revoked(&sb, &[1; 16], "u", now).await.is_err());
    assert!(b.nonce_once("fresh", Duration::from_secs(5)).await.is_err());
    let e = b.rate_limit("erin", rate).await;
    assert!(
        matches!(
            e,
            Err(StateError::Timeout | StateError::Backend(_) | StateError::NotConnected)
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_recovers_after_a_restart() {
    let port = free_port();
    let server = redis_server(port);
    let a = store(port, "r:");
    until("ready", || a.ready()).await;
    assert_eq!(a.nonce_once("x", Duration::from_secs(5)).await, Ok(true));
    drop(server);
    until("down", || !a.ready()).await;
    assert!(a.nonce_once("y", Duration::from_secs(5)).await.is_err());
    let _server = redis_server(port);
    until("ready again", || a.ready()).await;
    assert_eq!(a.nonce_once("y", Duration::from_secs(5)).await, Ok(true));
    let sa = a.revocations("realm", Duration::from_secs(60));
    until("mirror again", || {
        a.revoked_local(&sa, &[1; 16], "u", 0).is_some()
    })
    .await;
}
