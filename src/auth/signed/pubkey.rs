//! A verifying key of the `signed` mode with its RS256 form parsed once. jsonwebtoken rebuilds an
//! RSA key (and its Montgomery context) on every verify; here an RSA key is parsed into
//! aws-lc's `ParsedPublicKey` when the filter or the registry cache loads it, which takes about a
//! fifth off every RS256 check (every signed request is a fresh token: no verified-token cache
//! can help). Other algorithms go through jsonwebtoken.

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::tokens::jwks::{family_of, VerifyKey};

/// Largest signature decoded on the stack (RSA 4096 bits).
const MAX_SIG: usize = 512;

pub struct PublicKey {
    pub verify: VerifyKey,
    rs256: Option<ParsedPublicKey>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("verify", &self.verify)
            .field("rs256_parsed", &self.rs256.is_some())
            .finish()
    }
}

impl PublicKey {
    /// `der`: the key as PKCS#1 `RSAPublicKey` or SPKI DER, when it is an RSA key allowed RS256.
    pub fn new(verify: VerifyKey, der: Option<&[u8]>) -> PublicKey {
        let rs256 = der
            .filter(|_| {
                verify.family == AlgorithmFamily::Rsa && verify.algs.contains(&Algorithm::RS256)
            })
            .and_then(|d| ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, d).ok());
        PublicKey { verify, rs256 }
    }

    /// Whether `signature` (base64url) over `message` verifies with this key under `alg`.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &str) -> bool {
        let k = &self.verify;
        if k.family != family_of(alg) || !k.algs.contains(&alg) {
            return false;
        }
        if let (Algorithm::RS256, Some(p)) = (alg, &self.rs256) {
            let mut buf = [0u8; MAX_SIG];
            return match URL_SAFE_NO_PAD.decode_slice(signature, &mut buf) {
                Ok(n) => p.verify_sig(message, &buf[..n]).is_ok(),
                Err(_) => false,
            };
        }
        jsonwebtoken::crypto::verify(signature, message, &k.key, alg).unwrap_or(false)
    }
}

/// PKCS#1 `RSAPublicKey` DER of a modulus and exponent (big-endian magnitudes).
pub fn rsa_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let v: &[u8] = {
            let skip = v.iter().take_while(|b| **b == 0).count();
            &v[skip.min(v.len().saturating_sub(1))..]
        };
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    fn len(out: &mut Vec<u8>, l: usize) {
        if l < 0x80 {
            out.push(l as u8);
        } else if l < 0x100 {
            out.extend_from_slice(&[0x81, l as u8]);
        } else {
            out.extend_from_slice(&[0x82, (l >> 8) as u8, l as u8]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header};

    const KEY: &str = include_str!("../../../conf/signed/svc-a.key");
    const PUB: &str = include_str!("../../../conf/signed/svc-a.pub.pem");

    #[test]
    fn parsed_rs256_agrees_with_jsonwebtoken() {
        let dk = DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap();
        let der = dk.try_get_as_bytes().unwrap().to_vec();
        let vk = || VerifyKey {
            kid: None,
            family: AlgorithmFamily::Rsa,
            algs: vec![Algorithm::RS256],
            key: DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap(),
        };
        let fast = PublicKey::new(vk(), Some(&der));
        assert!(fast.rs256.is_some());
        let slow = PublicKey::new(vk(), None);
        let ek = EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        let t = jsonwebtoken::encode(&h, &serde_json::json!({"a": 1}), &ek).unwrap();
        let (msg, sig) = t.rsplit_once('.').unwrap();
        for k in [&fast, &slow] {
            assert!(k.verifies(Algorithm::RS256, msg.as_bytes(), sig));
            assert!(!k.verifies(Algorithm::RS256, b"other", sig));
            assert!(!k.verifies(Algorithm::RS256, msg.as_bytes(), "AAAA"));
            assert!(!k.verifies(Algorithm::RS256, msg.as_bytes(), "!!"));
            // Not an allowed alg of the key.
            assert!(!k.verifies(Algorithm::PS256, msg.as_bytes(), sig));
            assert!(!k.verifies(Algorithm::ES256, msg.as_bytes(), sig));
        }
    }

    #[test]
    fn der_from_components_parses() {
        let mut n = vec![0xc1u8; 256];
        n[255] = 0x0b;
        let der = rsa_der(&n, &[1, 0, 1]);
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert!(ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).is_ok());
        // Leading zeros are not part of the magnitude.
        let mut z = vec![0u8];
        z.extend_from_slice(&n);
        assert_eq!(rsa_der(&z, &[0, 1, 0, 1]), der);
    }
}
