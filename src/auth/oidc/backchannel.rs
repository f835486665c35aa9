//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed `logout_token` to
//! `{prefix}/backchannel-logout` when a user's session there ends; every edge session of that
//! `sid` (or, without one, that `sub`) ends with it. The token must be signed by the provider
//! (its JWKS, asymmetric algorithms only), name it as issuer and this client as audience, carry
//! `iat`, the back-channel logout event and no `nonce`, and is accepted once (`jti`).
//! Sessions in cookies cannot be reached from the server: this needs `store: shared`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::Provider;
use crate::auth::{state_failed, Answer, DenyReason, Reply, RequestView};
use crate::state::Store;

/// Largest request body read.
pub const MAX_BODY: usize = 16 * 1024;
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token names.
#[derive(Debug, PartialEq, Eq)]
pub struct Logout {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
}

/// The claims checks after the signature, issuer, audience and times were verified.
pub fn check_claims(c: &serde_json::Value) -> Result<Logout, &'static str> {
    let has_event = c
        .get("events")
        .and_then(|e| e.as_object())
        .is_some_and(|e| e.contains_key(EVENT));
    if !has_event {
        return Err("no back-channel logout event");
    }
    if c.get("nonce").is_some() {
        return Err("a logout token carries no nonce");
    }
    let text = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let l = Logout {
        sid: text("sid"),
        sub: text("sub"),
        jti: text("jti"),
    };
    if l.sid.is_none() && l.sub.is_none() {
        return Err("neither sid nor sub");
    }
    Ok(l)
}

fn bad(why: &'static str) -> Answer {
    tracing::debug!(why, "logout token refused");
    let mut r = Reply::json(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(br#"{"error":"invalid_request"}"#),
    );
    r.headers.push((
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    Answer::Respond(r)
}

/// Handle one back-channel logout request.
pub async fn logout(p: &Provider, state: &Store, req: &RequestView<'_>) -> Answer {
    let Some(body) = req.body else {
        return bad("no body");
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return bad("body is not UTF-8");
    };
    let token = crate::auth::query_pairs(body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return bad("no logout_token");
    };
    let claims = match p.client.verify_logout_token(&token).await {
        Ok(c) => c,
        Err(None) => {
            return Answer::deny(StatusCode::SERVICE_UNAVAILABLE, DenyReason::KeysUnavailable)
        }
        Err(Some(why)) => {
            tracing::debug!(why, "logout token refused");
            return bad("invalid logout token");
        }
    };
    let l = match check_claims(&claims) {
        Ok(l) => l,
        Err(why) => return bad(why),
    };
    if let Some(jti) = &l.jti {
        let key = format!("oidc:{}:logout:{jti}", p.name);
        match state.nonce_once(&key, Duration::from_secs(600)).await {
            Ok(true) => {}
            Ok(false) => return bad("replayed logout token"),
            Err(e) => return Answer::Deny(state_failed(e)),
        }
    }
    match p.end_sessions(l.sid.as_deref(), l.sub.as_deref()).await {
        Ok(n) => {
            tracing::debug!(provider = %p.name, ended = n, "back-channel logout");
            let mut r = Reply::json(StatusCode::OK, Bytes::new());
            r.headers.retain(|(n, _)| n != http::header::CONTENT_TYPE);
            Answer::Respond(r)
        }
        Err(d) => Answer::Deny(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logout_claims_need_the_event_and_a_subject_and_no_nonce() {
        let ev = json!({ EVENT: {} });
        assert_eq!(
            check_claims(&json!({"events": ev, "sid": "s1", "jti": "j"})),
            Ok(Logout {
                sid: Some("s1".into()),
                sub: None,
                jti: Some("j".into())
            })
        );
        assert!(check_claims(&json!({"events": ev, "sub": "alice"})).is_ok());
        assert!(check_claims(&json!({"events": {}, "sid": "s1"})).is_err());
        assert!(check_claims(&json!({"sid": "s1"})).is_err());
        assert!(check_claims(&json!({"events": ev})).is_err());
        assert!(check_claims(&json!({"events": ev, "sid": "s", "nonce": "n"})).is_err());
    }
}
