//! The `opaque` route filter: `Authorization: Bearer <token>` -> open with the realm's keys ->
//! the user still exists -> not revoked -> client address allowed -> user or role allowed on the
//! route -> per-user rate limit -> identity (`X-User`, `X-User-Roles`). Revocations and the
//! rate limit come from the shared state; when it cannot answer: 503.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode};

use super::limits::Stop;
use super::{now_ms, Realm};
use crate::auth::{bearer_token, AuthFilter, Denial, DenyReason, Outcome, RequestView};
use crate::tokens::aead::OpenError;

/// Who may pass, computed once when the config loads.
#[derive(Debug)]
enum Allowed {
    Any,
    Ids(HashSet<Arc<str>>),
}

#[derive(Debug)]
pub struct OpaqueFilter {
    realm: Arc<Realm>,
    allowed: Allowed,
    credential: [HeaderName; 1],
}

impl OpaqueFilter {
    /// `users` are usernames, `roles` role names; both empty: any user of the realm.
    pub fn new(realm: Arc<Realm>, users: &[String], roles: &[String]) -> Self {
        let allowed = if users.is_empty() && roles.is_empty() {
            Allowed::Any
        } else {
            let ids = realm
                .users
                .by_id
                .values()
                .filter(|u| {
                    users.contains(&u.username) || u.roles.iter().any(|r| roles.contains(r))
                })
                .map(|u| u.id.clone())
                .collect();
            Allowed::Ids(ids)
        };
        OpaqueFilter {
            realm,
            allowed,
            credential: [http::header::AUTHORIZATION],
        }
    }

    fn invalid(&self, reason: DenyReason) -> Outcome {
        Outcome::Deny(Denial::new(StatusCode::UNAUTHORIZED, reason).with_header(
            http::header::WWW_AUTHENTICATE,
            self.realm.invalid_token.clone(),
        ))
    }
}

/// The shared state could not answer: 503, never an allow.
fn state_unavailable() -> Outcome {
    Outcome::deny(StatusCode::SERVICE_UNAVAILABLE, DenyReason::Internal)
}

#[async_trait]
impl AuthFilter for OpaqueFilter {
    fn kind(&self) -> &'static str {
        "opaque"
    }

    async fn check(&self, req: &RequestView<'_>) -> Outcome {
        let token = match bearer_token(req.headers) {
            Ok(None) => return Outcome::NotApplicable,
            Ok(Some(t)) => t,
            Err(DenyReason::MultipleCredentials) => {
                return Outcome::deny(StatusCode::BAD_REQUEST, DenyReason::MultipleCredentials)
            }
            Err(r) => return self.invalid(r),
        };
        let realm = &self.realm;
        let now = now_ms();
        let claims = match realm.opened.get(token, now) {
            Some(c) => c,
            None => match realm.keyring.open(token, now) {
                Ok(c) => {
                    let c = Arc::new(c);
                    realm.opened.insert(token, c.clone());
                    c
                }
                Err(e) => {
                    return self.invalid(match e {
                        OpenError::Malformed => DenyReason::Malformed,
                        OpenError::UnknownKey => DenyReason::UnknownKey,
                        OpenError::BadSeal => DenyReason::BadSignature,
                        OpenError::Expired => DenyReason::Expired,
                    })
                }
            },
        };
        // A deleted user's tokens stop at the reload that deletes them.
        let Some(user) = realm.users.by_id.get(claims.user_id.as_str()) else {
            return self.invalid(DenyReason::WrongSubject);
        };
        // The local copy answers without a round trip while it is current; else ask the store.
        let (id, uid, iat) = (
            &claims.token_id,
            claims.user_id.as_str(),
            claims.issued_at_ms,
        );
        let revoked = match realm.state.revoked_local(&realm.revocations, id, uid, iat) {
            Some(r) => r,
            None => match realm
                .state
                .is_revoked(&realm.revocations, id, uid, iat)
                .await
            {
                Ok(r) => r,
                Err(_) => return state_unavailable(),
            },
        };
        if revoked {
            return self.invalid(DenyReason::Revoked);
        }
        if !user.client_allowed(req.client_ip) {
            return Outcome::deny(StatusCode::FORBIDDEN, DenyReason::ClientNotAllowed);
        }
        if let Allowed::Ids(ids) = &self.allowed {
            if !ids.contains(&user.id) {
                return Outcome::deny(StatusCode::FORBIDDEN, DenyReason::Forbidden);
            }
        }
        if let Some(limit) = &realm.user_limit {
            match limit.check(&user.id).await {
                Ok(()) => {}
                Err(Stop::Limited(wait)) => {
                    return Outcome::Deny(
                        Denial::new(StatusCode::TOO_MANY_REQUESTS, DenyReason::RateLimited)
                            .with_header(http::header::RETRY_AFTER, HeaderValue::from(wait)),
                    )
                }
                Err(Stop::Unavailable) => return state_unavailable(),
            }
        }
        Outcome::Allow(user.identity.clone())
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(self.realm.challenge.clone())
    }

    fn credential_headers(&self) -> &[HeaderName] {
        &self.credential
    }

    fn identity_headers(&self) -> Vec<HeaderName> {
        self.realm
            .user_header
            .iter()
            .chain(self.realm.roles_header.iter())
            .cloned()
            .collect()
    }
}
