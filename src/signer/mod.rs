//! The signer: a forward proxy (listeners with `role: signer`) that adds a short-lived signed JWS
//! to every outgoing request, as quay jwtproxy's `signer_proxy` does, so that the receiving side
//! (an authedge `signed` route or a jwtproxy verifier) can authenticate the caller.
//!
//! - [`config`]: the top-level `signer:` block;
//! - [`sign`]: the key (parsed once) and the token: header `{alg: RS256, kid, typ: JWT}`, claims
//!   `iss`, `aud` = the target's `scheme://host[:port]` as the request named it, `iat`, `nbf` =
//!   now − `max_skew`, `exp` = now + `expiration_time`, `jti` from a CSPRNG;
//! - [`proxy`]: its own `ProxyHttp` (not the reverse proxy's `Edge`): absolute-form
//!   `http://` requests are signed and forwarded; origin-form requests and requests to the
//!   signer itself are 400; targets outside `allowed_targets` (when set) are 403;
//! - [`connect`]: the signer listeners' `ServerApp`, which takes a connection opening with
//!   `CONNECT` before the `ProxyHttp` sees it: 403 without a CA, else a MITM tunnel whose
//!   requests are signed (`aud` = `https://host:port`) and forwarded over verified TLS;
//! - [`mitm`]: the CA, the leaf certificates minted per host (bounded cache), the TLS client
//!   toward the targets.

pub mod autokeys;
pub mod config;
pub mod connect;
pub mod mitm;
pub mod proxy;
pub mod sign;

pub use config::SignerConfig;
