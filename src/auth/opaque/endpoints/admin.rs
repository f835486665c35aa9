//! The admin endpoint (`POST admin_path`, default `/auth/admin/revoke`), served only when an
//! admin secret is configured: with the secret's header, revoke one token (`{"token"}`) or every
//! token of a user (`{"user"}` by name, `{"user_id"}` by id).

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::revoke::revoke_token;
use super::{error, json_reply, post_within_client_limit, unavailable, MAX_BODY};
use crate::auth::opaque::{now_ms, Realm};
use crate::auth::{Answer, DenyReason, Endpoint, RequestView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    #[serde(default)]
    token: Option<String>,
    /// Username.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

/// `POST admin_path` with the admin secret header: revoke one token or every token of a user.
#[derive(Debug)]
pub struct AdminEndpoint {
    realm: Arc<Realm>,
    header: HeaderName,
    digest: [u8; 32],
}

impl AdminEndpoint {
    pub fn new(realm: Arc<Realm>, header: HeaderName, digest: [u8; 32]) -> Self {
        AdminEndpoint {
            realm,
            header,
            digest,
        }
    }

    /// Exactly one non-empty header whose SHA-256 equals the secret's, compared in constant time.
    fn authorized(&self, req: &RequestView<'_>) -> bool {
        let mut values = req.headers.get_all(&self.header).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            return false;
        };
        if v.is_empty() {
            return false;
        }
        let got: [u8; 32] = Sha256::digest(v.as_bytes()).into();
        bool::from(got.ct_eq(&self.digest))
    }
}

#[async_trait]
impl Endpoint for AdminEndpoint {
    fn kind(&self) -> &'static str {
        "opaque"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        let realm = &self.realm;
        if let Some(stop) = post_within_client_limit(realm, req, || ()).await {
            return stop;
        }
        if !self.authorized(req) {
            return Answer::deny(StatusCode::UNAUTHORIZED, DenyReason::BadCredentials);
        }
        let body: AdminBody = match serde_json::from_slice(req.body.unwrap_or_default()) {
            Ok(b) => b,
            Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_request"),
        };
        match (body.token, body.user, body.user_id) {
            (Some(t), None, None) => revoke_token(realm, &t)
                .await
                .unwrap_or_else(|| error(StatusCode::BAD_REQUEST, "invalid_token")),
            (None, Some(name), None) => match realm.users.by_name.get(&name) {
                Some(u) => revoke_user(realm, &u.id).await,
                None => error(StatusCode::NOT_FOUND, "unknown_user"),
            },
            (None, None, Some(id)) => match realm.users.by_id.get(id.as_str()) {
                Some(u) => revoke_user(realm, &u.id).await,
                None => error(StatusCode::NOT_FOUND, "unknown_user"),
            },
            _ => error(StatusCode::BAD_REQUEST, "invalid_request"),
        }
    }
}

/// Revoke every token of user `id` issued until now.
async fn revoke_user(realm: &Realm, id: &str) -> Answer {
    let done = realm
        .state
        .revoke_user(&realm.revocations, id, now_ms())
        .await;
    if done.is_ok() {
        json_reply(
            StatusCode::OK,
            serde_json::json!({ "revoked": true, "user_id": id }),
        )
    } else {
        unavailable()
    }
}
