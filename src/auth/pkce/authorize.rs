//! The two redirecting endpoints of a PKCE realm.
//!
//! `GET <prefix>/authorize`: `response_type=code`, a known `client_id`, a `redirect_uri` equal
//! to one of that client's, an S256 `code_challenge` (43–128 unreserved characters), an optional
//! client `state`; every parameter at most once. They are sealed into the upstream `state` and
//! the browser goes to the authorization server with the edge's client id and callback; other
//! parameters (`scope`, `nonce`, `prompt`, ...) pass through once. `request` and `request_uri`
//! (which could carry another redirect URI or client) are refused.
//!
//! `GET <callback>`: opens the state (expired, tampered or foreign: 400, and no redirect, since
//! the URI is unchecked), then redirects to the client's URI with a sealed downstream `code` and
//! the client's own `state`, or with the authorization server's `error` (RFC 6749 §4.1.2.1).

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;

use super::counters::Event;
use super::sealed::{FlowCode, FlowState, MAX_CLIENT_STATE, MAX_UPSTREAM_CODE};
use super::{
    invalid_request, method_not_allowed, param, pkce_string, redirect, unique_params, PkceRealm,
};
use crate::auth::{Answer, Endpoint, RequestView};

/// Parameters the edge sets itself at the authorization server: never passed through.
const OWN: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
];
/// Parameters refused outright (they could override what the edge checked).
const REFUSED: &[&str] = &["request", "request_uri"];

/// `GET <prefix>/authorize`.
#[derive(Debug)]
pub struct AuthorizeEndpoint {
    pub(crate) realm: Arc<PkceRealm>,
}

#[async_trait]
impl Endpoint for AuthorizeEndpoint {
    fn kind(&self) -> &'static str {
        "pkce"
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        if req.method != Method::GET {
            return method_not_allowed("GET");
        }
        if let Some(stop) = self.realm.over_limit(req).await {
            return stop;
        }
        let answer = authorize(&self.realm, req.query.unwrap_or(""));
        self.realm.counters.inc(match &answer {
            Answer::Respond(r) if r.status == http::StatusCode::FOUND => Event::AuthorizeRedirect,
            Answer::Respond(r) if r.status == http::StatusCode::SERVICE_UNAVAILABLE => {
                Event::Unavailable
            }
            _ => Event::AuthorizeRefused,
        });
        answer
    }
}

fn authorize(realm: &PkceRealm, query: &str) -> Answer {
    let Some(params) = unique_params(query) else {
        return invalid_request("a parameter is repeated or malformed");
    };
    if params.iter().any(|(k, _)| REFUSED.contains(&k.as_ref())) {
        return invalid_request("request objects are not supported");
    }
    let (Some(client_id), Some(redirect_uri)) =
        (param(&params, "client_id"), param(&params, "redirect_uri"))
    else {
        return invalid_request("client_id and redirect_uri are required");
    };
    if !realm.allowed(client_id, redirect_uri) {
        return invalid_request("unknown client_id or unregistered redirect_uri");
    }
    if param(&params, "response_type") != Some("code") {
        return invalid_request("response_type must be code");
    }
    if param(&params, "code_challenge_method") != Some("S256") {
        return invalid_request("code_challenge_method must be S256");
    }
    let Some(challenge) = param(&params, "code_challenge").filter(|c| pkce_string(c)) else {
        return invalid_request("code_challenge must be 43 to 128 unreserved characters");
    };
    let client_state = param(&params, "state").unwrap_or("");
    if client_state.len() > MAX_CLIENT_STATE {
        return invalid_request("state is too long");
    }
    let flow = FlowState {
        expires_at: super::sealed::now_s().saturating_add(realm.state_lifetime.as_secs()),
        challenge: challenge.to_string(),
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        client_state: client_state.to_string(),
    };
    let Some(sealed) = flow.seal(&realm.sealer) else {
        return super::unavailable();
    };
    let mut url = realm.authorization_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &realm.client_id)
            .append_pair("redirect_uri", &realm.callback_url)
            .append_pair("state", &sealed);
        for (k, v) in params.iter().filter(|(k, _)| !OWN.contains(&k.as_ref())) {
            q.append_pair(k, v);
        }
    }
    redirect(&url)
}

/// `GET <callback path>`.
#[derive(Debug)]
pub struct CallbackEndpoint {
    pub(crate) realm: Arc<PkceRealm>,
}

#[async_trait]
impl Endpoint for CallbackEndpoint {
    fn kind(&self) -> &'static str {
        "pkce"
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        if req.method != Method::GET {
            return method_not_allowed("GET");
        }
        if let Some(stop) = self.realm.over_limit(req).await {
            return stop;
        }
        let (answer, event) = callback(&self.realm, req.query.unwrap_or(""));
        self.realm.counters.inc(event);
        answer
    }
}

/// RFC 6749 §4.1.2.1: `error` and `error_description` are %x20-21 / %x23-5B / %x5D-7E.
fn error_text(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn callback(realm: &PkceRealm, query: &str) -> (Answer, Event) {
    let refused = |d: &'static str| (invalid_request(d), Event::CallbackRefused);
    let Some(params) = unique_params(query) else {
        return refused("a parameter is repeated or malformed");
    };
    let Some(state) = param(&params, "state") else {
        return refused("state is required");
    };
    let now = super::sealed::now_s();
    let Ok(flow) = FlowState::open(&realm.sealer, state, now) else {
        return refused("invalid or expired state");
    };
    // The client list may have changed by a reload since the state was sealed.
    if !realm.allowed(&flow.client_id, &flow.redirect_uri) {
        return refused("unknown client_id or unregistered redirect_uri");
    }
    let Ok(mut target) = url::Url::parse(&flow.redirect_uri) else {
        return refused("unregistered redirect_uri");
    };
    if let Some(error) = param(&params, "error") {
        let error = if error_text(error, 64) {
            error
        } else {
            "server_error"
        };
        let mut q = target.query_pairs_mut();
        q.append_pair("error", error);
        if let Some(d) = param(&params, "error_description").filter(|d| error_text(d, 512)) {
            q.append_pair("error_description", d);
        }
        if !flow.client_state.is_empty() {
            q.append_pair("state", &flow.client_state);
        }
        drop(q);
        return (redirect(&target), Event::CallbackError);
    }
    let Some(code) = param(&params, "code").filter(|c| !c.is_empty()) else {
        return refused("code is required");
    };
    if code.len() > MAX_UPSTREAM_CODE {
        return refused("code is too long");
    }
    let sealed = FlowCode {
        expires_at: now.saturating_add(realm.code_lifetime.as_secs()),
        upstream_code: code.to_string(),
        challenge: flow.challenge,
        client_id: flow.client_id,
        redirect_uri: flow.redirect_uri,
    }
    .seal(&realm.sealer);
    let Some(sealed) = sealed else {
        return (super::unavailable(), Event::Unavailable);
    };
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("code", &sealed);
        if !flow.client_state.is_empty() {
            q.append_pair("state", &flow.client_state);
        }
    }
    (redirect(&target), Event::CallbackCode)
}
