//! `oidc`: browser login at an OpenID provider (authorization code flow, PKCE S256 always,
//! `state` and `nonce` bound to a sealed flow cookie), then a session in a sealed cookie, and
//! the user's identity (`X-Forwarded-User`, `-Email`, `-Groups`, `-Preferred-Username`) on the
//! requests passed upstream. What oauth2-proxy does, in the edge.
//!
//! - A provider (`oidc: NAME: {...}`) holds the client registration, the session's cookie and
//!   keys, and its endpoints under a prefix (`/oauth2/start`, `callback`, `sign_out`,
//!   `userinfo`, `auth`); routes name it with `type: oidc, provider: NAME` and share its session.
//! - A request with a valid session is allowed (or 403 when the user fails the policy); one
//!   without goes on to the next filter, and when none applies a page load is redirected to the
//!   login while API-style requests (not `GET` of `text/html`, `X-Requested-With`, `api: true`)
//!   get 401.
//! - The session cookie never reaches the upstream.

pub mod backchannel;
pub mod build;
pub mod client;
pub mod config;
pub mod endpoints;
pub mod env;
pub mod policy;
pub mod redirect;
pub mod refresh;
pub mod session;
pub mod store;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::auth::{AuthFilter, DenyReason, Outcome, Reply, RequestView};
use crate::identity::Identity;
use crate::tokens::seal::Sealer;

pub use build::{build_filter, build_providers};
pub use config::{OidcProviderConfig, OidcRouteConfig};

use client::ProviderClient;
use policy::Policy;
use redirect::Origin;
use session::{CookieJar, Session};

/// The upstream header names of a provider (`None`: not sent).
#[derive(Debug, Clone)]
pub struct HeaderSet {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub groups: Option<HeaderName>,
    pub preferred_username: Option<HeaderName>,
    pub access_token: Option<HeaderName>,
}

