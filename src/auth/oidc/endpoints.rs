//! A provider's endpoints under its prefix (default `/oauth2`):
//!
//! - `start?rd=` -> a new flow cookie and 302 to the provider (PKCE S256, state, nonce);
//! - `callback?code&state` -> state checked against the flow cookie (constant time, single
//!   use), code exchanged with the verifier, ID token validated, `email_verified` and the
//!   provider's policy checked, then a new session cookie and 302 to the flow's `rd`;
//! - `sign_out?rd=` -> session cookies cleared, then the provider's end-session endpoint (with
//!   `id_token_hint`) when it has one and `sign_out_at_provider` is on, else `rd`;
//! - `userinfo` -> JSON `{user, email, groups, preferred_username}` or 401;
//! - `auth` -> 200 with `X-Auth-Request-User/-Email/-Groups/-Preferred-Username`, 401 without a
//!   session, 403 when the policy refuses (nginx `auth_request`, Traefik forward-auth);
//! - `backchannel-logout` (POST `logout_token`) -> every session of that `sid` / `sub` ends
//!   (OpenID Back-Channel Logout 1.0; needs `store: shared`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use subtle::ConstantTimeEq;

use super::client::{random_token, redirect_for, LoggedIn, LoginError};
use super::redirect::safe_redirect;
use super::session::{self, Flow, Session};

use super::Provider;
use crate::auth::{state_failed, Answer, Denial, DenyReason, Endpoint, Reply, RequestView};
use crate::state::Store;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Start,
    Callback,
    SignOut,
    UserInfo,
    Auth,
    BackchannelLogout,
}

impl Which {
    pub const ALL: [(Which, &'static str); 6] = [
        (Which::Start, "/start"),
        (Which::Callback, "/callback"),
        (Which::SignOut, "/sign_out"),
        (Which::UserInfo, "/userinfo"),
        (Which::Auth, "/auth"),
        (Which::BackchannelLogout, "/backchannel-logout"),
    ];
}

/// One endpoint of a provider.
#[derive(Debug)]
pub struct OidcEndpoint {
    pub provider: Arc<Provider>,
    pub state: Store,
    pub which: Which,
}

fn deny(status: StatusCode, reason: DenyReason) -> Answer {
    Answer::deny(status, reason)
}

fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Answer {
    let Ok(loc) = HeaderValue::from_str(location) else {
        return deny(StatusCode::BAD_REQUEST, DenyReason::Malformed);
    };
    let mut headers = vec![
        (http::header::LOCATION, loc),
        (
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ),
    ];
    headers.extend(cookies.into_iter().map(|c| (http::header::SET_COOKIE, c)));
    Answer::Respond(Reply {
        status: StatusCode::FOUND,
        headers,
        body: Bytes::new(),
    })
}

/// The sign-in page shown instead of an immediate redirect (`skip_provider_button: false`).
pub fn sign_in_page(start: &HeaderValue) -> Reply {
    // `start` is ours: a prefix and a percent-encoded target, nothing to escape but `&`.
    let href = String::from_utf8_lossy(start.as_bytes()).replace('&', "&amp;");
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head>\
         <body><p><a id=\"sign-in\" href=\"{href}\">Sign in</a></p></body></html>\n"
    );
    Reply {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        ],
        body: Bytes::from(body),
    }
}

#[async_trait]
impl Endpoint for OidcEndpoint {
    fn kind(&self) -> &'static str {
        "oidc"
    }

    fn max_body(&self) -> usize {
        match self.which {
            Which::BackchannelLogout => super::backchannel::MAX_BODY,
            _ => 0,
        }
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        let get = req.method == Method::GET || req.method == Method::HEAD;
        match self.which {
            Which::Start if get => self.start(req).await,
            Which::Callback if get => self.callback(req).await,
            Which::SignOut if get || req.method == Method::POST => self.sign_out(req).await,
            Which::UserInfo if get => self.userinfo(req).await,
            Which::Auth => self.auth(req).await,
            Which::BackchannelLogout if req.method == Method::POST => {
                super::backchannel::logout(&self.provider, &self.state, req).await
            }
            _ => Answer::Deny(
                Denial::new(StatusCode::METHOD_NOT_ALLOWED, DenyReason::Malformed)
                    .with_header(http::header::ALLOW, HeaderValue::from_static("GET")),
            ),
        }
    }
}

