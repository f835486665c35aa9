//! Sessions and login flows in sealed cookies.
//!
//! - The session (subject, e-mail, groups, times, and the tokens kept for sign-out, refresh or
//!   the upstream) is JSON sealed with AEAD under the provider's cookie keys (label `session`),
//!   in one cookie, or split into numbered chunks (`<name>_0`, `<name>_1`, ...) when the sealed
//!   text is longer than one cookie may be. A missing, reordered, truncated or tampered chunk
//!   fails the AEAD tag: no session.
//! - The flow (state, nonce, PKCE verifier, `rd`, redirect URL, expiry) is sealed the same way
//!   under the label `flow`, in its own short-lived cookie: it binds the callback to the
//!   browser that started the login (CSRF).
//!
//! Cookies are `HttpOnly`, `SameSite=Lax`, `Secure` unless configured off, and get the
//! `__Host-` prefix when they can (secure, no domain, path `/`).

use std::borrow::Cow;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::auth::RequestView;
use crate::tokens::seal::Sealer;

/// Largest cookie (`name=value`) written; browsers keep at least 4096 bytes with attributes.
pub const MAX_COOKIE: usize = 4000;
/// Most chunks a session may take (4 x 4000 bytes stays inside the request cookie budget).
pub const MAX_CHUNKS: usize = 4;
/// Largest sealed text opened.
const MAX_TEXT: usize = MAX_COOKIE * MAX_CHUNKS;

/// A logged-in user, as sealed in the cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The user (the configured user claim, `sub` by default).
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pu: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The ID token's `sub` and `sid` (back-channel logout).
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Created (or last refreshed), Unix seconds.
    pub iat: i64,
    /// Ends, Unix seconds.
    pub exp: i64,
    /// The ID token, kept for `id_token_hint` at sign-out or the upstream's bearer header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    /// The id under which the shared store keeps it (not part of what is stored).
    #[serde(skip)]
    pub id: Option<String>,
}

/// A session as a request found it, with the identity built from it once: the cookie store
/// memoizes these per cookie text (see [`crate::tokens::memo`]), so a returning cookie is not
/// opened, parsed and turned into headers again.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    pub identity: std::sync::OnceLock<std::sync::Arc<crate::identity::Identity>>,
}

impl Opened {
    pub fn new(session: Session) -> Opened {
        Opened {
            session,
            identity: Default::default(),
        }
    }
}

impl std::ops::Deref for Opened {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

/// A login in progress, as sealed in the flow cookie.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flow {
    /// `state` sent to the provider.
    pub st: String,
    /// `nonce` sent to the provider.
    pub n: String,
    /// PKCE code verifier.
    pub v: String,
    /// Where to go after the login (already checked).
    pub rd: String,
    /// The `redirect_uri` sent (the token request repeats it).
    pub ru: String,
    /// Ends, Unix seconds.
    pub exp: i64,
}

/// The cookie names and attributes of one provider's session.
#[derive(Debug)]
pub struct CookieJar {
    /// The session cookie's full name (with `__Host-` when it applies).
    pub name: Box<str>,
    /// The flow cookie's full name.
    pub flow: Box<str>,
    /// `; Path=...; [Domain=...;] [Secure;] HttpOnly; SameSite=Lax`
    attrs: Box<str>,
    max_age: u64,
    /// Sealed text per chunk cookie.
    chunk: usize,
}

/// Settings a [`CookieJar`] is made from.
pub struct CookieSettings<'a> {
    pub name: &'a str,
    pub secure: bool,
    pub domain: Option<&'a str>,
    pub path: &'a str,
    pub max_age: u64,
}

impl CookieJar {
    pub fn new(s: &CookieSettings<'_>) -> CookieJar {
        let host_prefix = s.secure && s.domain.is_none() && s.path == "/";
        let base = if host_prefix && !s.name.starts_with("__Host-") {
            format!("__Host-{}", s.name)
        } else {
            s.name.to_string()
        };
        let mut attrs = format!("; Path={}", s.path);
        if let Some(d) = s.domain {
            attrs.push_str("; Domain=");
            attrs.push_str(d);
        }
        if s.secure {
            attrs.push_str("; Secure");
        }
        attrs.push_str("; HttpOnly; SameSite=Lax");
        let chunk = MAX_COOKIE.saturating_sub(base.len() + 4);
        CookieJar {
            flow: format!("{base}_flow").into(),
            name: base.into(),
            attrs: attrs.into(),
            max_age: s.max_age,
            chunk,
        }
    }

    /// The cookie names this session uses (to strip before the upstream).
    pub fn names(&self) -> Vec<Box<str>> {
        let mut v = vec![self.name.clone(), self.flow.clone()];
        v.extend((0..MAX_CHUNKS).map(|i| self.chunk_name(i).into()));
        v
    }

    fn chunk_name(&self, i: usize) -> String {
        format!("{}_{i}", self.name)
    }

