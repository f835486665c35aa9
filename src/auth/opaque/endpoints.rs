//! Endpoints an opaque realm serves at exact paths before routing:
//!
//! - token (`POST /auth`, JSON or form `username`/`password`) -> a sealed token;
//! - revoke (`POST /auth/revoke`, the token as bearer or in the body) -> revoked until expiry;
//! - admin (`POST /auth/admin/revoke`, admin secret header, `{"token"}` or `{"user"}`), served
//!   only when an admin secret is configured.
//!
//! Bad credentials get one answer whether or not the user exists, after an Argon2 run of the
//! same cost (a dummy hash for unknown users). Limits are checked before any Argon2 work.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::config::ResponseShape;
use super::limits::{client_key, inc, Stop};
use super::{now_ms, Realm};
use crate::auth::{bearer_token, Answer, Denial, DenyReason, Endpoint, Reply, RequestView};
use crate::tokens::aead::Claims;

/// Largest body read by these endpoints.
pub const MAX_BODY: usize = 8 * 1024;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

fn json_reply(status: StatusCode, v: serde_json::Value) -> Answer {
    Answer::Respond(Reply::json(status, Bytes::from(v.to_string())))
}

fn error(status: StatusCode, code: &str) -> Answer {
    json_reply(status, serde_json::json!({ "error": code }))
}

fn method_not_allowed() -> Answer {
    Answer::Deny(
        Denial::new(StatusCode::METHOD_NOT_ALLOWED, DenyReason::Malformed)
            .with_header(http::header::ALLOW, HeaderValue::from_static("POST")),
    )
}

fn too_many(wait: u64) -> Answer {
    let mut r = Reply::json(
        StatusCode::TOO_MANY_REQUESTS,
        Bytes::from_static(br#"{"error":"rate_limited"}"#),
    );
    r.headers
        .push((http::header::RETRY_AFTER, HeaderValue::from(wait)));
    Answer::Respond(r)
}

fn bad_credentials() -> Answer {
    json_reply(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({ "error": "invalid_grant", "error_description": "invalid username or password" }),
    )
}

/// A Unix time as ProxyAuth writes `expires_at`: `YYYY-MM-DD HH:MM:SS`, Europe/Paris local time
/// (CET, CEST from the last Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC).
pub fn paris_time(unix: i64) -> String {
    use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
    let Some(t) = Utc.timestamp_opt(unix, 0).single() else {
        return String::new();
    };
    let last_sunday = |month: u32| {
        NaiveDate::from_ymd_opt(t.year(), month, 31).map(|d| {
            let back = d.weekday().num_days_from_sunday();
            let sunday = d - Duration::days(i64::from(back));
            debug_assert_eq!(sunday.weekday(), Weekday::Sun);
            sunday.and_hms_opt(1, 0, 0).map(|n| n.and_utc())
        })
    };
    let summer = match (last_sunday(3).flatten(), last_sunday(10).flatten()) {
        (Some(start), Some(end)) => t >= start && t < end,
        _ => false,
    };
    let local = t + Duration::hours(if summer { 2 } else { 1 });
    local.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The body's media type: JSON, form, or (no Content-Type) guessed from the first byte.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
}

fn body_kind(req: &RequestView<'_>, body: &[u8]) -> Option<Kind> {
    match req.headers.get(http::header::CONTENT_TYPE) {
        Some(ct) => {
            let ct = ct.to_str().ok()?;
            let mime = ct.split(';').next().unwrap_or("").trim();
            if mime.eq_ignore_ascii_case("application/json") {
                Some(Kind::Json)
            } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                Some(Kind::Form)
            } else {
                None
            }
        }
        None => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Some(Kind::Json),
            Some(_) => Some(Kind::Form),
            None => None,
        },
    }
}

/// Decode a form body into `(name, value)` pairs; `None` if not valid UTF-8 after decoding.
fn form_pairs(body: &[u8]) -> Option<Vec<(String, Zeroizing<String>)>> {
    let mut out = Vec::new();
    for part in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let dec = |s: &[u8]| -> Option<String> {
            let plus: Vec<u8> = s
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            let bytes: Vec<u8> = percent_encoding::percent_decode(&plus).collect();
            String::from_utf8(bytes).ok()
        };
        out.push((dec(k)?, Zeroizing::new(dec(v)?)));
    }
    Some(out)
}

