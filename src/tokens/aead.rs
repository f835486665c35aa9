//! Opaque tokens: the edge's own bearer tokens, sealed with the generic [`Sealer`] of
//! [`crate::tokens::seal`] (XChaCha20-Poly1305 under a ring of named keys, domain
//! `opaque-token`, the realm name as context, an empty label).
//!
//! The sealed payload is `issued_at_ms(i64 BE) | expires_at(i64 BE, unix seconds) | token
//! id(16) | user id`. Two instances with the same realm name and keys accept each other's
//! tokens, while a token of one realm never opens in another realm that reuses a secret. The
//! first key of the ring seals; every listed key opens (rotation without logging anyone out).

use zeroize::Zeroizing;

use crate::tokens::seal::Sealer;
pub use crate::tokens::seal::{
    valid_key_id, KeyError, OpenError, SealError, MAX_KEY_ID, MIN_SECRET,
};

const FIXED_PAYLOAD: usize = 8 + 8 + 16;
const DOMAIN: &str = "opaque-token";
/// Opaque tokens bind no label (tokens issued before labels existed stay valid).
const LABEL: &[u8] = b"";
/// Longest user id (bytes) a token can carry.
pub const MAX_USER_ID: usize = 255;
/// Longest token text `open` looks at; anything longer is malformed.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user's stable id (never the username: renames and reorders do not move tokens).
    pub user_id: String,
    /// Unix time of issue, milliseconds.
    pub issued_at_ms: i64,
    /// Unix time of expiry, seconds.
    pub expires_at: i64,
    /// Random id of this token (revocation handle).
    pub token_id: [u8; 16],
}

/// The keys of one realm: the first seals, all open.
#[derive(Debug)]
pub struct Keyring {
    sealer: Sealer,
}

impl Keyring {
    /// Build a ring. `keys` are `(id, secret)`, the sealing key first. Errors name the index.
    pub fn new(context: &[u8], keys: &[(&str, &[u8])]) -> Result<Keyring, KeyError> {
        Ok(Keyring {
            sealer: Sealer::new(DOMAIN, context, keys)?,
        })
    }

    /// The id of the sealing key.
    pub fn sealing_key_id(&self) -> String {
        String::from_utf8_lossy(self.sealer.sealing_key_id()).into_owned()
    }

    /// Seal claims with the first key and a fresh random 192-bit nonce.
    pub fn seal(&self, claims: &Claims) -> Result<String, SealError> {
        let uid = claims.user_id.as_bytes();
        if uid.is_empty() || uid.len() > MAX_USER_ID {
            return Err(SealError("user id length"));
        }
        let mut payload = Zeroizing::new(Vec::with_capacity(FIXED_PAYLOAD + uid.len()));
        payload.extend_from_slice(&claims.issued_at_ms.to_be_bytes());
        payload.extend_from_slice(&claims.expires_at.to_be_bytes());
        payload.extend_from_slice(&claims.token_id);
        payload.extend_from_slice(uid);
        self.sealer.seal(LABEL, &payload)
    }

    /// Open a token: known key id, authentic, well formed, not expired at `now_ms`.
    pub fn open(&self, token: &str, now_ms: i64) -> Result<Claims, OpenError> {
        let payload = self.sealer.open(LABEL, token, MAX_TOKEN_LEN)?;
        let claims = parse_payload(&payload).ok_or(OpenError::Malformed)?;
        if claims.expires_at.saturating_mul(1000) <= now_ms {
            return Err(OpenError::Expired);
        }
        Ok(claims)
    }
}