    /// The sealed session text of a request: the single cookie, or the chunks `_0`, `_1`, ...
    /// joined in order (stopping at the first missing one). `None`: no session cookie.
    pub fn session_text<'a>(&self, req: &RequestView<'a>) -> Option<Cow<'a, str>> {
        let mut single = None;
        let mut chunks: [Option<&'a str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
        let name = &*self.name;
        for (n, v) in req.cookies() {
            let Some(rest) = n.strip_prefix(name) else {
                continue;
            };
            if rest.is_empty() {
                single.get_or_insert(v);
            } else if let Some(i) = chunk_index(rest) {
                if chunks[i].is_none() {
                    chunks[i] = Some(v);
                }
            }
        }
        if let Some(s) = single {
            return Some(Cow::Borrowed(s));
        }
        let first = chunks[0]?;
        let mut text = String::with_capacity(self.chunk * MAX_CHUNKS);
        text.push_str(first);
        for c in chunks[1..].iter() {
            match c {
                Some(c) => text.push_str(c),
                None => break,
            }
        }
        Some(Cow::Owned(text))
    }

    /// `Set-Cookie` values that store `sealed` (one cookie or chunks) and expire every other
    /// session cookie the request carried. `None` when it needs more than [`MAX_CHUNKS`].
    pub fn set_session(&self, sealed: &str, req: &RequestView<'_>) -> Option<Vec<HeaderValue>> {
        let mut out = Vec::new();
        let present = self.present(req);
        if self.name.len() + 1 + sealed.len() <= MAX_COOKIE {
            out.push(self.cookie(&self.name, sealed, self.max_age)?);
            for i in 0..MAX_CHUNKS {
                if present[i + 1] {
                    out.push(self.cookie(&self.chunk_name(i), "", 0)?);
                }
            }
            return Some(out);
        }
        let parts: Vec<&str> = split_at_most(sealed, self.chunk);
        if parts.len() > MAX_CHUNKS {
            return None;
        }
        for (i, p) in parts.iter().enumerate() {
            out.push(self.cookie(&self.chunk_name(i), p, self.max_age)?);
        }
        for i in parts.len()..MAX_CHUNKS {
            if present[i + 1] {
                out.push(self.cookie(&self.chunk_name(i), "", 0)?);
            }
        }
        if present[0] {
            out.push(self.cookie(&self.name, "", 0)?);
        }
        Some(out)
    }

    /// `Set-Cookie` values that expire every session cookie the request carried (always the
    /// main one, so a browser that hid it from us still drops it).
    pub fn clear_session(&self, req: &RequestView<'_>) -> Vec<HeaderValue> {
        let present = self.present(req);
        let mut out: Vec<HeaderValue> = self.cookie(&self.name, "", 0).into_iter().collect();
        for i in 0..MAX_CHUNKS {
            if present[i + 1] {
                out.extend(self.cookie(&self.chunk_name(i), "", 0));
            }
        }
        out
    }

    /// The flow cookie holding `sealed` for `ttl` seconds.
    pub fn set_flow(&self, sealed: &str, ttl: u64) -> Option<HeaderValue> {
        self.cookie(&self.flow, sealed, ttl)
    }

    /// Expire the flow cookie.
    pub fn clear_flow(&self) -> Option<HeaderValue> {
        self.cookie(&self.flow, "", 0)
    }

    /// Which of [main, chunk 0, chunk 1, ...] the request carries.
    fn present(&self, req: &RequestView<'_>) -> [bool; MAX_CHUNKS + 1] {
        let mut p = [false; MAX_CHUNKS + 1];
        for (n, _) in req.cookies() {
            if let Some(rest) = n.strip_prefix(&*self.name) {
                if rest.is_empty() {
                    p[0] = true;
                } else if let Some(i) = chunk_index(rest) {
                    p[i + 1] = true;
                }
            }
        }
        p
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        HeaderValue::try_from(format!("{name}={value}; Max-Age={max_age}{}", self.attrs)).ok()
    }
}

/// `_3` -> 3 (below [`MAX_CHUNKS`]).
fn chunk_index(rest: &str) -> Option<usize> {
    let d = rest.strip_prefix('_')?;
    if d.len() != 1 {
        return None;
    }
    let i = (d.as_bytes()[0] as char).to_digit(10)? as usize;
    (i < MAX_CHUNKS).then_some(i)
}

/// Split ASCII text into pieces of at most `n` bytes.
fn split_at_most(s: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let mut out = Vec::with_capacity(s.len() / n + 1);
    let mut rest = s;
    while !rest.is_empty() {
        let mut cut = rest.len().min(n);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (a, b) = rest.split_at(cut);
        out.push(a);
        rest = b;
    }
    out
}

/// Seal a session.
pub fn seal_session(sealer: &Sealer, s: &Session) -> Option<String> {
    let json = serde_json::to_vec(s).ok()?;
    sealer.seal(b"session", &json).ok()
}

/// Open a session that has not ended at `now`; `None` for anything else.
pub fn open_session(sealer: &Sealer, text: &str, now: i64) -> Option<Session> {
    let plain = sealer.open(b"session", text, MAX_TEXT).ok()?;
    let s: Session = serde_json::from_slice(&plain).ok()?;
    (s.exp > now).then_some(s)
}

/// Seal a flow.
pub fn seal_flow(sealer: &Sealer, f: &Flow) -> Option<String> {
    let json = serde_json::to_vec(f).ok()?;
    sealer.seal(b"flow", &json).ok()
}

/// Open a flow that has not expired at `now`.
pub fn open_flow(sealer: &Sealer, text: &str, now: i64) -> Option<Flow> {
    let plain = sealer.open(b"flow", text, MAX_COOKIE).ok()?;
    let f: Flow = serde_json::from_slice(&plain).ok()?;
    (f.exp > now).then_some(f)
}