impl HeaderSet {
    fn names(&self) -> Vec<HeaderName> {
        [
            &self.user,
            &self.email,
            &self.groups,
            &self.preferred_username,
            &self.access_token,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// A provider, built once per config load and shared by its routes and endpoints.
#[derive(Debug)]
pub struct Provider {
    pub name: Box<str>,
    pub client: Arc<ProviderClient>,
    pub sealer: Sealer,
    pub jar: CookieJar,
    pub prefix: Box<str>,
    pub redirect_url: Option<Box<str>>,
    pub allowed_origins: Vec<Origin>,
    pub policy: Policy,
    pub headers: HeaderSet,
    pub issuer: Option<HeaderValue>,
    pub cookie_expire: Duration,
    pub flow_ttl: Duration,
    pub skip_provider_button: bool,
    pub allow_unverified_email: bool,
    pub sign_out_at_provider: bool,
    pub post_logout_redirect_url: Option<Box<str>>,
    pub groups_claim: Box<str>,
    pub user_claim: Box<str>,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub client_id: Box<str>,
    pub cookie_refresh: Option<Duration>,
    pub refresher: refresh::Refresher,
    pub backend: store::Backend,
}

impl Provider {
    /// The identity of a session, as the upstream headers.
    pub fn identity(&self, s: &Session) -> Identity {
        let mut headers = Vec::with_capacity(6);
        let h = &self.headers;
        let mut put = |name: &Option<HeaderName>, value: Option<&str>| {
            if let (Some(n), Some(v)) = (name, value) {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.push((n.clone(), v));
                }
            }
        };
        put(&h.user, Some(&s.user));
        put(&h.email, s.email.as_deref());
        if !s.groups.is_empty() {
            put(&h.groups, Some(&s.groups.join(",")));
        }
        put(&h.preferred_username, s.pu.as_deref());
        if self.pass_access_token {
            put(&h.access_token, s.at.as_deref());
        }
        if self.pass_authorization_header {
            if let Some(t) = &s.idt {
                put(
                    &Some(http::header::AUTHORIZATION),
                    Some(&format!("Bearer {t}")),
                );
            }
        }
        Identity {
            subject: HeaderValue::from_str(&s.user).ok(),
            issuer: self.issuer.clone(),
            mode: "oidc",
            scopes: None,
            headers,
        }
    }

    /// Refresh a session with its refresh token (the caller shares the result, see
    /// [`refresh::Refresher`]).
    async fn renew(&self, old: &Session, rt: &str, now: i64) -> refresh::Refreshed {
        use refresh::Refreshed;
        let l = match self.client.refresh(rt).await {
            Ok(Some(l)) => l,
            Ok(None) | Err(client::LoginError::BadIdToken(_)) => return Refreshed::Ended,
            Err(_) => return Refreshed::Unavailable,
        };
        let keep_idt = self.sign_out_at_provider || self.pass_authorization_header;
        let s = refresh::renewed(
            old,
            &l,
            now,
            &self.groups_claim,
            keep_idt,
            self.pass_access_token,
        );
        match self.persist(&s).await {
            Ok(text) => Refreshed::Renewed(Arc::new((s, text))),
            Err(_) => Refreshed::Unavailable,
        }
    }

    /// `{prefix}/start?rd=<target>` for a request that needs a login.
    fn start_location(&self, req: &RequestView<'_>) -> Option<HeaderValue> {
        let mut target = String::with_capacity(req.path.len() + 16);
        target.push_str(req.path);
        if let Some(q) = req.query.filter(|q| !q.is_empty()) {
            target.push('?');
            target.push_str(q);
        }
        let rd: String =
            percent_encoding::utf8_percent_encode(&target, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        HeaderValue::from_str(&format!("{}/start?rd={rd}", self.prefix)).ok()
    }
}

/// Whether a request is a browser page load (then a login redirect makes sense): `GET`/`HEAD`,
/// `Accept` naming `text/html`, and no `X-Requested-With`.
pub fn is_page_load(req: &RequestView<'_>) -> bool {
    let get = req.method == http::Method::GET || req.method == http::Method::HEAD;
    let html = req.headers.get(http::header::ACCEPT).is_some_and(|a| {
        a.as_bytes()
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    });
    get && html && !req.headers.contains_key("x-requested-with")
}

/// The `type: oidc` filter of one route.
#[derive(Debug)]
pub struct OidcSession {
    provider: Arc<Provider>,
    /// The route's own narrowing of the provider's policy.
    policy: Policy,
    api: bool,
    cookies: Vec<Box<str>>,
    identity_headers: Vec<HeaderName>,
}

impl OidcSession {
    /// Allow (with these response headers) when both policies pass, else 403.
    fn decide(
        &self,
        s: &Session,
        identity: impl FnOnce() -> Arc<Identity>,
        response_headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Outcome {
        let (email, groups) = (s.email.as_deref(), &s.groups);
        if !self.provider.policy.allows(email, groups) || !self.policy.allows(email, groups) {
            return Outcome::deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
        }
        let identity = identity();
        if response_headers.is_empty() {
            Outcome::Allow(identity)
        } else {
            Outcome::AllowWith {
                identity,
                response_headers,
            }
        }
    }

    async fn refreshed(&self, req: &RequestView<'_>, s: &Session, rt: &str, now: i64) -> Outcome {
        use refresh::Refreshed;
        let p = &self.provider;
        let cell = p.refresher.cell(rt, now);
        let r = cell.get_or_init(|| p.renew(s, rt, now)).await.clone();
        match r {
            Refreshed::Renewed(new) => {
                let Some(cookies) = p.jar.set_session(&new.1, req) else {
                    return Outcome::deny(StatusCode::INTERNAL_SERVER_ERROR, DenyReason::TooLarge);
                };
                let headers = cookies
                    .into_iter()
                    .map(|c| (http::header::SET_COOKIE, c))
                    .collect();
                self.decide(&new.0, || Arc::new(p.identity(&new.0)), headers)
            }
            Refreshed::Ended => {
                let mut d = crate::auth::Denial::new(StatusCode::UNAUTHORIZED, DenyReason::Revoked);
                for c in p.jar.clear_session(req) {
                    d = d.with_header(http::header::SET_COOKIE, c);
                }
                Outcome::Deny(d)
            }
            Refreshed::Unavailable => {
                Outcome::deny(StatusCode::SERVICE_UNAVAILABLE, DenyReason::KeysUnavailable)
            }
        }
    }
}

#[async_trait]
impl AuthFilter for OidcSession {
    fn kind(&self) -> &'static str {
        "oidc"
    }

    async fn check(&self, req: &RequestView<'_>) -> Outcome {
        let s = match self.provider.load(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::NotApplicable,
            Err(d) => return Outcome::Deny(d),
        };
        if let (Some(every), Some(rt)) = (self.provider.cookie_refresh, s.rt.as_deref()) {
            let now = crate::auth::unix_now();
            if now - s.iat >= crate::auth::secs(every) {
                return self.refreshed(req, &s, rt, now).await;
            }
        }
        let p = &self.provider;
        let identity = || s.identity.get_or_init(|| Arc::new(p.identity(&s))).clone();
        self.decide(&s, identity, Vec::new())
    }

    fn on_unauthenticated(&self, req: &RequestView<'_>) -> Option<Outcome> {
        if self.api || !is_page_load(req) {
            return None;
        }
        let location = self.provider.start_location(req)?;
        if self.provider.skip_provider_button {
            return Some(Outcome::Respond(Reply {
                status: StatusCode::FOUND,
                headers: vec![
                    (http::header::LOCATION, location),
                    (
                        http::header::CACHE_CONTROL,
                        HeaderValue::from_static("no-store"),
                    ),
                ],
                body: Bytes::new(),
            }));
        }
        Some(Outcome::Respond(endpoints::sign_in_page(&location)))
    }

    fn challenge(&self) -> Option<HeaderValue> {
        None
    }

    fn credential_cookies(&self) -> Vec<Box<str>> {
        self.cookies.clone()
    }

    fn identity_headers(&self) -> Vec<HeaderName> {
        self.identity_headers.clone()
    }

    fn ready(&self) -> bool {
        self.provider.client.ready()
    }
}
