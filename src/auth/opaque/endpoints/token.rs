//! The token endpoint (`POST token_path`, default `/auth`): credentials -> a sealed token, in
//! authedge's or ProxyAuth's answer shape.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::body::parse_login;
use super::{
    bad_credentials, error, json_reply, limited, paris_time, post_within_client_limit, unavailable,
    MAX_BODY,
};
use crate::auth::opaque::config::ResponseShape;
use crate::auth::opaque::limits::inc;
use crate::auth::opaque::{now_ms, Realm};
use crate::auth::{Answer, Endpoint, Reply, RequestView};
use crate::tokens::aead::Claims;

/// `POST token_path`: credentials -> token.
#[derive(Debug)]
pub struct TokenEndpoint {
    realm: Arc<Realm>,
}

impl TokenEndpoint {
    pub fn new(realm: Arc<Realm>) -> Self {
        TokenEndpoint { realm }
    }

    async fn issue(&self, user_id: &str) -> Answer {
        // Issued strictly after any revoke-all of this user, even within the same millisecond.
        let realm = &self.realm;
        let now = match realm.state.user_cutoff(&realm.revocations, user_id).await {
            Ok(Some(cutoff)) => now_ms().max(cutoff.saturating_add(1)),
            Ok(None) => now_ms(),
            Err(_) => return unavailable(),
        };
        let lifetime = i64::try_from(self.realm.lifetime.as_secs()).unwrap_or(3600);
        let expires_at = now.div_euclid(1000).saturating_add(lifetime);
        let claims = Claims {
            user_id: user_id.to_string(),
            issued_at_ms: now,
            expires_at,
            token_id: rand::random(),
        };
        let Ok(token) = self.realm.keyring.seal(&claims) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        };
        token_reply(self.realm.response, &token, expires_at, lifetime)
    }
}

/// The token endpoint's 200 in the realm's answer shape.
fn token_reply(shape: ResponseShape, token: &str, expires_at: i64, lifetime: i64) -> Answer {
    if shape == ResponseShape::Proxyauth {
        return json_reply(
            StatusCode::OK,
            serde_json::json!({ "token": token, "expires_at": paris_time(expires_at) }),
        );
    }
    let expires_rfc3339 = chrono::DateTime::<chrono::Utc>::from_timestamp(expires_at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    json_reply(
        StatusCode::OK,
        serde_json::json!({
            "token": token,
            "token_type": "Bearer",
            "expires_at": expires_rfc3339,
            "expires_in": lifetime,
        }),
    )
}

/// Bad credentials in the realm's answer shape (ProxyAuth's: `Invalid credentials`, plain text).
fn refused(shape: ResponseShape) -> Answer {
    if shape == ResponseShape::Proxyauth {
        let mut r = Reply::json(
            StatusCode::UNAUTHORIZED,
            Bytes::from_static(b"Invalid credentials"),
        );
        r.headers[0].1 = HeaderValue::from_static("text/plain; charset=utf-8");
        return Answer::Respond(r);
    }
    bad_credentials()
}

#[async_trait]
impl Endpoint for TokenEndpoint {
    fn kind(&self) -> &'static str {
        "opaque"
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    async fn handle(&self, req: &RequestView<'_>) -> Answer {
        let realm = &self.realm;
        let m = &realm.logins;
        // The client limit first: one address cannot fill the username table.
        if let Some(stop) = post_within_client_limit(realm, req, || inc(&m.rate_limited)).await {
            return stop;
        }
        let Some(creds) = parse_login(req) else {
            inc(&m.malformed);
            return error(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let by_user = realm
            .login_user_limit
            .check(&creds.username, req.client_ip)
            .await;
        if let Some(stop) = limited(by_user, || inc(&m.rate_limited)) {
            return stop;
        }
        let user = realm.users.by_name.get(&creds.username).cloned();
        let hash = match &user {
            Some(u) => u.hash.clone(),
            None => realm.users.dummy_hash.clone(),
        };
        let verified = match realm.verify(hash, creds.password).await {
            Ok(v) => v,
            Err(_) => return unavailable(),
        };
        match user {
            // Outside the user's networks looks exactly like a wrong password: no oracle.
            Some(u) if verified && u.client_allowed(req.client_ip) => {
                inc(&m.success);
                self.issue(&u.id).await
            }
            _ => {
                inc(&m.bad_credentials);
                refused(realm.response)
            }
        }
    }
}
