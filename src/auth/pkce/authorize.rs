//! The two redirecting endpoints of a PKCE realm.
//!
//! `GET <prefix>/authorize`: `response_type=code`, a known `client_id`, a `redirect_uri` equal
//! to one of that client's, an S256 `code_challenge` (43–128 unreserved characters), an optional
//! client `state`; every parameter at most once. They are sealed into the upstream `state` and
//! the browser goes to the authorization server with the edge's client id and callback; other
//! parameters (`scope`, `nonce`, `prompt`, ...) pass through once. `request` and `request_uri`
//! (which could carry another redirect URI or client) are refused. Until client and redirect URI
//! check out, errors are a 400 page; after that they go back to the client's URI as
//! `error=...&state=...` (RFC 6749 §4.1.2.1).
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

/// A redirect step answered on GET from the query alone: `<prefix>/authorize` (and
/// `/oauth/authorization`) or the callback path.
pub struct GetStep {
    pub(crate) realm: Arc<PkceRealm>,
    step: fn(&PkceRealm, &str) -> (Answer, Event),
}

impl GetStep {
    pub(crate) fn authorize(realm: Arc<PkceRealm>) -> GetStep {
        GetStep {
            realm,
            step: authorize,
        }
    }

    pub(crate) fn callback(realm: Arc<PkceRealm>) -> GetStep {
        GetStep {
            realm,
            step: callback,
        }
    }
}

impl std::fmt::Debug for GetStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStep")
            .field("realm", &self.realm)
            .finish()
    }
}

#[async_trait]
impl Endpoint for GetStep {
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
        let (answer, event) = (self.step)(&self.realm, req.query.unwrap_or(""));
        self.realm.counters.inc(event);
        answer
    }
}

fn authorize(realm: &PkceRealm, query: &str) -> (Answer, Event) {
    let refused = |d: &'static str| (invalid_request(d), Event::AuthorizeRefused);
    let Some(params) = unique_params(query) else {
        return refused("a parameter is repeated or malformed");
    };
    if params.iter().any(|(k, _)| REFUSED.contains(&k.as_ref())) {
        return refused("request objects are not supported");
    }
    let (Some(client_id), Some(redirect_uri)) =
        (param(&params, "client_id"), param(&params, "redirect_uri"))
    else {
        return refused("client_id and redirect_uri are required");
    };
    if !realm.allowed(client_id, redirect_uri) {
        return refused("unknown client_id or unregistered redirect_uri");
    }
    let client_state = param(&params, "state").unwrap_or("");
    if client_state.len() > MAX_CLIENT_STATE {
        return refused("state is too long");
    }
    // The redirect URI checked out: later errors go back to it (RFC 6749 §4.1.2.1).
    let back = |error: &str, description: &str| {
        let pairs = [
            ("error", error),
            ("error_description", description),
            ("state", client_state),
        ];
        (to_client(redirect_uri, &pairs), Event::AuthorizeRefused)
    };
    if param(&params, "response_type") != Some("code") {
        return back("unsupported_response_type", "response_type must be code");
    }
    if param(&params, "code_challenge_method") != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    let Some(challenge) = param(&params, "code_challenge").filter(|c| pkce_string(c)) else {
        return back(
            "invalid_request",
            "code_challenge must be 43 to 128 unreserved characters",
        );
    };
    let flow = FlowState {
        expires_at: super::sealed::now_s().saturating_add(realm.state_lifetime.as_secs()),
        challenge: challenge.to_string(),
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        client_state: client_state.to_string(),
    };
    let Some(sealed) = flow.seal(&realm.sealer) else {
        return (super::unavailable(), Event::Unavailable);
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
    (redirect(&url), Event::AuthorizeRedirect)
}

/// A 302 to the client's (checked) redirect URI with these parameters added; empty values are
/// left out.
fn to_client(redirect_uri: &str, pairs: &[(&str, &str)]) -> Answer {
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return invalid_request("unregistered redirect_uri");
    };
    {
        let mut q = target.query_pairs_mut();
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    redirect(&target)
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
    if let Some(error) = param(&params, "error") {
        let error = if error_text(error, 64) {
            error
        } else {
            "server_error"
        };
        let description = param(&params, "error_description")
            .filter(|d| error_text(d, 512))
            .unwrap_or("");
        let pairs = [
            ("error", error),
            ("error_description", description),
            ("state", flow.client_state.as_str()),
        ];
        return (to_client(&flow.redirect_uri, &pairs), Event::CallbackError);
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
        redirect_uri: flow.redirect_uri.clone(),
    }
    .seal(&realm.sealer);
    let Some(sealed) = sealed else {
        return (super::unavailable(), Event::Unavailable);
    };
    let pairs = [
        ("code", sealed.as_str()),
        ("state", flow.client_state.as_str()),
    ];
    (to_client(&flow.redirect_uri, &pairs), Event::CallbackCode)
}
