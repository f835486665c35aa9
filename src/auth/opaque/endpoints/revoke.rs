//! The revoke endpoint (`POST revoke_path`, default `/auth/revoke`): the holder of a token,
//! as bearer or in the body, revokes it until it expires.

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;

use super::body::token_from;
use super::{error, json_reply, post_within_client_limit, unavailable, MAX_BODY};
use crate::auth::opaque::{now_ms, Realm};
use crate::auth::{Answer, Endpoint, RequestView};

/// `POST revoke_path`: the holder revokes a token. Like RFC 7009, a token that does not open
/// (expired, foreign) is answered 200 with `"revoked": false`.
#[derive(Debug)]
pub struct RevokeEndpoint {
    realm: Arc<Realm>,
}

impl RevokeEndpoint {
    pub fn new(realm: Arc<Realm>) -> Self {
        RevokeEndpoint { realm }
    }
}

/// Revoke `token` until it expires; `None` when it does not open (expired, foreign).
pub(super) async fn revoke_token(realm: &Realm, token: &str) -> Option<Answer> {
    let now = now_ms();
    let claims = realm.keyring.open(token, now).ok()?;
    let done = realm
        .state
        .revoke_token(&realm.revocations, &claims.token_id, claims.expires_at)
        .await;
    if done.is_ok() {
        Some(json_reply(
            StatusCode::OK,
            serde_json::json!({ "revoked": true }),
        ))
    } else {
        Some(unavailable())
    }
}

#[async_trait]
impl Endpoint for RevokeEndpoint {
    fn kind(&self) -> &'static str {
        "opaque"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        if let Some(stop) = post_within_client_limit(&self.realm, req, || ()).await {
            return stop;
        }
        match token_from(req) {
            Ok(Some(t)) => revoke_token(&self.realm, &t).await.unwrap_or_else(|| {
                json_reply(StatusCode::OK, serde_json::json!({ "revoked": false }))
            }),
            _ => error(StatusCode::BAD_REQUEST, "invalid_request"),
        }
    }
}
