//! A real `redis-server` on a loopback port for the shared-state tests (the Debian package;
//! `scripts/test.sh` installs it). Tests fail, not skip, when it is missing.

use std::process::{Child, Command, Stdio};

use super::wait_for;

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start(port: u16, cluster: bool) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
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
            _dir: dir,
        };
        wait_for(|| r.cli(&["ping"]) == "PONG", "redis-server PING");
        r
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
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
