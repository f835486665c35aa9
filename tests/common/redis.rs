//! A real `redis-server` on a loopback port for the shared-state tests (the Debian package;
//! `scripts/test.sh` installs it). Tests fail, not skip, when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::wait_for;

pub struct Redis {
    child: Child,
    pub port: u16,
    /// TLS only: the CA that signed the server's certificate (PEM).
    pub ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (openssl CLI), in `dir`.
/// Returns (ca.pem, server.pem, server.key).
pub fn tls_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let f = |n: &str| dir.join(format!("{name}-{n}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca, key, csr, cert, ext) = (
        f("ca.key"),
        f("ca.pem"),
        f("server.key"),
        f("server.csr"),
        f("server.pem"),
        f("ext.cnf"),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let p = |x: &PathBuf| x.display().to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=authedge test CA",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    (ca, cert, key)
}

impl Redis {
    pub fn start(port: u16, cluster: bool) -> Redis {
        Self::spawn(port, cluster, false)
    }

    /// A server that speaks only TLS on `port`, with a certificate from a fresh test CA.
    pub fn start_tls(port: u16) -> Redis {
        Self::spawn(port, false, true)
    }

    fn spawn(port: u16, cluster: bool, tls: bool) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("redis-server");
        let mut ca = None;
        if tls {
            let (ca_pem, cert, key) = tls_files(dir.path(), "redis");
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca_pem)
                .args(["--tls-auth-clients", "no"]);
            ca = Some(ca_pem);
        } else {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        if cluster {
            // The cluster bus port defaults to port + 10000, which may be taken (or in the
            // ephemeral range); a node that cannot bind it exits. Give it a free port of its own.
            let bus = super::free_port();
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
            ])
            .arg("--cluster-config-file")
            .arg(dir.path().join("nodes.conf"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let r = Redis {
            child,
            port,
            ca,
            _dir: dir,
        };
        wait_for(|| r.cli(&["ping"]) == "PONG", "redis-server PING");
        r
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(ca) = &self.ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = cmd
            .args(args)
            .output()
            .expect("redis-cli must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
