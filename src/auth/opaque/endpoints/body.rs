//! What the opaque endpoints read from a request: the body's media type, form pairs, the
//! login credentials, and the token to revoke (bearer header or body).

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::auth::{bearer_token, RequestView};

const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

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
pub(super) enum BodyError {
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

pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) password: Zeroizing<String>,
}

pub(super) fn parse_login(req: &RequestView<'_>) -> Option<Credentials> {
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

/// A token from `Authorization: Bearer`, or a JSON `{"token"}` / form `token=` body.
pub(super) fn token_from(req: &RequestView<'_>) -> Result<Option<String>, BodyError> {
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