impl OidcEndpoint {
    async fn start(&self, req: &RequestView<'_>) -> Answer {
        let p = &self.provider;
        let rd = req.query_param("rd");
        let rd = safe_redirect(rd.as_deref(), &p.allowed_origins).into_owned();
        let Some(host) = req.host else {
            return deny(StatusCode::BAD_REQUEST, DenyReason::Malformed);
        };
        let ru = redirect_for(p.redirect_url.as_deref(), req.scheme(), host, &p.prefix);
        let (st, n) = (random_token(), random_token());
        let Some((url, verifier)) = p.client.authorize_url(&ru, &st, &n).await else {
            return deny(StatusCode::SERVICE_UNAVAILABLE, DenyReason::KeysUnavailable);
        };
        let ttl = p.flow_ttl.as_secs();
        let flow = Flow {
            st,
            n,
            v: verifier,
            rd,
            ru: ru.into_owned(),
            exp: crate::auth::unix_now() + ttl as i64,
        };
        let Some(cookie) =
            session::seal_flow(&p.sealer, &flow).and_then(|s| p.jar.set_flow(&s, ttl))
        else {
            return deny(StatusCode::INTERNAL_SERVER_ERROR, DenyReason::Internal);
        };
        redirect(&url, vec![cookie])
    }

    async fn callback(&self, req: &RequestView<'_>) -> Answer {
        let p = &self.provider;
        let now = crate::auth::unix_now();
        let flow = req
            .cookie(&p.jar.flow)
            .and_then(|t| session::open_flow(&p.sealer, t, now));
        let Some(flow) = flow else {
            // No flow cookie, expired, or not ours: not a login this browser started.
            return deny(StatusCode::BAD_REQUEST, DenyReason::Malformed);
        };
        if req.query_param("error").is_some() {
            return deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
        }
        let (Some(code), Some(state)) = (req.query_param("code"), req.query_param("state")) else {
            return deny(StatusCode::BAD_REQUEST, DenyReason::Malformed);
        };
        if !bool::from(state.as_bytes().ct_eq(flow.st.as_bytes())) {
            return deny(StatusCode::BAD_REQUEST, DenyReason::ClaimMismatch);
        }
        // One use per flow, also on another instance (a replayed callback with its cookie).
        let key = format!("oidc:{}:{}", p.name, flow.st);
        match self.state.nonce_once(&key, p.flow_ttl).await {
            Ok(true) => {}
            Ok(false) => return deny(StatusCode::BAD_REQUEST, DenyReason::Replay),
            Err(e) => return Answer::Deny(state_failed(e)),
        }
        let logged = match p.client.redeem(&code, &flow.v, &flow.ru, &flow.n).await {
            Ok(l) => l,
            Err(LoginError::Unavailable) => {
                return deny(StatusCode::SERVICE_UNAVAILABLE, DenyReason::KeysUnavailable)
            }
            Err(LoginError::CodeRefused) => {
                return deny(StatusCode::UNAUTHORIZED, DenyReason::BadCredentials)
            }
            Err(LoginError::BadIdToken(why)) => {
                tracing::debug!(provider = %p.name, why, "id token refused");
                return deny(StatusCode::UNAUTHORIZED, DenyReason::BadSignature);
            }
        };
        let Some(s) = self.new_session(&logged, now) else {
            return deny(StatusCode::UNAUTHORIZED, DenyReason::ClaimMismatch);
        };
        let verified = logged.claims.get("email_verified");
        if s.email.is_some()
            && verified == Some(&serde_json::Value::Bool(false))
            && !p.allow_unverified_email
        {
            return deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
        }
        if !p.policy.allows(s.email.as_deref(), &s.groups) {
            return deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
        }
        let mut cookies = match p.session_cookies(s, req).await {
            Ok(c) => c,
            Err(d) => return Answer::Deny(d),
        };
        cookies.extend(p.jar.clear_flow());
        redirect(&flow.rd, cookies)
    }

