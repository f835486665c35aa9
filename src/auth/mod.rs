//! The filter contract: every auth mode is an [`AuthFilter`] that looks at a [`RequestView`]
//! and answers with an [`Outcome`]. Chains are built once when config loads; a request only walks
//! a slice of `Arc<dyn AuthFilter>`.
//!
//! Rules (see DESIGN.md): the first outcome that is not `NotApplicable` wins; when every filter
//! says `NotApplicable` the request is denied with 401 and the filters' challenges. A dependency
//! that is down gives a deny (usually 503), never an allow.

pub mod endpoint;
pub mod jwt;
pub mod limits;
pub mod oidc;
pub mod opaque;
pub mod pkce;
pub mod probe;
pub mod request;
pub mod signed;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::identity::Identity;

pub use endpoint::{Answer, Endpoint, Endpoints};
pub use request::{bearer_token, cookies, query_pairs, strip_cookies, RequestView};

/// Why a request was refused. The label goes to metrics and logs, never to the client body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No credential any filter of the route understands.
    Missing,
    Malformed,
    MultipleCredentials,
    TooLarge,
    UnsupportedAlgorithm,
    BadSignature,
    UnknownKey,
    KeysUnavailable,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    WrongSubject,
    WrongType,
    TooLongLived,
    ClaimMismatch,
    InsufficientScope,
    Forbidden,
    ClientNotAllowed,
    BadCredentials,
    Revoked,
    RateLimited,
    Replay,
    /// A state operation (nonce, revocation, limit, session store) failed: 503, never an allow.
    StateUnavailable,
    Internal,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        use DenyReason::*;
        match self {
            Missing => "missing",
            Malformed => "malformed",
            MultipleCredentials => "multiple_credentials",
            TooLarge => "too_large",
            UnsupportedAlgorithm => "unsupported_algorithm",
            BadSignature => "bad_signature",
            UnknownKey => "unknown_key",
            KeysUnavailable => "keys_unavailable",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            WrongIssuer => "wrong_issuer",
            WrongAudience => "wrong_audience",
            WrongSubject => "wrong_subject",
            WrongType => "wrong_type",
            TooLongLived => "too_long_lived",
            ClaimMismatch => "claim_mismatch",
            InsufficientScope => "insufficient_scope",
            Forbidden => "forbidden",
            ClientNotAllowed => "client_not_allowed",
            BadCredentials => "bad_credentials",
            Revoked => "revoked",
            RateLimited => "rate_limited",
            Replay => "replay",
            StateUnavailable => "state_unavailable",
            Internal => "internal",
        }
    }
}

/// A refusal: status, reason (for metrics and logs) and extra response headers such as
/// `WWW-Authenticate` or `Retry-After`.
#[derive(Debug, Clone)]
pub struct Denial {
    pub status: StatusCode,
    pub reason: DenyReason,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Denial {
    pub fn new(status: StatusCode, reason: DenyReason) -> Self {
        Denial {
            status,
            reason,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A failed state operation: 503 with reason `state_unavailable`.
    pub fn state_unavailable() -> Self {
        Denial::new(
            StatusCode::SERVICE_UNAVAILABLE,
            DenyReason::StateUnavailable,
        )
    }
}

/// Turn a failed state operation into its denial (503): `store.check(..).await.map_err(state)?`
/// in a helper returning `Result<_, Denial>`. The error is logged at debug, never sent.
pub fn state_failed<E: std::fmt::Display>(e: E) -> Denial {
    tracing::debug!(error = %e, "state operation failed");
    Denial::state_unavailable()
}

/// A complete response a filter or endpoint wants written instead of proxying.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Reply {
    /// A JSON reply with `Cache-Control: no-store` (token responses must never be cached).
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: vec![
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ),
            ],
            body: body.into(),
        }
    }
}

/// A filter's answer for one request.
#[derive(Debug)]
pub enum Outcome {
    /// No credential of my kind: try the next filter.
    NotApplicable,
    /// Shared: a filter may hand out an identity it built once (an opaque user's).
    Allow(Arc<Identity>),
    /// A credential was present but is not good enough: stop here.
    Deny(Denial),
    /// Answer the request directly (token endpoint, login redirect, ...).
    Respond(Reply),
    /// Allow, and add these headers to the response sent to the client (for example a
    /// refreshed session's `Set-Cookie`), set in `response_filter`.
    AllowWith {
        identity: Arc<Identity>,
        response_headers: Vec<(HeaderName, HeaderValue)>,
    },
}

impl Outcome {
    pub fn deny(status: StatusCode, reason: DenyReason) -> Self {
        Outcome::Deny(Denial::new(status, reason))
    }
}

/// One auth mode, compiled and ready. Built once per config load.
#[async_trait]
pub trait AuthFilter: Send + Sync + std::fmt::Debug {
    /// The mode's label for metrics and logs (`jwt`, `opaque`, ...).
    fn kind(&self) -> &'static str;

