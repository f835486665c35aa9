//! Test harness: the built edge binary on loopback ports, a real HTTP echo upstream, polling
//! helpers. Nothing here sleeps for a fixed time except short polling intervals.
#![allow(dead_code)]

pub mod jwtproxy;
pub mod redis;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A port that is free now and that this process has not handed out before. Ports come from
/// 20000-32767, below Linux's ephemeral range, so they cannot collide with the local ports of
/// outgoing connections; a per-process sequence (starting at an offset from the pid) keeps two
/// tests of one binary from getting the same port, which matters because Pingora listens with
/// SO_REUSEPORT and two edges would silently share it.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20000;
    const SPAN: u32 = 12768;
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32767");
}

/// A blocking HTTP client that never uses a proxy from the environment.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Poll `f` every 20 ms for up to 20 s; panic naming `what` when it never holds.
pub fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A real HTTP/1.1 upstream that answers every request with JSON describing it:
/// `{"method","path","query","headers":{name: value},"body"}` (names lower-case; repeated
/// headers joined with ", ").
pub struct EchoUpstream {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl EchoUpstream {
    pub fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo upstream");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    std::thread::spawn(move || serve_echo(c));
                }
            }
        });
        EchoUpstream { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The echo upstream on a unix socket.
pub struct UnixEchoUpstream {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl UnixEchoUpstream {
    pub fn start() -> UnixEchoUpstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("echo.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind unix echo");
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let r = c.try_clone().expect("clone");
                    serve_echo_on(r, c)
                });
            }
        });
        UnixEchoUpstream { path, _dir: dir }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_echo(stream: TcpStream) {
    let reader = stream.try_clone().expect("clone");
    serve_echo_on(reader, stream);
}

/// Serve the echo protocol on any stream (TCP or unix socket).
pub fn serve_echo_on(reader: impl Read, mut out: impl Write) {
    let mut reader = BufReader::new(reader);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = serde_json::Map::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().to_string();
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                let joined = match headers.get(&k) {
                    Some(serde_json::Value::String(prev)) => format!("{prev}, {v}"),
                    _ => v,
                };
                headers.insert(k, serde_json::Value::String(joined));
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.clone(), None),
        };
        let json = serde_json::json!({
            "method": method, "path": path, "query": query, "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            json.len(),
            json
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The edge binary running with a config written to a temp dir.
pub struct Edge {
    pub port: u16,
    pub metrics_port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    child: Child,
}

/// Replace `{port}`, `{metrics_port}` and `{dir}` in a config template.
pub fn render(yaml: &str, port: u16, metrics_port: u16, dir: &Path) -> String {
    yaml.replace("{port}", &port.to_string())
        .replace("{metrics_port}", &metrics_port.to_string())
        .replace("{dir}", &dir.display().to_string())
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_authedge")
}

/// `authedge check --config path`: its exit code and what it printed.
pub fn check(path: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

impl Edge {
    pub fn start(yaml: &str) -> Edge {
        Self::start_with_env(yaml, &[])
    }

    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Edge {
        Self::start_in(yaml, env, |_| {})
    }

    /// Start with files that `files` writes into the config's directory first (certificates
    /// and keys named relative to the config).
    pub fn start_with_files(yaml: &str, files: impl FnOnce(&Path)) -> Edge {
        Self::start_in(yaml, &[], files)
    }

    fn start_in(yaml: &str, env: &[(&str, &str)], files: impl FnOnce(&Path)) -> Edge {
        let dir = tempfile::tempdir().expect("tempdir");
        files(dir.path());
        let config = dir.path().join("config.yaml");
        let port = free_port();
        let metrics_port = free_port();
        std::fs::write(&config, render(yaml, port, metrics_port, dir.path()))
            .expect("write config");
        let mut cmd = Command::new(bin());
        cmd.arg("run").arg("--config").arg(&config);
        cmd.env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(dir.path().join("stdout.log")).expect("log file");
        let child = cmd
            .stdout(log)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start authedge");
        let mut edge = Edge {
            port,
            metrics_port,
            dir,
            config,
            child,
        };
        edge.wait_up();
        edge
    }

    fn wait_up(&mut self) {
        let c = client();
        let url = format!("http://127.0.0.1:{}/healthz", self.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("authedge exited early with {status}");
            }
            let metrics_up = c
                .get(&url)
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            let proxy_up = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if metrics_up && proxy_up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("authedge did not come up");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Poll `/readyz` until it answers 200.
    pub fn wait_ready(&self) {
        let c = client();
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        wait_for(
            || {
                c.get(&url)
                    .send()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            },
            "/readyz",
        );
    }

    pub fn metrics(&self) -> String {
        client()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .and_then(|r| r.text())
            .expect("metrics")
    }

    /// The value of a metric line that starts with `series` (name plus labels), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Wait until a series reaches at least `want` (metrics are recorded after the response is
    /// written, so a test must not read them right after its request returns).
    pub fn wait_metric(&self, series: &str, want: f64) {
        wait_for(|| self.metric(series) >= want, series);
    }

    fn sighup(&self) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGHUP) };
        assert_eq!(rc, 0, "kill -HUP failed");
    }

    /// SIGHUP without changing the config; wait until `series` rises.
    pub fn sighup_and_wait(&self, series: &str) {
        let before = self.metric(series);
        self.sighup();
        wait_for(|| self.metric(series) > before, series);
    }

    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(
            &tmp,
            render(yaml, self.port, self.metrics_port, self.dir.path()),
        )
        .expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    /// Rewrite the config, SIGHUP, and wait until the generation gauge rises.
    pub fn reload(&self, yaml: &str) {
        let before = self.metric("authedge_config_generation");
        self.write_config(yaml);
        self.sighup();
        wait_for(
            || self.metric("authedge_config_generation") > before,
            "config generation to rise",
        );
    }

    /// Rewrite the config with a broken one, SIGHUP, and wait until the reload error counter rises.
    pub fn reload_expect_error(&self, yaml: &str) {
        let series = "authedge_config_reload_total{result=\"error\"}";
        let before = self.metric(series);
        self.write_config(yaml);
        self.sighup();
        wait_for(
            || self.metric(series) > before,
            "reload error counter to rise",
        );
    }

    /// What the edge wrote to stdout so far (its log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// GET through the edge and parse the echo JSON (panics unless 200).
pub fn echo_json(resp: reqwest::blocking::Response) -> serde_json::Value {
    assert_eq!(resp.status(), 200, "expected 200");
    resp.json().expect("echo json")
}
