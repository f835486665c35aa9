//! The floor the edge is built on: a Pingora reverse proxy with nothing but `upstream_peer`, as
//! Pingora's own quick-start shows it (default modules, one worker thread, no work stealing).
//! `scripts/loadbench.sh` runs it beside HAProxy, nginx and authedge so the cost of authedge's
//! routing, filters and header handling can be told apart from the cost of Pingora itself.
//!
//! Usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR [--timeouts]   (for example 127.0.0.1:8081 127.0.0.1:8080)
//!
//! With `--timeouts` it also sets the timeouts authedge sets by default: upstream connect 5 s,
//! read and write 60 s, pooled-connection idle 60 s, and a 60 s wait for the client's next
//! request on a kept-alive connection. Pingora registers a timer each time one of those waits
//! (about 700 instructions each, three per request); the plain bare proxy waits without limit.
//! The two rows tell Pingora's cost of timeouts apart from authedge's own work.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

struct Bare {
    /// Built once; cloned per request (as authedge does).
    upstream: HttpPeer,
    /// The downstream keep-alive wait, in seconds, when `--timeouts` is given.
    keepalive: Option<u64>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream.clone()))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, _ctx: &mut ()) {
        // As authedge does: Pingora sets an unlimited keep-alive when it writes the response.
        if let (Some(secs), Some(_)) = (self.keepalive, session.get_keepalive()) {
            session.set_keepalive(Some(secs));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream, timeouts) = match args.as_slice() {
        [_, l, u] => (l, u, false),
        [_, l, u, t] if t == "--timeouts" => (l, u, true),
        _ => {
            eprintln!("usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR [--timeouts]");
            std::process::exit(2);
        }
    };
    let Ok(upstream) = upstream.parse::<std::net::SocketAddr>() else {
        eprintln!("bare_proxy: {upstream:?} is not an IP:port address");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(upstream, false, String::new());
    if timeouts {
        let minute = std::time::Duration::from_secs(60);
        peer.options.connection_timeout = Some(std::time::Duration::from_secs(5));
        peer.options.read_timeout = Some(minute);
        peer.options.write_timeout = Some(minute);
        peer.options.idle_timeout = Some(minute);
    }
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: peer,
            keepalive: timeouts.then_some(60),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