    async fn check(&self, req: &RequestView<'_>) -> Outcome;

    /// The `WWW-Authenticate` challenge to send when no filter of the chain found a credential.
    fn challenge(&self) -> Option<HeaderValue> {
        None
    }

    /// Request headers this filter consumes as its credential and that must not reach the
    /// upstream (unless the route keeps them), e.g. `authorization`.
    fn credential_headers(&self) -> &[HeaderName] {
        &[]
    }

    /// Single cookies this filter consumes as its credential: removed from the `Cookie` header
    /// before the upstream (unless the route keeps them), the other cookies pass. Asked once at
    /// load.
    fn credential_cookies(&self) -> Vec<Box<str>> {
        Vec::new()
    }

    /// When no filter of the chain applies, the answer this filter offers instead of the plain
    /// 401 (an `oidc` filter redirects a browser). The first filter that offers one wins.
    fn on_unauthenticated(&self, _req: &RequestView<'_>) -> Option<Outcome> {
        None
    }

    /// Above zero: the proxy reads the request body up to this many bytes (larger gets 413)
    /// before `check`, which finds it in `RequestView::body`; it still reaches the upstream.
    /// At most [`MAX_FILTER_BODY`].
    fn max_body(&self) -> usize {
        0
    }

    /// Identity headers this filter sets on the upstream request. The edge owns them: client
    /// copies are stripped on every route.
    fn identity_headers(&self) -> Vec<HeaderName> {
        Vec::new()
    }

    /// False while the filter cannot decide yet (e.g. JWKS not fetched): `/readyz` reports it.
    fn ready(&self) -> bool {
        true
    }
}

/// The largest body a filter may ask for: what Pingora buffers to send on to the upstream.
pub const MAX_FILTER_BODY: usize = 64 * 1024;

/// What a mode's `build` hands back for one filter of a chain: the filter, and the endpoints it
/// registers (matched by host and path before routing).
pub struct Built {
    pub filter: Arc<dyn AuthFilter>,
    pub endpoints: Vec<(endpoint::EndpointAt, Arc<dyn Endpoint>)>,
}

impl Built {
    /// A filter without endpoints.
    pub fn filter(filter: Arc<dyn AuthFilter>) -> Self {
        Built {
            filter,
            endpoints: Vec::new(),
        }
    }
}

/// A compiled chain of filters for one route.
pub type Chain = Vec<Arc<dyn AuthFilter>>;

/// Walk a chain: the first outcome that is not `NotApplicable` wins, with the index of the filter
/// that gave it. When none applies: 401 with every filter's challenge.
pub async fn run_chain(
    chain: &[Arc<dyn AuthFilter>],
    req: &RequestView<'_>,
) -> (Outcome, Option<usize>) {
    for (i, f) in chain.iter().enumerate() {
        match f.check(req).await {
            Outcome::NotApplicable => continue,
            other => return (other, Some(i)),
        }
    }
    for f in chain {
        if let Some(o) = f.on_unauthenticated(req) {
            return (o, None);
        }
    }
    let mut denial = Denial::new(StatusCode::UNAUTHORIZED, DenyReason::Missing);
    for f in chain {
        if let Some(c) = f.challenge() {
            denial.headers.push((http::header::WWW_AUTHENTICATE, c));
        }
    }
    (Outcome::Deny(denial), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    #[derive(Debug)]
    struct Fixed(fn() -> Outcome);
    #[async_trait]
    impl AuthFilter for Fixed {
        fn kind(&self) -> &'static str {
            "fixed"
        }
        async fn check(&self, _req: &RequestView<'_>) -> Outcome {
            (self.0)()
        }
        fn challenge(&self) -> Option<HeaderValue> {
            Some(HeaderValue::from_static("Bearer"))
        }
    }

    fn view(h: &HeaderMap) -> RequestView<'_> {
        RequestView::new(&Method::GET, "/", h)
    }

    #[tokio::test]
    async fn chain_first_applicable_wins_and_default_is_401() {
        let h = HeaderMap::new();
        let na: Arc<dyn AuthFilter> = Arc::new(Fixed(|| Outcome::NotApplicable));
        let deny: Arc<dyn AuthFilter> = Arc::new(Fixed(|| {
            Outcome::deny(StatusCode::FORBIDDEN, DenyReason::Forbidden)
        }));
        let (o, i) = run_chain(&[na.clone(), deny.clone(), na.clone()], &view(&h)).await;
        assert!(matches!(o, Outcome::Deny(ref d) if d.status == StatusCode::FORBIDDEN));
        assert_eq!(i, Some(1));
        let (o, i) = run_chain(&[na.clone(), na], &view(&h)).await;
        match o {
            Outcome::Deny(d) => {
                assert_eq!(d.status, StatusCode::UNAUTHORIZED);
                assert_eq!(d.reason, DenyReason::Missing);
                assert_eq!(d.headers.len(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(i, None);
    }
}

/// A duration in whole seconds as the signed integer JWT times use (saturating).
pub(crate) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(secs)
        .unwrap_or(0)
}
