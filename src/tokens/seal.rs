//! Generic sealing: bytes sealed with XChaCha20-Poly1305 under a ring of named keys, for every
//! mode that hands state to a client to bring back (opaque tokens, OIDC session and flow cookies,
//! PKCE state and codes).
//!
//! A sealed text is URL-safe base64 (no padding) of
//! `version(1) | key id length(1) | key id | nonce(24) | ciphertext + tag(16)`.
//! The version and key id are in the clear; they and the caller's `label` are the associated
//! data, so a text sealed for one purpose (a PKCE `state`) never opens as another (a PKCE `code`)
//! even under the same keys.
//!
//! Each key's AEAD key is SHA-256 over a domain (`authedge/<domain>/v1`), a context (a realm or
//! provider name) and the configured secret: two instances with the same names and keys open each
//! other's texts, and a secret reused by two realms or two modes still gives unrelated keys. The
//! first key of the ring seals; every listed key opens (rotation without logging anyone out).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longest key id (bytes); ids are `[A-Za-z0-9._-]`.
pub const MAX_KEY_ID: usize = 64;
/// Shortest secret accepted for a key.
pub const MIN_SECRET: usize = 32;
/// Longest label bound into a seal.
const MAX_LABEL: usize = 64;

/// A key list that cannot make a ring; `index` is the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keys[{index}]: {reason}")]
pub struct KeyError {
    pub index: usize,
    pub reason: String,
}

/// Why a sealed text did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not base64, too short or long, unknown version, bad payload.
    #[error("malformed")]
    Malformed,
    /// The key id is not in the ring (rotated out, or never ours).
    #[error("unknown key")]
    UnknownKey,
    /// Authentication failed: tampered, sealed by another key, realm or label.
    #[error("bad seal")]
    BadSeal,
    /// Opened, but its own expiry (checked by the caller's format) has passed.
    #[error("expired")]
    Expired,
}

/// Why sealing failed (only on absurd input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot seal: {0}")]
pub struct SealError(pub &'static str);

struct RingKey {
    id: Box<[u8]>,
    cipher: XChaCha20Poly1305,
}

/// A ring of named keys for one domain and context: the first seals, all open.
pub struct Sealer {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(&k.id).into_owned())
            .collect();
        f.debug_struct("Sealer").field("key_ids", &ids).finish()
    }
}

/// Whether a key id is acceptable (1 to 64 of `[A-Za-z0-9._-]`).
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn derive(domain: &str, context: &[u8], secret: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"authedge/");
    h.update(domain.as_bytes());
    h.update(b"/v1\0");
    h.update((context.len() as u64).to_be_bytes());
    h.update(context);
    h.update(secret);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

/// The longest sealed text for a plaintext of `len` bytes (to bound what `open` reads).
pub fn sealed_len(len: usize) -> usize {
    (2 + MAX_KEY_ID + NONCE_LEN + len + TAG_LEN).div_ceil(3) * 4
}

impl Sealer {
    /// Build a ring. `domain` names the use (`opaque-token`, `pkce`, `oidc-session`), `context`
    /// the realm or provider; `keys` are `(id, secret)`, the sealing key first.
    pub fn new(domain: &str, context: &[u8], keys: &[(&str, &[u8])]) -> Result<Sealer, KeyError> {
        Sealer::with_min_secret(domain, context, keys, MIN_SECRET)
    }

