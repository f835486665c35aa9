//! Session refresh (`cookie_refresh`): a session older than the interval is refreshed with its
//! refresh token at the next request, once per session however many requests arrive together
//! (single-flight: they share one token request and its result, so a provider that rotates
//! refresh tokens never sees the old one twice). The new cookie is set on the proxied response;
//! a refused refresh token (`invalid_grant`) ends the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::client::LoggedIn;
use super::session::Session;

/// What one refresh gave.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// The new session and its sealed text.
    Renewed(Arc<(Session, String)>),
    /// The provider refused the refresh token: the session is over.
    Ended,
    /// The provider did not answer: 503, the session stays as it is.
    Unavailable,
}

type Cell = Arc<OnceCell<Refreshed>>;

/// In-flight and just-finished refreshes, by refresh token digest.
#[derive(Debug, Default)]
pub struct Refresher {
    cells: Mutex<HashMap<[u8; 32], (i64, Cell)>>,
}

/// How long a finished refresh's result is handed to late requests with the old cookie.
const KEEP_SECS: i64 = 30;

impl Refresher {
    /// The shared cell for this refresh token (created when new; old entries dropped).
    pub fn cell(&self, refresh_token: &str, now: i64) -> Cell {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let mut cells = match self.cells.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        cells.retain(|_, (at, _)| now - *at < KEEP_SECS);
        cells
            .entry(key)
            .or_insert_with(|| (now, Arc::new(OnceCell::new())))
            .1
            .clone()
    }
}

/// The refreshed session: the old one with new times and tokens, and the claims of a new ID
/// token when the provider sent one.
pub fn renewed(
    old: &Session,
    l: &LoggedIn,
    now: i64,
    groups_claim: &str,
    keep_idt: bool,
    keep_at: bool,
) -> Session {
    let mut s = old.clone();
    let c = &l.claims;
    if let Some(e) = c.get("email").and_then(|v| v.as_str()) {
        s.email = Some(e.to_string());
    }
    if let Some(p) = c.get("preferred_username").and_then(|v| v.as_str()) {
        s.pu = Some(p.to_string());
    }
    if let Some(serde_json::Value::Array(a)) = c.get(groups_claim) {
        s.groups = a
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
    }
    s.iat = now;
    if keep_idt && !l.id_token.is_empty() {
        s.idt = Some(l.id_token.clone());
    }
    if keep_at {
        s.at = Some(l.access_token.clone());
    }
    if let Some(rt) = &l.refresh_token {
        s.rt = Some(rt.clone());
    }
    s
}
