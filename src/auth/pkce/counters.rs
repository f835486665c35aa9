//! `authedge_pkce_total{realm, endpoint, result}`: what a PKCE realm's endpoints answered. Labels
//! are bounded (realm names from config, endpoints and results from fixed lists); every counter
//! of a realm is made once at load, so counting is one atomic add.

use crate::context::Context;

/// One result of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// authorize: redirected to the authorization server.
    AuthorizeRedirect,
    AuthorizeRefused,
    /// callback: redirected to the client with a code.
    CallbackCode,
    /// callback: the authorization server's error passed back to the client.
    CallbackError,
    CallbackRefused,
    /// token: the authorization server's answer relayed with a 2xx status.
    TokenIssued,
    /// token: the authorization server refused (relayed as it answered).
    TokenUpstreamRefused,
    /// token: refused by the edge (bad request, client, verifier, expired or tampered code).
    TokenRefused,
    /// token: a code redeemed before (single-use).
    TokenReused,
    /// any endpoint: the per-address limit.
    RateLimited,
    /// any endpoint: shared state or the authorization server did not answer.
    Unavailable,
}

const ALL: [(Event, &str, &str); 11] = [
    (Event::AuthorizeRedirect, "authorize", "redirect"),
    (Event::AuthorizeRefused, "authorize", "refused"),
    (Event::CallbackCode, "callback", "code"),
    (Event::CallbackError, "callback", "provider_error"),
    (Event::CallbackRefused, "callback", "refused"),
    (Event::TokenIssued, "token", "issued"),
    (Event::TokenUpstreamRefused, "token", "upstream_refused"),
    (Event::TokenRefused, "token", "refused"),
    (Event::TokenReused, "token", "reused"),
    (Event::RateLimited, "any", "rate_limited"),
    (Event::Unavailable, "any", "unavailable"),
];

/// A realm's counters, in the order of [`ALL`].
#[derive(Debug, Clone, Default)]
pub struct Counters(Vec<prometheus::IntCounter>);

impl Counters {
    /// The realm's counters, in the edge's registry (the family is registered once per process).
    pub fn new(warm: &Context, realm: &str) -> Counters {
        let family = warm.pinned("pkce:metrics:total", || {
            let opts = prometheus::Opts::new(
                "authedge_pkce_total",
                "PKCE endpoint answers by realm, endpoint and result",
            );
            let v = prometheus::IntCounterVec::new(opts, &["realm", "endpoint", "result"]).ok()?;
            warm.metrics.registry.register(Box::new(v.clone())).ok()?;
            Some(v)
        });
        let Some(v) = family.as_ref() else {
            return Counters::default();
        };
        Counters(
            ALL.iter()
                .map(|(_, endpoint, result)| v.with_label_values(&[realm, endpoint, result]))
                .collect(),
        )
    }

    pub fn inc(&self, e: Event) {
        if let Some(i) = ALL.iter().position(|(x, _, _)| *x == e) {
            if let Some(c) = self.0.get(i) {
                c.inc();
            }
        }
    }
}
