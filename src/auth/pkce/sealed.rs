//! The two sealed blobs of the PKCE flow, carried by the client and the authorization server so
//! the edge keeps no state between the steps:
//!
//! - the upstream `state` ([`FlowState`], label `state`): challenge, client id, redirect URI, the
//!   client's own state, expiry;
//! - the downstream `code` ([`FlowCode`], label `code`): the authorization server's code,
//!   challenge, client id, redirect URI, expiry.
//!
//! Both are a compact binary payload (version byte, expiry as u64 seconds, then length-prefixed
//! UTF-8 fields) sealed by [`Sealer`] with domain `pkce`, the realm name as context and a label
//! per kind, so a state never opens as a code, nor one realm's blob in another realm. The key id
//! travels in the clear, authenticated. Decoding is strict: a wrong version, a short or long
//! payload or a field that is not UTF-8 is refused.

use crate::tokens::seal::Sealer;

const VERSION: u8 = 1;
/// Longest sealed text accepted before any crypto (a URL parameter).
pub const MAX_SEALED: usize = 8192;
/// Longest client `state` taken at the authorize endpoint.
pub const MAX_CLIENT_STATE: usize = 1024;
/// Longest redirect URI a client may register.
pub const MAX_REDIRECT_URI: usize = 2048;
/// Longest upstream code taken at the callback.
pub const MAX_UPSTREAM_CODE: usize = 2048;

const LABEL_STATE: &[u8] = b"state";
const LABEL_CODE: &[u8] = b"code";

/// What the upstream `state` carries from authorize to callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowState {
    pub expires_at: u64,
    pub challenge: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub client_state: String,
}

/// What the downstream `code` carries from callback to token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowCode {
    pub expires_at: u64,
    pub upstream_code: String,
    pub challenge: String,
    pub client_id: String,
    pub redirect_uri: String,
}

/// Why a blob was refused (for the log and metrics; the client sees one answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Did not open: tampered, foreign key, wrong label or realm, too long.
    Sealed,
    /// Opened but is not a payload of this version.
    Payload,
    Expired,
}

fn put(out: &mut Vec<u8>, field: &str) {
    // Fields are bounded far below u16::MAX by the endpoints; clamp defensively.
    let b = field.as_bytes();
    let n = b.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&b[..n]);
}

fn encode(expires_at: u64, fields: &[&str]) -> Vec<u8> {
    let len = 9 + fields.iter().map(|f| 2 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(VERSION);
    out.extend_from_slice(&expires_at.to_be_bytes());
    for f in fields {
        put(&mut out, f);
    }
    out
}

/// Version, expiry and exactly `N` fields, nothing left over.
fn decode<const N: usize>(bytes: &[u8]) -> Option<(u64, [String; N])> {
    let (&v, rest) = bytes.split_first()?;
    if v != VERSION || rest.len() < 8 {
        return None;
    }
    let (exp, mut rest) = rest.split_at(8);
    let expires_at = u64::from_be_bytes(exp.try_into().ok()?);
    let mut fields: [String; N] = std::array::from_fn(|_| String::new());
    for f in fields.iter_mut() {
        if rest.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let body = rest.get(2..2 + n)?;
        *f = std::str::from_utf8(body).ok()?.to_string();
        rest = &rest[2 + n..];
    }
    rest.is_empty().then_some((expires_at, fields))
}

impl FlowState {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(
            self.expires_at,
            &[
                &self.challenge,
                &self.client_id,
                &self.redirect_uri,
                &self.client_state,
            ],
        )
    }

    pub fn from_bytes(b: &[u8]) -> Option<FlowState> {
        let (expires_at, [challenge, client_id, redirect_uri, client_state]) = decode::<4>(b)?;
        Some(FlowState {
            expires_at,
            challenge,
            client_id,
            redirect_uri,
            client_state,
        })
    }

    pub fn seal(&self, sealer: &Sealer) -> Option<String> {
        sealer.seal(LABEL_STATE, &self.to_bytes()).ok()
    }

    /// Open and check the expiry against `now` (unix seconds).
    pub fn open(sealer: &Sealer, text: &str, now: u64) -> Result<FlowState, Refused> {
        let plain = sealer
            .open(LABEL_STATE, text, MAX_SEALED)
            .map_err(|_| Refused::Sealed)?;
        let s = FlowState::from_bytes(&plain).ok_or(Refused::Payload)?;
        if s.expires_at <= now {
            return Err(Refused::Expired);
        }
        Ok(s)
    }
}

impl FlowCode {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(
            self.expires_at,
            &[
                &self.upstream_code,
                &self.challenge,
                &self.client_id,
                &self.redirect_uri,
            ],
        )
    }

    pub fn from_bytes(b: &[u8]) -> Option<FlowCode> {
        let (expires_at, [upstream_code, challenge, client_id, redirect_uri]) = decode::<4>(b)?;
        Some(FlowCode {
            expires_at,
            upstream_code,
            challenge,
            client_id,
            redirect_uri,
        })
    }

    pub fn seal(&self, sealer: &Sealer) -> Option<String> {
        sealer.seal(LABEL_CODE, &self.to_bytes()).ok()
    }

    /// Open and check the expiry against `now` (unix seconds).
    pub fn open(sealer: &Sealer, text: &str, now: u64) -> Result<FlowCode, Refused> {
        let plain = sealer
            .open(LABEL_CODE, text, MAX_SEALED)
            .map_err(|_| Refused::Sealed)?;
        let c = FlowCode::from_bytes(&plain).ok_or(Refused::Payload)?;
        if c.expires_at <= now {
            return Err(Refused::Expired);
        }
        Ok(c)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
