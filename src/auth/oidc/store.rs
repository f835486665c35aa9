//! Where a provider keeps its sessions: `store: cookie` (default; the whole session sealed in
//! the cookie) or `store: shared` (a random session id sealed in the cookie, the session in the
//! shared state: memory, or Redis for several instances). Only the shared store can end a
//! session from the server side, which back-channel logout needs: sessions are indexed by the
//! ID token's `sid` and `sub`. A store that does not answer is 503, never an allow.

use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::random_token;
use super::session::{self, Opened, Session};
use super::Provider;
use crate::auth::{state_failed, Denial, DenyReason, RequestView};
use crate::state::Store;
use crate::tokens::memo::{Entry, Memo};

/// A loaded session (derefs to [`Session`]).
pub type Loaded = std::sync::Arc<Entry<Opened>>;

/// Cookie texts whose opened session is remembered, per provider.
pub const SESSION_MEMO: usize = 4096;

/// The `store` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Cookie,
    Shared,
}

/// A provider's session store, built.
#[derive(Debug)]
pub enum Backend {
    /// The sessions opened lately, by their exact cookie text.
    Cookie(Memo<Opened>),
    Shared(Store),
}

/// Longest session id list kept per `sub` (the oldest are dropped).
const MAX_PER_SUB: usize = 64;
/// Label of a sealed session id (a cookie of the shared store).
const ID_LABEL: &[u8] = b"session-id";

fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Provider {
    fn key(&self, kind: &str, v: &str) -> String {
        format!("oidc:{}:{kind}:{}", self.name, digest(v))
    }

    /// The request's session, if it carries a valid one that has not ended.
    pub async fn load(&self, req: &RequestView<'_>) -> Result<Option<Loaded>, Denial> {
        let Some(text) = self.jar.session_text(req) else {
            return Ok(None);
        };
        let now = crate::auth::unix_now();
        let store = match &self.backend {
            Backend::Cookie(memo) => return Ok(self.open_cookie(memo, &text, now)),
            Backend::Shared(s) => s,
        };
        let Ok(id) = self.sealer.open(ID_LABEL, &text, 256) else {
            return Ok(None);
        };
        let Ok(id) = std::str::from_utf8(&id) else {
            return Ok(None);
        };
        let Some(json) = store
            .session_get(&self.key("s", id))
            .await
            .map_err(state_failed)?
        else {
            return Ok(None);
        };
        let Ok(mut s) = serde_json::from_slice::<Session>(&json) else {
            return Ok(None);
        };
        s.id = Some(id.to_string());
        Ok((s.exp > now).then(|| Memo::detached(b"", Opened::new(s))))
    }

    /// A cookie session: remembered by its exact text once opened, until it ends.
    fn open_cookie(&self, memo: &Memo<Opened>, text: &str, now: i64) -> Option<Loaded> {
        if let Some(hit) = memo.get(text.as_bytes()) {
            if hit.exp > now {
                return Some(hit);
            }
            memo.remove(text.as_bytes());
            return None;
        }
        let s = session::open_session(&self.sealer, text, now)?;
        Some(memo.put(text.as_bytes(), Opened::new(s)))
    }

    /// Keep a session; the text its cookie carries. A session with an id (loaded from the shared
    /// store) is written over; one without gets a new id.
    pub async fn persist(&self, s: &Session) -> Result<String, Denial> {
        let internal = || Denial::new(StatusCode::INTERNAL_SERVER_ERROR, DenyReason::Internal);
        let store = match &self.backend {
            Backend::Cookie(_) => {
                return session::seal_session(&self.sealer, s).ok_or_else(internal)
            }
            Backend::Shared(st) => st,
        };
        let id = s.id.clone().unwrap_or_else(random_token);
        let ttl = Duration::from_secs((s.exp - crate::auth::unix_now()).max(1) as u64);
        let json = serde_json::to_vec(s).map_err(|_| internal())?;
        store
            .session_put(&self.key("s", &id), &json, ttl)
            .await
            .map_err(state_failed)?;
        if s.id.is_none() {
            self.index(store, s, &id, ttl).await?;
        }
        self.sealer
            .seal(ID_LABEL, id.as_bytes())
            .map_err(|_| internal())
    }

    /// Index a new session by `sid` and `sub` (for back-channel logout).
    async fn index(
        &self,
        store: &Store,
        s: &Session,
        id: &str,
        ttl: Duration,
    ) -> Result<(), Denial> {
        if let Some(sid) = &s.sid {
            store
                .session_put(&self.key("sid", sid), id.as_bytes(), ttl)
                .await
                .map_err(state_failed)?;
        }
        let key = self.key("sub", &s.sub);
        let mut ids: Vec<String> = match store.session_get(&key).await.map_err(state_failed)? {
            Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
            None => Vec::new(),
        };
        ids.push(id.to_string());
        if ids.len() > MAX_PER_SUB {
            ids.drain(..ids.len() - MAX_PER_SUB);
        }
        let v = serde_json::to_vec(&ids).unwrap_or_default();
        store.session_put(&key, &v, ttl).await.map_err(state_failed)
    }

    /// Sign-out: the shared entry goes too (the cookie is cleared by the caller).
    pub async fn forget(&self, s: Option<&Session>) -> Result<(), Denial> {
        if let (Backend::Shared(store), Some(id)) = (&self.backend, s.and_then(|s| s.id.as_deref()))
        {
            store
                .session_delete(&self.key("s", id))
                .await
                .map_err(state_failed)?;
        }
        Ok(())
    }

    /// End every session of this `sid` (or, without one, of this `sub`): the count ended.
    pub async fn end_sessions(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<usize, Denial> {
        let Backend::Shared(store) = &self.backend else {
            return Ok(0);
        };
        let mut ids: Vec<String> = Vec::new();
        if let Some(sid) = sid {
            let key = self.key("sid", sid);
            if let Some(v) = store.session_get(&key).await.map_err(state_failed)? {
                ids.extend(String::from_utf8(v).ok());
            }
            store.session_delete(&key).await.map_err(state_failed)?;
        }
        // Without a sid, or a sid no session was indexed under (an ID token without `sid`):
        // every session of the subject (ending too many is the safe side).
        if ids.is_empty() {
            if let Some(sub) = sub {
                let key = self.key("sub", sub);
                if let Some(v) = store.session_get(&key).await.map_err(state_failed)? {
                    ids.extend(serde_json::from_slice::<Vec<String>>(&v).unwrap_or_default());
                }
                store.session_delete(&key).await.map_err(state_failed)?;
            }
        }
        for id in &ids {
            store
                .session_delete(&self.key("s", id))
                .await
                .map_err(state_failed)?;
        }
        Ok(ids.len())
    }

    /// `Set-Cookie` values for a session: kept (shared store) or sealed whole; a cookie
    /// session too large for the chunks drops the tokens it keeps for convenience first.
    pub async fn session_cookies(
        &self,
        mut s: Session,
        req: &RequestView<'_>,
    ) -> Result<Vec<HeaderValue>, Denial> {
        let text = self.persist(&s).await?;
        if let Some(c) = self.jar.set_session(&text, req) {
            return Ok(c);
        }
        s.idt = None;
        s.at = None;
        let text = self.persist(&s).await?;
        self.jar
            .set_session(&text, req)
            .ok_or_else(|| Denial::new(StatusCode::INTERNAL_SERVER_ERROR, DenyReason::TooLarge))
    }
}