    /// A fresh session from the login (never one the browser brought: no fixation).
    fn new_session(&self, l: &LoggedIn, now: i64) -> Option<Session> {
        let p = &self.provider;
        let c = &l.claims;
        let text = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let groups = match c.get(&*p.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        let keep_idt = p.sign_out_at_provider || p.pass_authorization_header;
        Some(Session {
            user: text(&p.user_claim)?,
            email: text("email"),
            pu: text("preferred_username"),
            groups,
            sub: text("sub")?,
            sid: text("sid"),
            iat: now,
            exp: now + p.cookie_expire.as_secs() as i64,
            idt: keep_idt.then(|| l.id_token.clone()),
            at: p.pass_access_token.then(|| l.access_token.clone()),
            rt: p.cookie_refresh.and(l.refresh_token.clone()),
            id: None,
        })
    }

    async fn sign_out(&self, req: &RequestView<'_>) -> Answer {
        let p = &self.provider;
        let rd = req.query_param("rd");
        let rd = safe_redirect(rd.as_deref(), &p.allowed_origins).into_owned();
        let session = match p.load(req).await {
            Ok(s) => s,
            Err(d) => return Answer::Deny(d),
        };
        if let Err(d) = p.forget(session.as_deref().map(|o| &o.session)).await {
            return Answer::Deny(d);
        }
        let mut cookies = p.jar.clear_session(req);
        cookies.extend(p.jar.clear_flow());
        let end = p.client.end_session().filter(|_| p.sign_out_at_provider);
        let Some(end) = end else {
            return redirect(&rd, cookies);
        };
        let Ok(mut url) = url::Url::parse(&end) else {
            return redirect(&rd, cookies);
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &p.client_id);
            if let Some(t) = session.as_ref().and_then(|s| s.idt.as_deref()) {
                q.append_pair("id_token_hint", t);
            }
            if let Some(u) = &p.post_logout_redirect_url {
                q.append_pair("post_logout_redirect_uri", u);
            }
        }
        redirect(url.as_str(), cookies)
    }

    async fn userinfo(&self, req: &RequestView<'_>) -> Answer {
        let s = match self.provider.load(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return deny(StatusCode::UNAUTHORIZED, DenyReason::Missing),
            Err(d) => return Answer::Deny(d),
        };
        let body = serde_json::json!({
            "user": s.user,
            "email": s.email,
            "groups": s.groups,
            "preferred_username": s.pu,
        });
        Answer::Respond(Reply::json(StatusCode::OK, body.to_string()))
    }

    async fn auth(&self, req: &RequestView<'_>) -> Answer {
        let p = &self.provider;
        let s = match p.load(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return deny(StatusCode::UNAUTHORIZED, DenyReason::Missing),
            Err(d) => return Answer::Deny(d),
        };
        if !p.policy.allows(s.email.as_deref(), &s.groups) {
            return deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
        }
        let mut headers = Vec::with_capacity(5);
        let groups = s.groups.join(",");
        let pairs = [
            ("x-auth-request-user", Some(s.user.as_str())),
            ("x-auth-request-email", s.email.as_deref()),
            (
                "x-auth-request-groups",
                Some(groups.as_str()).filter(|g| !g.is_empty()),
            ),
            ("x-auth-request-preferred-username", s.pu.as_deref()),
            (
                "x-auth-request-access-token",
                s.at.as_deref().filter(|_| p.pass_access_token),
            ),
        ];
        for (n, v) in pairs {
            if let Some(v) = v.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.push((HeaderName::from_static(n), v));
            }
        }
        headers.push((
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
        Answer::Respond(Reply {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        })
    }
}