    /// As [`Sealer::new`], with secrets as short as `min_secret` bytes (never under 16: the
    /// 128-bit secrets of tools whose config users bring, such as oauth2-proxy's cookie secret).
    pub fn with_min_secret(
        domain: &str,
        context: &[u8],
        keys: &[(&str, &[u8])],
        min_secret: usize,
    ) -> Result<Sealer, KeyError> {
        let min_secret = min_secret.max(16);
        let err = |index, reason: String| KeyError { index, reason };
        if keys.is_empty() {
            return Err(err(0, "at least one key is needed".into()));
        }
        let mut ring: Vec<RingKey> = Vec::with_capacity(keys.len());
        for (i, (id, secret)) in keys.iter().enumerate() {
            if !valid_key_id(id) {
                let why = format!("key id {id:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
                return Err(err(i, why));
            }
            if secret.len() < min_secret {
                return Err(err(
                    i,
                    format!("secret must be at least {min_secret} bytes"),
                ));
            }
            if ring.iter().any(|k| &*k.id == id.as_bytes()) {
                return Err(err(i, format!("key id {id:?} is listed twice")));
            }
            let key = derive(domain, context, secret);
            ring.push(RingKey {
                id: id.as_bytes().into(),
                cipher: XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key)),
            });
        }
        Ok(Sealer { keys: ring })
    }

    /// The id of the sealing key.
    pub fn sealing_key_id(&self) -> &[u8] {
        self.keys.first().map(|k| &*k.id).unwrap_or_default()
    }

    /// Seal `plaintext` for `label` with the first key and a fresh random 192-bit nonce.
    pub fn seal(&self, label: &[u8], plaintext: &[u8]) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError("empty key ring"))?;
        if label.len() > MAX_LABEL {
            return Err(SealError("label too long"));
        }
        let header_len = 2 + key.id.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.push(key.id.len() as u8);
        out.extend_from_slice(&key.id);
        let mut aad = [0u8; 2 + MAX_KEY_ID + MAX_LABEL];
        let aad = fill_aad(&mut aad, &out[..header_len], label);
        let nonce = XNonce::from(rand::random::<[u8; NONCE_LEN]>());
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError("encryption failed"))?;
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open a text sealed for `label`; texts longer than `max_text` are malformed unread.
    pub fn open(
        &self,
        label: &[u8],
        text: &str,
        max_text: usize,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if text.len() > max_text || label.len() > MAX_LABEL {
            return Err(OpenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| OpenError::Malformed)?;
        let (&version, rest) = raw.split_first().ok_or(OpenError::Malformed)?;
        if version != VERSION {
            return Err(OpenError::Malformed);
        }
        let (&id_len, rest) = rest.split_first().ok_or(OpenError::Malformed)?;
        let id_len = id_len as usize;
        if id_len == 0 || id_len > MAX_KEY_ID || rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let key = self
            .keys
            .iter()
            .find(|k| &*k.id == id)
            .ok_or(OpenError::UnknownKey)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let mut aad = [0u8; 2 + MAX_KEY_ID + MAX_LABEL];
        let aad = fill_aad(&mut aad, &raw[..2 + id_len], label);
        let plain = key
            .cipher
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .map_err(|_| OpenError::BadSeal)?;
        Ok(Zeroizing::new(plain))
    }
}

/// Associated data: the clear header, then the label (empty for opaque tokens, which keeps
/// tokens issued before labels existed valid).
fn fill_aad<'a>(buf: &'a mut [u8], header: &[u8], label: &[u8]) -> &'a [u8] {
    let n = header.len() + label.len();
    buf[..header.len()].copy_from_slice(header);
    buf[header.len()..n].copy_from_slice(label);
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const S2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    fn ring(domain: &str, ctx: &[u8], keys: &[(&str, &[u8])]) -> Sealer {
        Sealer::new(domain, ctx, keys).unwrap()
    }

    #[test]
    fn labels_domains_contexts_and_rotation_separate_texts() {
        let a = ring("pkce", b"r", &[("k1", S1)]);
        let t = a.seal(b"state", b"hello").unwrap();
        assert_eq!(&*a.open(b"state", &t, 1000).unwrap(), b"hello");
        assert_eq!(a.open(b"code", &t, 1000), Err(OpenError::BadSeal));
        let other_domain = ring("oidc-session", b"r", &[("k1", S1)]);
        assert_eq!(
            other_domain.open(b"state", &t, 1000),
            Err(OpenError::BadSeal)
        );
        let other_ctx = ring("pkce", b"r2", &[("k1", S1)]);
        assert_eq!(other_ctx.open(b"state", &t, 1000), Err(OpenError::BadSeal));
        let rotated = ring("pkce", b"r", &[("k2", S2), ("k1", S1)]);
        assert_eq!(&*rotated.open(b"state", &t, 1000).unwrap(), b"hello");
        let t2 = rotated.seal(b"state", b"x").unwrap();
        assert_eq!(a.open(b"state", &t2, 1000), Err(OpenError::UnknownKey));
        assert_eq!(a.open(b"state", &t, t.len() - 1), Err(OpenError::Malformed));
        assert!(t.len() <= sealed_len(5));
        assert!(a.seal(&[b'l'; 65], b"x").is_err());
    }

    #[test]
    fn key_errors_name_the_entry() {
        assert_eq!(Sealer::new("d", b"c", &[]).unwrap_err().index, 0);
        let e = Sealer::new("d", b"c", &[("k", S1), ("k", S2)]).unwrap_err();
        assert_eq!((e.index, e.to_string().contains("twice")), (1, true));
        assert!(Sealer::new("d", b"c", &[("k", b"short")]).is_err());
        assert!(!format!("{:?}", ring("d", b"c", &[("k", S1)])).contains("0123"));
    }

    proptest! {
        #[test]
        fn prop_any_change_is_refused(
            msg in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<prop::sample::Index>(),
        ) {
            let r = ring("pkce", b"r", &[("k1", S1)]);
            let t = r.seal(b"code", &msg).unwrap();
            prop_assert_eq!(&*r.open(b"code", &t, 4096).unwrap(), &msg[..]);
            let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let i = bit.index(raw.len() * 8);
            raw[i / 8] ^= 1 << (i % 8);
            prop_assert!(r.open(b"code", &URL_SAFE_NO_PAD.encode(&raw), 4096).is_err());
        }

        #[test]
        fn prop_garbage_never_panics(s in "\\PC{0,300}") {
            let r = ring("pkce", b"r", &[("k1", S1)]);
            prop_assert!(r.open(b"code", &s, 4096).is_err());
        }
    }
}
