//! Parsing a jwtproxy-style signed-request token and checking its claims, before any signature
//! work: header `kid` required, `alg` from the configured list, claims `iss`, `aud` (a string,
//! never an array), `exp`, `nbf`, `iat`, `jti` all required and of the right JSON type; times
//! within `max_skew` both ways and `exp - iat <= max_ttl`.
//!
//! Duplicate registered claims or header parameters reject the token (serde refuses a field
//! seen twice); header parameters that would bring their own key or change processing (`jwk`,
//! `jku`, `x5u`, `x5c`, `crit`, `b64`, `enc`, `zip`) reject it too.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::DenyReason;
use crate::tokens::jwks::parse_alg;

/// Latest timestamp accepted (9999-12-31T23:59:59Z).
const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// Longest `jti` accepted (it is stored as a nonce).
pub const MAX_NONCE: usize = 256;

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<Value>,
    jwk: Option<IgnoredAny>,
    jku: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
    crit: Option<IgnoredAny>,
    b64: Option<IgnoredAny>,
    enc: Option<IgnoredAny>,
    zip: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    jti: Option<Value>,
}

/// A token split, header and registered claims typed; signature not yet checked.
#[derive(Debug)]
pub struct Token<'a> {
    pub alg: Algorithm,
    pub kid: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// `header.payload`, what the signature covers.
    pub message: &'a str,
    pub signature: &'a str,
    /// The decoded payload (for required-claim checks).
    pub payload: Vec<u8>,
}

fn time(v: Option<Value>) -> Result<i64, DenyReason> {
    match v {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if (0..=MAX_TIMESTAMP).contains(&t) => Ok(t),
            _ => Err(DenyReason::Malformed),
        },
        _ => Err(DenyReason::Malformed),
    }
}

fn string(v: Option<Value>) -> Result<String, DenyReason> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(DenyReason::Malformed),
    }
}

/// Split a compact JWS and type its header and registered claims.
pub fn parse(token: &str, max_len: usize) -> Result<Token<'_>, DenyReason> {
    if token.len() > max_len {
        return Err(DenyReason::TooLarge);
    }
    let mut dots = token.match_indices('.').map(|(i, _)| i);
    let (Some(d1), Some(d2), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(DenyReason::Malformed);
    };
    let (h, p, s) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
    let hb = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| DenyReason::Malformed)?;
    let header: Header = serde_json::from_slice(&hb).map_err(|_| DenyReason::Malformed)?;
    let alg = header
        .alg
        .as_deref()
        .and_then(parse_alg)
        .ok_or(DenyReason::UnsupportedAlgorithm)?;
    let forbidden = header.jwk.is_some()
        || header.jku.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.crit.is_some()
        || header.b64.is_some()
        || header.enc.is_some()
        || header.zip.is_some();
    if forbidden {
        return Err(DenyReason::Malformed);
    }
    let kid = match header.kid {
        Some(Value::String(k)) if !k.is_empty() => k,
        Some(_) => return Err(DenyReason::Malformed),
        None => return Err(DenyReason::UnknownKey),
    };
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| DenyReason::Malformed)?;
    let c: RawClaims = serde_json::from_slice(&payload).map_err(|_| DenyReason::Malformed)?;
    let iss = match c.iss {
        None => return Err(DenyReason::WrongIssuer),
        v => string(v)?,
    };
    let aud = match c.aud {
        Some(Value::String(a)) => a,
        // jwtproxy: a string, never an array.
        _ => return Err(DenyReason::WrongAudience),
    };
    let jti = string(c.jti)?;
    if s.is_empty() || URL_SAFE_NO_PAD.decode(s).is_err() {
        return Err(DenyReason::BadSignature);
    }
    Ok(Token {
        alg,
        kid,
        iss,
        aud,
        exp: time(c.exp)?,
        nbf: time(c.nbf)?,
        iat: time(c.iat)?,
        jti,
        message: &token[..d2],
        signature: s,
        payload,
    })
}

/// An origin as compared: lower-case scheme and host, and the port (the scheme's default when
/// left out). Only `scheme://host[:port]` with an empty or `/` path is an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// The lower-case host.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn parse(s: &str) -> Option<Origin> {
        let u = reqwest::Url::parse(s).ok()?;
        if !matches!(u.scheme(), "http" | "https")
            || !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some()
            || u.fragment().is_some()
            || u.path() != "/"
        {
            return None;
        }
        Some(Origin {
            scheme: u.scheme().to_string(),
            host: u.host_str()?.trim_end_matches('.').to_ascii_lowercase(),
            port: u.port_or_known_default(),
        })
    }
}

