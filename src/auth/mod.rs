//! The filter contract: every auth mode is an [`AuthFilter`] that looks at a [`RequestView`]
//! and answers with an [`Outcome`]. Chains are built once when config loads; a request only walks
//! a slice of `Arc<dyn AuthFilter>`.
//!
//! Rules (see DESIGN.md): the first outcome that is not `NotApplicable` wins; when every filter
//! says `NotApplicable` the request is denied with 401 and the filters' challenges. A dependency
//! that is down gives a deny (usually 503), never an allow.

pub mod jwt;
pub mod opaque;
pub mod signed;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::identity::Identity;

/// What a filter sees of a request: small, borrowed, and free of Pingora types so that every
/// filter can be unit-tested without a server.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Canonical path (dot segments resolved, slashes merged); what routing matched.
    pub path: &'a str,
    /// Raw query string without the `?`, if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The client address: the peer, or the right-most untrusted `X-Forwarded-For` entry when the
    /// peer is a configured trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// The request body, read (bounded) only for endpoints that ask for it.
    pub body: Option<&'a [u8]>,
}

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
    /// The shared-state store (nonces, ...) failed: 503, never an allow.
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

/// A built-in endpoint served at an exact path before routing (e.g. the opaque mode's `/auth`).
#[async_trait]
pub trait Endpoint: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;
    /// Largest request body read for this endpoint; larger bodies get 413.
    fn max_body(&self) -> usize {
        0
    }
    async fn handle(&self, req: &RequestView<'_>) -> Outcome;
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
    let mut denial = Denial::new(StatusCode::UNAUTHORIZED, DenyReason::Missing);
    for f in chain {
        if let Some(c) = f.challenge() {
            denial.headers.push((http::header::WWW_AUTHENTICATE, c));
        }
    }
    (Outcome::Deny(denial), None)
}

/// Extract the token of an `Authorization: Bearer <token>` header.
///
/// `Ok(None)`: no Authorization header or another scheme (not my kind). `Err`: more than one
/// Authorization header, or a Bearer header that is empty or not visible ASCII.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, DenyReason> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DenyReason::MultipleCredentials);
    }
    let raw = first.as_bytes();
    if raw.len() < 7 || !raw[..7].eq_ignore_ascii_case(b"bearer ") {
        return Ok(None);
    }
    // One pass over the bytes: visible ASCII only (so the UTF-8 check below cannot fail and
    // takes its ASCII fast path).
    let token = raw[7..].trim_ascii();
    // A fold without early exit, so the compiler checks 16 or 32 bytes per step.
    let graphic = token
        .iter()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if token.is_empty() || !graphic {
        return Err(DenyReason::Malformed);
    }
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| DenyReason::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&hm(&[])), Ok(None));
        assert_eq!(bearer_token(&hm(&["Basic abc"])), Ok(None));
        assert_eq!(bearer_token(&hm(&["Bearer abc"])), Ok(Some("abc")));
        assert_eq!(bearer_token(&hm(&["bearer  abc "])), Ok(Some("abc")));
        assert_eq!(bearer_token(&hm(&["Bearer "])), Err(DenyReason::Malformed));
        assert_eq!(
            bearer_token(&hm(&["Bearer a", "Bearer b"])),
            Err(DenyReason::MultipleCredentials)
        );
        // Every visible ASCII byte passes; space inside, tab and non-ASCII do not (DEL is no header
        // value at all).
        let all: String = (0x21u8..=0x7e).map(char::from).collect();
        let v = format!("Bearer {all}");
        assert_eq!(bearer_token(&hm(&[v.as_str()])), Ok(Some(all.as_str())));
        for bad in [&b"Bearer a b"[..], b"Bearer a\tb", b"Bearer ab\xc3\xa9"] {
            let mut h = HeaderMap::new();
            h.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_bytes(bad).unwrap(),
            );
            assert_eq!(bearer_token(&h), Err(DenyReason::Malformed), "{bad:?}");
        }
    }

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
        RequestView {
            method: &Method::GET,
            path: "/",
            query: None,
            headers: h,
            peer: None,
            client_ip: None,
            body: None,
        }
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