/// A request body (or credential header) that cannot be read as one unambiguous value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BodyError {
    #[error("a field is given twice")]
    Repeated,
    #[error("the body is neither JSON nor a form, or does not parse")]
    Unreadable,
    #[error("the Authorization header is malformed")]
    BadHeader,
}

/// The one value of `name` in a form, `Err` if repeated.
fn form_value(
    pairs: &[(String, Zeroizing<String>)],
    name: &str,
) -> Result<Option<Zeroizing<String>>, BodyError> {
    let mut found = pairs.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.clone());
    if found.next().is_some() {
        return Err(BodyError::Repeated);
    }
    Ok(first)
}

#[derive(Deserialize)]
struct LoginJson {
    username: String,
    password: String,
}

struct Credentials {
    username: String,
    password: Zeroizing<String>,
}

fn parse_login(req: &RequestView<'_>) -> Option<Credentials> {
    let body = req.body.unwrap_or_default();
    let creds = match body_kind(req, body)? {
        Kind::Json => {
            let j: LoginJson = serde_json::from_slice(body).ok()?;
            Credentials {
                username: j.username,
                password: Zeroizing::new(j.password),
            }
        }
        Kind::Form => {
            let pairs = form_pairs(body)?;
            let username = form_value(&pairs, "username").ok()??;
            let password = form_value(&pairs, "password").ok()??;
            Credentials {
                username: username.to_string(),
                password,
            }
        }
    };
    if creds.username.is_empty()
        || creds.username.len() > MAX_USERNAME
        || creds.password.is_empty()
        || creds.password.len() > MAX_PASSWORD
    {
        return None;
    }
    Some(creds)
}

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
        if self.realm.response == ResponseShape::Proxyauth {
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
}

/// Every realm endpoint takes POST only and shares the per-client limit of the token endpoint
/// (revocations are kept until tokens expire, so an unlimited revoke endpoint would let one
/// client fill the list). `Some` is the answer when the request stops here.
async fn post_within_client_limit(
    realm: &Realm,
    req: &RequestView<'_>,
    on_limited: impl FnOnce(),
) -> Option<Answer> {
    if req.method != Method::POST {
        return Some(method_not_allowed());
    }
    let key = client_key(req.client_ip).to_string();
    limited(realm.login_client_limit.check(&key).await, on_limited)
}

/// The answer when a limit stops the request.
fn limited(r: Result<(), Stop>, on_limited: impl FnOnce()) -> Option<Answer> {
    match r.err()? {
        Stop::Limited(wait) => {
            on_limited();
            Some(too_many(wait))
        }
        Stop::Unavailable => Some(unavailable()),
    }
}

/// The shared state (or the password worker) could not answer: 503.
fn unavailable() -> Answer {
    error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
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
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        };
        match user {
            // Outside the user's networks looks exactly like a wrong password: no oracle.
            Some(u) if verified && u.client_allowed(req.client_ip) => {
                inc(&m.success);
                self.issue(&u.id).await
            }
            _ => {
                inc(&m.bad_credentials);
                if realm.response == ResponseShape::Proxyauth {
                    let mut r = Reply::json(
                        StatusCode::UNAUTHORIZED,
                        Bytes::from_static(b"Invalid credentials"),
                    );
                    r.headers[0].1 = HeaderValue::from_static("text/plain; charset=utf-8");
                    return Answer::Respond(r);
                }
                bad_credentials()
            }
        }
    }
}

/// A token from `Authorization: Bearer`, or a JSON `{"token"}` / form `token=` body.
fn token_from(req: &RequestView<'_>) -> Result<Option<String>, BodyError> {
    if let Some(t) = bearer_token(req.headers).map_err(|_| BodyError::BadHeader)? {
        return Ok(Some(t.to_string()));
    }
    let body = req.body.unwrap_or_default();
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    match body_kind(req, body).ok_or(BodyError::Unreadable)? {
        Kind::Json => {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| BodyError::Unreadable)?;
            Ok(v.get("token").and_then(|t| t.as_str()).map(str::to_string))
        }
        Kind::Form => {
            let pairs = form_pairs(body).ok_or(BodyError::Unreadable)?;
            Ok(form_value(&pairs, "token")?.map(|t| t.to_string()))
        }
    }
}

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

async fn revoke_token(realm: &Realm, token: &str) -> Option<Answer> {
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
        Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        ))
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
        error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    }
}
