//! Auth mode `pkce` (replaces the stateless PKCE proxies, goeven/oauth-pkce-proxy and kin): the
//! edge adds RFC 7636 PKCE in front of an authorization server that lacks it, and keeps the
//! client secret away from the device. Each named realm of the `pkce:` block serves three
//! endpoints before routing:
//!
//! - [`authorize`]: `GET <prefix>/authorize` (also `<prefix>/authorization`) checks the client,
//!   its exact redirect URI and an S256 challenge, seals them into the upstream `state` and
//!   redirects to the authorization server as the edge's client; `GET <callback path>` opens the
//!   state, seals the upstream code into the downstream `code` and redirects to the client;
//! - [`token`]: `POST <prefix>/token` checks the verifier against the sealed challenge, redeems
//!   the upstream code with the edge's credentials and relays the answer; refresh is relayed.
//!
//! No state between the steps ([`sealed`]); a redeemed code is recorded in the shared state until
//! it expires so it is redeemed once (`single_use_codes`, memory or Redis). Rate limits per
//! client address on all three endpoints; [`counters`] count the answers. [`dropin`] reads the
//! peer's environment variables.

mod authorize;
mod build;
pub mod config;
pub mod counters;
pub mod dropin;
pub mod sealed;
mod token;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::auth::limits::{client_key, SharedLimit, Stop};
use crate::auth::{Answer, Reply, RequestView};
use crate::outbound::Outbound;
use crate::state::Store;
use crate::tokens::seal::Sealer;

pub use build::build_realms;
pub use config::{PkceClientConfig, PkceKeyConfig, PkceRealmConfig, TokenAuth};

/// A built realm, shared by its three endpoints.
#[derive(Debug)]
pub struct PkceRealm {
    pub name: String,
    pub(crate) sealer: Sealer,
    pub(crate) authorization_url: url::Url,
    pub(crate) token_url: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: zeroize::Zeroizing<String>,
    pub(crate) token_auth: TokenAuth,
    pub(crate) callback_url: String,
    /// client id -> its exact redirect URIs.
    pub(crate) clients: HashMap<String, Vec<String>>,
    pub(crate) state_lifetime: Duration,
    pub(crate) code_lifetime: Duration,
    pub(crate) single_use: bool,
    pub(crate) token_timeout: Duration,
    pub(crate) state: Store,
    pub(crate) limit: SharedLimit,
    pub(crate) outbound: Outbound,
    pub(crate) counters: counters::Counters,
}

impl PkceRealm {
    /// Whether `redirect_uri` is exactly one of `client_id`'s.
    pub(crate) fn allowed(&self, client_id: &str, redirect_uri: &str) -> bool {
        self.clients
            .get(client_id)
            .is_some_and(|uris| uris.iter().any(|u| u == redirect_uri))
    }

    /// One request of this client address against the realm's budget; `Some` when it stops.
    pub(crate) async fn over_limit(&self, req: &RequestView<'_>) -> Option<Answer> {
        let key = client_key(req.client_ip).to_string();
        let stop = self.limit.check(&key).await.err()?;
        match stop {
            Stop::Limited(_) => self.counters.inc(counters::Event::RateLimited),
            Stop::Unavailable => self.counters.inc(counters::Event::Unavailable),
        }
        match stop {
            Stop::Limited(wait) => {
                let mut r = oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
                r.headers
                    .push((http::header::RETRY_AFTER, HeaderValue::from(wait)));
                Some(Answer::Respond(r))
            }
            Stop::Unavailable => Some(unavailable()),
        }
    }
}

/// Most parameters looked at in one query or form (more is a 400).
const MAX_PARAMS: usize = 64;

/// Decoded parameters of a query or form body, every name at most once: `None` when a name is
/// repeated, there are too many, or a piece does not decode to UTF-8.
pub(crate) fn unique_params(raw: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    let mut out: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    for (k, v) in crate::auth::query_pairs(raw) {
        if out.len() >= MAX_PARAMS
            || out.iter().any(|(n, _)| *n == k)
            || k.contains('\u{FFFD}')
            || v.contains('\u{FFFD}')
        {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// The value of `name` in unique parameters.
pub(crate) fn param<'a>(params: &'a [(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]` (verifiers and challenges alike).
pub(crate) fn pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An RFC 6749 §5.2 error body (`error`, optional fixed `error_description`), never echoing
/// input, with `Cache-Control: no-store`.
pub(crate) fn oauth_error(status: StatusCode, code: &str, description: Option<&str>) -> Reply {
    let body = match description {
        Some(d) => serde_json::json!({ "error": code, "error_description": d }),
        None => serde_json::json!({ "error": code }),
    };
    let mut r = Reply::json(status, Bytes::from(body.to_string()));
    r.headers
        .push((http::header::PRAGMA, HeaderValue::from_static("no-cache")));
    r
}

/// A 400 `invalid_request` with a fixed description.
pub(crate) fn invalid_request(description: &'static str) -> Answer {
    Answer::Respond(oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some(description),
    ))
}

/// The shared state or the authorization server could not answer: 503.
pub(crate) fn unavailable() -> Answer {
    Answer::Respond(oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        None,
    ))
}

/// 405 with `Allow`.
pub(crate) fn method_not_allowed(allow: &'static str) -> Answer {
    let mut r = oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", None);
    r.headers
        .push((http::header::ALLOW, HeaderValue::from_static(allow)));
    Answer::Respond(r)
}

/// A 302 to `location` (already a valid absolute URL), not cacheable.
pub(crate) fn redirect(location: &url::Url) -> Answer {
    let Ok(v) = HeaderValue::from_str(location.as_str()) else {
        return invalid_request("redirect target is not a valid header value");
    };
    Answer::Respond(Reply {
        status: StatusCode::FOUND,
        headers: vec![
            (http::header::LOCATION, v),
            (
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        ],
        body: Bytes::new(),
    })
}

#[cfg(test)]
mod tests;