/// What a filter requires of a token's claims.
#[derive(Debug, Clone)]
pub struct Rules {
    pub audience: Origin,
    pub max_skew: i64,
    pub max_ttl: i64,
    pub min_nonce: usize,
    pub claims: Vec<(String, Value)>,
}

impl Rules {
    /// Audience, times, lifetime, nonce shape and required claims, in that order.
    pub fn check(&self, t: &Token<'_>, now: i64) -> Result<(), DenyReason> {
        if Origin::parse(&t.aud).as_ref() != Some(&self.audience) {
            return Err(DenyReason::WrongAudience);
        }
        let skew = self.max_skew;
        if now > t.exp.saturating_add(skew) {
            return Err(DenyReason::Expired);
        }
        if t.nbf > now.saturating_add(skew) || t.iat > now.saturating_add(skew) {
            return Err(DenyReason::NotYetValid);
        }
        if t.exp.saturating_sub(t.iat) > self.max_ttl || t.exp < t.iat {
            return Err(DenyReason::TooLongLived);
        }
        if t.jti.len() < self.min_nonce || t.jti.len() > MAX_NONCE {
            return Err(DenyReason::Malformed);
        }
        if !self.claims.is_empty() {
            let all: Map<String, Value> =
                serde_json::from_slice(&t.payload).map_err(|_| DenyReason::Malformed)?;
            for (name, want) in &self.claims {
                if all.get(name) != Some(want) {
                    return Err(DenyReason::ClaimMismatch);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn tok(header: Value, claims: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&claims))
    }

    fn good_claims(now: i64) -> Value {
        serde_json::json!({"iss": "svc-a", "aud": "http://127.0.0.1:8081", "iat": now,
            "nbf": now - 60, "exp": now + 300, "jti": "abcdefghijklmnopqrstuvwxyz012345"})
    }

    fn rules() -> Rules {
        Rules {
            audience: Origin::parse("http://127.0.0.1:8081").unwrap(),
            max_skew: 60,
            max_ttl: 300,
            min_nonce: 16,
            claims: vec![],
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn check(claims: Value) -> Result<(), DenyReason> {
        let t = tok(serde_json::json!({"alg": "RS256", "kid": "k1"}), claims);
        let p = parse(&t, 8192)?;
        rules().check(&p, NOW)
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = good_claims(NOW);
        c[k] = v;
        c
    }

    fn without(k: &str) -> Value {
        let mut c = good_claims(NOW);
        c.as_object_mut().unwrap().remove(k);
        c
    }

    #[test]
    fn good_token_passes() {
        assert_eq!(check(good_claims(NOW)), Ok(()));
    }

    #[test]
    fn every_registered_claim_is_required() {
        assert_eq!(check(without("iss")), Err(DenyReason::WrongIssuer));
        assert_eq!(check(without("aud")), Err(DenyReason::WrongAudience));
        for k in ["exp", "nbf", "iat", "jti"] {
            assert_eq!(check(without(k)), Err(DenyReason::Malformed), "{k}");
        }
        assert_eq!(check(with("exp", "1".into())), Err(DenyReason::Malformed));
        assert_eq!(check(with("iat", 1.5.into())), Err(DenyReason::Malformed));
        assert_eq!(check(with("jti", 7.into())), Err(DenyReason::Malformed));
        assert_eq!(check(with("iss", "".into())), Err(DenyReason::Malformed));
        assert_eq!(
            check(with("jti", "short".into())),
            Err(DenyReason::Malformed)
        );
        let long = "x".repeat(MAX_NONCE + 1);
        assert_eq!(check(with("jti", long.into())), Err(DenyReason::Malformed));
    }

    #[test]
    fn audience_is_an_origin_string() {
        let arr = serde_json::json!(["http://127.0.0.1:8081"]);
        assert_eq!(check(with("aud", arr)), Err(DenyReason::WrongAudience));
        for ok in ["HTTP://127.0.0.1:8081", "http://127.0.0.1:8081/"] {
            assert_eq!(check(with("aud", ok.into())), Ok(()), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8082",
            "https://127.0.0.1:8081",
            "http://127.0.0.1",
            "http://127.0.0.1:8081/path",
            "http://u@127.0.0.1:8081",
            "127.0.0.1:8081",
        ] {
            assert_eq!(
                check(with("aud", bad.into())),
                Err(DenyReason::WrongAudience),
                "{bad}"
            );
        }
        // Default ports may be left out on either side; host case does not matter.
        let r = Rules {
            audience: Origin::parse("https://Svc.Example").unwrap(),
            ..rules()
        };
        let t = tok(
            serde_json::json!({"alg": "RS256", "kid": "k1"}),
            with("aud", "https://svc.example:443".into()),
        );
        assert_eq!(r.check(&parse(&t, 8192).unwrap(), NOW), Ok(()));
    }

    #[test]
    fn skew_edges() {
        // exp: accepted up to exp + skew, refused one second later.
        let mut c = with("exp", (NOW - 60).into());
        c["iat"] = (NOW - 200).into();
        assert_eq!(check(c.clone()), Ok(()));
        c["exp"] = (NOW - 61).into();
        assert_eq!(check(c), Err(DenyReason::Expired));
        // nbf and iat: up to now + skew.
        let mut c = with("nbf", (NOW + 60).into());
        c["iat"] = (NOW + 60).into();
        assert_eq!(check(c), Ok(()));
        assert_eq!(
            check(with("nbf", (NOW + 61).into())),
            Err(DenyReason::NotYetValid)
        );
        assert_eq!(
            check(with("iat", (NOW + 61).into())),
            Err(DenyReason::NotYetValid)
        );
    }

    #[test]
    fn lifetime_edges() {
        let mut c = with("exp", (NOW + 300).into());
        c["iat"] = NOW.into();
        assert_eq!(check(c.clone()), Ok(()));
        c["exp"] = (NOW + 301).into();
        assert_eq!(check(c.clone()), Err(DenyReason::TooLongLived));
        c["exp"] = (NOW - 10).into();
        c["iat"] = NOW.into();
        assert_eq!(check(c), Err(DenyReason::TooLongLived));
    }

    #[test]
    fn header_rules() {
        let c = good_claims(NOW);
        let p = |h: Value| parse(&tok(h, c.clone()), 8192).map(|_| ());
        assert_eq!(
            p(serde_json::json!({"alg": "RS256"})),
            Err(DenyReason::UnknownKey)
        );
        assert_eq!(
            p(serde_json::json!({"alg": "none", "kid": "k"})),
            Err(DenyReason::UnsupportedAlgorithm)
        );
        assert_eq!(
            p(serde_json::json!({"alg": "rs256", "kid": "k"})),
            Err(DenyReason::UnsupportedAlgorithm)
        );
        assert_eq!(
            p(serde_json::json!({"alg": "RS256", "kid": "k", "jku": "http://x"})),
            Err(DenyReason::Malformed)
        );
        assert_eq!(
            p(serde_json::json!({"alg": "RS256", "kid": 5})),
            Err(DenyReason::Malformed)
        );
        // Duplicate registered claims.
        let dup = format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "RS256", "kid": "k"})),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"a","iss":"b"}"#)
        );
        assert_eq!(parse(&dup, 8192).map(|_| ()), Err(DenyReason::Malformed));
        assert_eq!(parse("a.b", 8192).map(|_| ()), Err(DenyReason::Malformed));
        assert_eq!(
            parse("a.b.c.d.e", 8192).map(|_| ()),
            Err(DenyReason::Malformed)
        );
        assert_eq!(parse("xxxx", 2).map(|_| ()), Err(DenyReason::TooLarge));
    }

    #[test]
    fn required_claims_are_exact() {
        let r = Rules {
            claims: vec![("env".into(), "prod".into())],
            ..rules()
        };
        let h = serde_json::json!({"alg": "RS256", "kid": "k1"});
        let ok = tok(h.clone(), with("env", "prod".into()));
        assert_eq!(r.check(&parse(&ok, 8192).unwrap(), NOW), Ok(()));
        for bad in [
            with("env", "Prod".into()),
            with("env", serde_json::json!(["prod"])),
            good_claims(NOW),
        ] {
            let t = tok(h.clone(), bad);
            assert_eq!(
                r.check(&parse(&t, 8192).unwrap(), NOW),
                Err(DenyReason::ClaimMismatch)
            );
        }
    }
}
