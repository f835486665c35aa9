//! authedge: an authenticating reverse proxy on Pingora.
//!
//! The binary (`src/main.rs`) only parses the command line; everything else lives here so that
//! tests and benches use the same code the edge runs.

pub mod auth;
pub mod compat;
pub mod config;
pub mod conncap;
pub mod context;
pub mod echo;
pub mod headers;
pub mod identity;
pub mod lognoise;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod signer;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod upstream;
pub mod wire;

#[cfg(test)]
mod floors;