fn parse_payload(p: &[u8]) -> Option<Claims> {
    if p.len() <= FIXED_PAYLOAD || p.len() > FIXED_PAYLOAD + MAX_USER_ID {
        return None;
    }
    let issued_at_ms = i64::from_be_bytes(p.get(0..8)?.try_into().ok()?);
    let expires_at = i64::from_be_bytes(p.get(8..16)?.try_into().ok()?);
    let token_id: [u8; 16] = p.get(16..32)?.try_into().ok()?;
    let user_id = std::str::from_utf8(p.get(32..)?).ok()?.to_string();
    Some(Claims {
        user_id,
        issued_at_ms,
        expires_at,
        token_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const S2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    fn claims(uid: &str) -> Claims {
        Claims {
            user_id: uid.into(),
            issued_at_ms: 1_000_000,
            expires_at: 4_000_000_000,
            token_id: [7; 16],
        }
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = Keyring::new(b"main", &[("k1", S1)]).unwrap();
        let t = old.seal(&claims("u-1")).unwrap();
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        assert_eq!(old.open(&t, 0).unwrap(), claims("u-1"));
        // Rotated: new key first, old key still listed.
        let rotated = Keyring::new(b"main", &[("k2", S2), ("k1", S1)]).unwrap();
        assert_eq!(rotated.open(&t, 0).unwrap(), claims("u-1"));
        let t2 = rotated.seal(&claims("u-2")).unwrap();
        assert_eq!(old.open(&t2, 0), Err(OpenError::UnknownKey));
        // Old key removed.
        let new = Keyring::new(b"main", &[("k2", S2)]).unwrap();
        assert_eq!(new.open(&t, 0), Err(OpenError::UnknownKey));
        // Another instance with the same keys accepts it.
        let twin = Keyring::new(b"main", &[("k2", S2)]).unwrap();
        assert_eq!(twin.open(&t2, 0).unwrap(), claims("u-2"));
    }

    #[test]
    fn rejects_wrong_key_realm_expiry_and_garbage() {
        let a = Keyring::new(b"main", &[("k1", S1)]).unwrap();
        let t = a.seal(&claims("u")).unwrap();
        let same_id_other_secret = Keyring::new(b"main", &[("k1", S2)]).unwrap();
        assert_eq!(same_id_other_secret.open(&t, 0), Err(OpenError::BadSeal));
        let other_realm = Keyring::new(b"other", &[("k1", S1)]).unwrap();
        assert_eq!(other_realm.open(&t, 0), Err(OpenError::BadSeal));
        assert_eq!(a.open(&t, 4_000_000_000 * 1000), Err(OpenError::Expired));
        assert_eq!(a.open("", 0), Err(OpenError::Malformed));
        assert_eq!(a.open("not base64!", 0), Err(OpenError::Malformed));
        assert!(a.open(&t[..t.len() - 4], 0).is_err());
        assert!(a.open(&t[..t.len() - 1], 0).is_err());
        assert_eq!(a.open(&t[..20], 0), Err(OpenError::Malformed));
        assert_eq!(a.open(&"A".repeat(2000), 0), Err(OpenError::Malformed));
    }

    #[test]
    fn config_errors() {
        assert!(Keyring::new(b"m", &[]).is_err());
        assert_eq!(Keyring::new(b"m", &[("k", b"short")]).unwrap_err().index, 0);
        assert_eq!(
            Keyring::new(b"m", &[("k", S1), ("k", S2)])
                .unwrap_err()
                .index,
            1
        );
        assert!(Keyring::new(b"m", &[("bad id", S1)]).is_err());
        let dbg = format!("{:?}", Keyring::new(b"m", &[("k", S1)]).unwrap());
        assert!(!dbg.contains("0123"));
    }

    fn arb_claims() -> impl Strategy<Value = Claims> {
        (
            "[a-zA-Z0-9_-]{1,64}",
            any::<i64>(),
            1i64..i64::MAX / 1000,
            any::<[u8; 16]>(),
        )
            .prop_map(|(user_id, issued_at_ms, expires_at, token_id)| Claims {
                user_id,
                issued_at_ms,
                expires_at,
                token_id,
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip(c in arb_claims()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            prop_assert_eq!(ring.open(&t, 0).unwrap(), c);
        }

        #[test]
        fn prop_single_bit_flip_fails(c in arb_claims(), bit in any::<prop::sample::Index>()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
            let i = bit.index(raw.len() * 8);
            raw[i / 8] ^= 1 << (i % 8);
            let flipped = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(ring.open(&flipped, 0).is_err());
        }

        #[test]
        fn prop_text_bit_flip_fails(c in arb_claims(), bit in any::<prop::sample::Index>()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let t = ring.seal(&c).unwrap();
            let mut bytes = t.into_bytes();
            let i = bit.index(bytes.len() * 7);
            bytes[i / 7] ^= 1 << (i % 7);
            if let Ok(s) = String::from_utf8(bytes) {
                prop_assert!(ring.open(&s, 0).is_err());
            }
        }

        #[test]
        fn prop_two_seals_differ(c in arb_claims()) {
            let ring = Keyring::new(b"main", &[("k1", S1)]).unwrap();
            let a = ring.seal(&c).unwrap();
            let b = ring.seal(&c).unwrap();
            prop_assert_ne!(a, b);
        }
    }
}
