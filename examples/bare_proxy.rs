//! The floor the edge is built on: a Pingora reverse proxy with nothing but `upstream_peer`, as
//! Pingora's own quick-start shows it (default modules, one worker thread, no work stealing).
//! `scripts/loadbench.sh` runs it beside HAProxy, nginx and authedge so the cost of authedge's
//! routing, filters and header handling can be told apart from the cost of Pingora itself.
//!
//! Usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR   (for example 127.0.0.1:8081 127.0.0.1:8080)

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

struct Bare {
    /// Built once; cloned per request (as authedge does).
    upstream: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
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
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream: HttpPeer::new(upstream, false, String::new()),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}
