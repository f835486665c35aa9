//! `POST <prefix>/token` of a PKCE realm (form body, bounded, every parameter at most once).
//!
//! `grant_type=authorization_code`: `code`, `code_verifier` (43–128 unreserved characters),
//! `client_id` and `redirect_uri` equal to those sealed in the code, and
//! `BASE64URL(SHA256(verifier)) == challenge` compared in constant time. Only then is the code
//! recorded as redeemed (single-use, until it expires) and the upstream code redeemed at
//! `token_url` with the edge's credentials; the authorization server's status and JSON are
//! relayed with `Cache-Control: no-store`. `grant_type=refresh_token` (a known `client_id`) is
//! relayed the same way. Errors are RFC 6749 §5.2 JSON.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use http::{HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::counters::Event;
use super::sealed::{now_s, FlowCode};
use super::{
    invalid_request, method_not_allowed, oauth_error, param, pkce_string, unavailable,
    unique_params, PkceRealm, TokenAuth,
};
use crate::auth::{Answer, Endpoint, Reply, RequestView};
use crate::outbound::Call;

/// Largest token request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Largest authorization-server answer relayed.
const MAX_REPLY: usize = 256 * 1024;

/// `POST <prefix>/token`.
#[derive(Debug)]
pub struct TokenEndpoint {
    pub(crate) realm: Arc<PkceRealm>,
}

fn grant_error(status: StatusCode, code: &str, description: &'static str) -> Answer {
    Answer::Respond(oauth_error(status, code, Some(description)))
}

fn invalid_grant() -> Answer {
    grant_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "invalid, expired or already used code",
    )
}

/// A form body: no Content-Type, or `application/x-www-form-urlencoded`.
fn form_body<'a>(req: &RequestView<'a>) -> Option<&'a str> {
    if let Some(ct) = req.headers.get(http::header::CONTENT_TYPE) {
        let mime = ct.to_str().ok()?.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return None;
        }
    }
    std::str::from_utf8(req.body.unwrap_or_default()).ok()
}

#[async_trait]
impl Endpoint for TokenEndpoint {
    fn kind(&self) -> &'static str {
        "pkce"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        if req.method != Method::POST {
            return method_not_allowed("POST");
        }
        let realm = &self.realm;
        if let Some(stop) = realm.over_limit(req).await {
            return stop;
        }
        let Some(body) = form_body(req) else {
            realm.counters.inc(Event::TokenRefused);
            return invalid_request("the body must be application/x-www-form-urlencoded");
        };
        let Some(params) = unique_params(body) else {
            realm.counters.inc(Event::TokenRefused);
            return invalid_request("a parameter is repeated or malformed");
        };
        let (answer, event) = match param(&params, "grant_type") {
            Some("authorization_code") => redeem(realm, &params).await,
            Some("refresh_token") => refresh(realm, &params).await,
            Some(_) => refused(grant_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code or refresh_token",
            )),
            None => refused(invalid_request("grant_type is required")),
        };
        realm.counters.inc(event);
        answer
    }
}

/// A refusal by the edge itself.
fn refused(a: Answer) -> (Answer, Event) {
    (a, Event::TokenRefused)
}

type Params<'a> = [(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)];

/// A public client names itself with `client_id`; it must be one of the realm's.
fn known_client<'a>(realm: &PkceRealm, params: &'a Params<'_>) -> Result<&'a str, Answer> {
    match param(params, "client_id") {
        Some(c) if realm.clients.contains_key(c) => Ok(c),
        Some(_) => Err(grant_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        )),
        None => Err(invalid_request("client_id is required")),
    }
}

/// Whether `BASE64URL(SHA256(verifier))` equals `challenge`, in constant time.
pub(crate) fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let digest = Sha256::digest(verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn redeem(realm: &PkceRealm, params: &Params<'_>) -> (Answer, Event) {
    let client_id = match known_client(realm, params) {
        Ok(c) => c,
        Err(a) => return refused(a),
    };
    let (Some(code), Some(verifier), Some(redirect_uri)) = (
        param(params, "code"),
        param(params, "code_verifier"),
        param(params, "redirect_uri"),
    ) else {
        return refused(invalid_request(
            "code, code_verifier and redirect_uri are required",
        ));
    };
    if !pkce_string(verifier) {
        return refused(invalid_request(
            "code_verifier must be 43 to 128 unreserved characters",
        ));
    }
    let now = now_s();
    let Ok(flow) = FlowCode::open(&realm.sealer, code, now) else {
        return refused(invalid_grant());
    };
    if flow.client_id != client_id
        || flow.redirect_uri != redirect_uri
        || !verifier_matches(verifier, &flow.challenge)
    {
        return refused(invalid_grant());
    }
    if realm.single_use {
        match first_redemption(realm, &flow, now).await {
            Ok(true) => {}
            Ok(false) => return (invalid_grant(), Event::TokenReused),
            Err(e) => {
                tracing::debug!(error = %e, "pkce code record failed");
                return (unavailable(), Event::Unavailable);
            }
        }
    }
    let form = [
        ("grant_type", "authorization_code"),
        ("code", flow.upstream_code.as_str()),
        ("redirect_uri", realm.callback_url.as_str()),
    ];
    relay(realm, &form).await
}

/// Record the code as redeemed until it expires: `Ok(false)` when it already was.
async fn first_redemption(
    realm: &PkceRealm,
    flow: &FlowCode,
    now: u64,
) -> Result<bool, crate::state::StateError> {
    let digest = Sha256::digest(flow.upstream_code.as_bytes());
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]);
    let key = format!("pkce:{}:code:{id}", realm.name);
    let ttl = std::time::Duration::from_secs(flow.expires_at.saturating_sub(now).max(1) + 1);
    realm.state.nonce_once(&key, ttl).await
}

async fn refresh(realm: &PkceRealm, params: &Params<'_>) -> (Answer, Event) {
    if let Err(a) = known_client(realm, params) {
        return refused(a);
    }
    let Some(token) = param(params, "refresh_token").filter(|t| !t.is_empty()) else {
        return refused(invalid_request("refresh_token is required"));
    };
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = param(params, "scope") {
        form.push(("scope", scope));
    }
    relay(realm, &form).await
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before they go into Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Call `token_url` with the edge's credentials and relay status and body.
async fn relay(realm: &PkceRealm, form: &[(&str, &str)]) -> (Answer, Event) {
    let secret = realm.client_secret.as_str();
    let mut pairs: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if realm.token_auth == TokenAuth::Post {
        pairs.push(("client_id".into(), realm.client_id.clone()));
        pairs.push(("client_secret".into(), secret.to_string()));
    }
    let mut call = Call::post_form(realm.token_url.as_str(), pairs)
        .deadline(realm.token_timeout)
        .max_body(MAX_REPLY);
    if realm.token_auth == TokenAuth::Basic {
        call = call.basic_auth(form_encode(&realm.client_id), form_encode(secret));
    }
    let reply = match realm.outbound.send(call).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(realm = %realm.name, error = %e, "pkce token call failed");
            return (unavailable(), Event::Unavailable);
        }
    };
    let json = reply
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if !json {
        let bad = oauth_error(StatusCode::BAD_GATEWAY, "server_error", None);
        return (Answer::Respond(bad), Event::TokenUpstreamRefused);
    }
    let event = if reply.status.is_success() {
        Event::TokenIssued
    } else {
        Event::TokenUpstreamRefused
    };
    let mut r = Reply::json(reply.status, reply.body);
    r.headers
        .push((http::header::PRAGMA, HeaderValue::from_static("no-cache")));
    (Answer::Respond(r), event)
}
