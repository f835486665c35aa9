//! Endpoints an opaque realm serves at exact paths before routing:
//!
//! - token (`POST /auth`, JSON or form `username`/`password`) -> a sealed token;
//! - revoke (`POST /auth/revoke`, the token as bearer or in the body) -> revoked until expiry;
//! - admin (`POST /auth/admin/revoke`, admin secret header, `{"token"}` or `{"user"}`), served
//!   only when an admin secret is configured.
//!
//! Bad credentials get one answer whether or not the user exists, after an Argon2 run of the
//! same cost (a dummy hash for unknown users). Limits are checked before any Argon2 work.
//!
//! One module per endpoint (`token`, `revoke`, `admin`), `body` for what they read from a
//! request; here the answers and the limit check they share.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};

use super::limits::{client_key, Stop};
use super::Realm;
use crate::auth::{Answer, Denial, DenyReason, Reply, RequestView};

mod admin;
mod body;
mod revoke;
mod token;

pub use admin::AdminEndpoint;
pub use revoke::RevokeEndpoint;
pub use token::TokenEndpoint;

/// Largest body read by these endpoints.
pub const MAX_BODY: usize = 8 * 1024;

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
