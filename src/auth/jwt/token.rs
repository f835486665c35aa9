//! Strict parsing of a compact JWS and its claims, and the per-route claims policy.
//!
//! We parse the header and claims ourselves instead of trusting a library's leniency: duplicate
//! JSON keys, a non-object payload, and claims of the wrong JSON type (`exp` as a string, a float
//! or out of range; `aud` as a number; `iss` as an array) are rejected, never skipped. Header
//! parameters that would bring their own key (`jwk`, `jku`, `x5u`, `x5c`) or change processing
//! (`crit`, `b64`, `enc`, `zip`) reject the token: keys only ever come from configuration.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::auth::DenyReason;
use crate::tokens::jwks::parse_alg;

/// Latest timestamp accepted in `exp`/`nbf`/`iat` (9999-12-31T23:59:59Z).
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Header parameters that reject a token.
const FORBIDDEN_HEADER: &[&str] = &["jwk", "jku", "x5u", "x5c", "crit", "b64", "enc", "zip"];

/// A JSON value whose objects have no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("bad number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom("duplicate key"));
            }
            let Strict(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// Parse JSON as an object without duplicate keys.
fn object_bytes(bytes: &[u8]) -> Result<Map<String, Value>, DenyReason> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(m))) => Ok(m),
        _ => Err(DenyReason::Malformed),
    }
}

/// Decode one base64url segment (canonical, unpadded) and parse it as a JSON object.
fn object(segment: &str) -> Result<Map<String, Value>, DenyReason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| DenyReason::Malformed)?;
    object_bytes(&bytes)
}

/// The claims the edge checks, typed, plus the whole claims object.
#[derive(Debug, Clone)]
pub struct Claims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub scopes: Vec<String>,
    pub raw: Map<String, Value>,
}

/// A compact JWS split, its header parsed; the signature not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`, what the signature covers.
    pub message: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8>,
    pub signature: &'a str,
}

/// A token split and parsed, its signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub jws: Jws<'a>,
    pub claims: Claims,
}

fn opt_string(m: &Map<String, Value>, k: &str) -> Result<Option<String>, DenyReason> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DenyReason::Malformed),
    }
}

fn opt_time(m: &Map<String, Value>, k: &str) -> Result<Option<i64>, DenyReason> {
    match m.get(k) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if (0..=MAX_TIMESTAMP).contains(&t) => Ok(Some(t)),
            _ => Err(DenyReason::Malformed),
        },
        Some(_) => Err(DenyReason::Malformed),
    }
}

fn string_list(v: &Value) -> Result<Vec<String>, DenyReason> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or(DenyReason::Malformed))
            .collect(),
        _ => Err(DenyReason::Malformed),
    }
}

/// Type-check the registered claims and collect scopes.
pub fn claims(raw: Map<String, Value>) -> Result<Claims, DenyReason> {
    let iss = match raw.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(DenyReason::Malformed),
        None => return Err(DenyReason::WrongIssuer),
    };
    let sub = opt_string(&raw, "sub")?;
    let aud = match raw.get("aud") {
        None => Vec::new(),
        Some(v) => string_list(v)?,
    };
    let exp = opt_time(&raw, "exp")?.ok_or(DenyReason::Malformed)?;
    let nbf = opt_time(&raw, "nbf")?;
    let iat = opt_time(&raw, "iat")?;
    let mut scopes = Vec::new();
    match raw.get("scope") {
        None => {}
        Some(Value::String(s)) => {
            scopes.extend(s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned))
        }
        Some(_) => return Err(DenyReason::Malformed),
    }
    if let Some(scp) = raw.get("scp") {
        for s in string_list(scp)? {
            if s.contains(' ') {
                scopes.extend(s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned));
            } else if !s.is_empty() {
                scopes.push(s);
            }
        }
    }
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        scopes,
        raw,
    })
}

/// Split a compact JWS and parse its header. `max_len` is checked before anything else.
pub fn split(token: &str, max_len: usize) -> Result<Jws<'_>, DenyReason> {
    if token.len() > max_len {
        return Err(DenyReason::TooLarge);
    }
    let mut dots = token.match_indices('.').map(|(i, _)| i);
    let (Some(d1), Some(d2), None) = (dots.next(), dots.next(), dots.next()) else {
        // Five segments is JWE; anything but three is not a JWS.
        return Err(DenyReason::Malformed);
    };
    let (h, p, s) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
    if h.is_empty() {
        return Err(DenyReason::Malformed);
    }
    let header = object(h)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => parse_alg(a).ok_or(DenyReason::UnsupportedAlgorithm)?,
        _ => return Err(DenyReason::UnsupportedAlgorithm),
    };
    if FORBIDDEN_HEADER.iter().any(|k| header.contains_key(*k)) {
        return Err(DenyReason::Malformed);
    }
    let kid = opt_string(&header, "kid")?;
    let typ = opt_string(&header, "typ")?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| DenyReason::Malformed)?;
    if s.is_empty() || URL_SAFE_NO_PAD.decode(s).is_err() {
        return Err(DenyReason::BadSignature);
    }
    Ok(Jws {
        alg,
        kid,
        typ,
        message: &token[..d2],
        payload,
        signature: s,
    })
}

/// Split and parse a compact JWS and its claims.
pub fn parse(token: &str, max_len: usize) -> Result<Parsed<'_>, DenyReason> {
    let jws = split(token, max_len)?;
    let raw = object_bytes(&jws.payload)?;
    Ok(Parsed {
        claims: claims(raw)?,
        jws,
    })
}

/// What a route requires of a verified token's claims. Checked on every request, cache hit
/// or not.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub audience: Vec<String>,
    pub subject: Option<String>,
    pub leeway: i64,
    pub max_lifetime: Option<i64>,
    /// Lower case, without `application/`.
    pub typ: Option<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, Value)>,
}

fn normal_typ(t: &str) -> String {
    let t = t.to_ascii_lowercase();
    match t.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => t,
    }
}

impl Policy {
    pub fn set_typ(&mut self, typ: Option<&str>) {
        self.typ = typ.map(normal_typ);
    }

    /// Check time, type, audience, subject, scopes and required claims, in that order.
    pub fn check(&self, c: &Claims, typ: Option<&str>, now: i64) -> Result<(), DenyReason> {
        if now > c.exp.saturating_add(self.leeway) {
            return Err(DenyReason::Expired);
        }
        if let Some(nbf) = c.nbf {
            if nbf > now.saturating_add(self.leeway) {
                return Err(DenyReason::NotYetValid);
            }
        }
        if let Some(iat) = c.iat {
            if iat > now.saturating_add(self.leeway) {
                return Err(DenyReason::NotYetValid);
            }
        }
        if let Some(max) = self.max_lifetime {
            match c.iat {
                Some(iat) if c.exp.saturating_sub(iat) <= max => {}
                _ => return Err(DenyReason::TooLongLived),
            }
        }
        if let Some(want) = &self.typ {
            if typ.map(normal_typ).as_deref() != Some(want.as_str()) {
                return Err(DenyReason::WrongType);
            }
        }
        if !self.audience.is_empty() && !c.aud.iter().any(|a| self.audience.contains(a)) {
            return Err(DenyReason::WrongAudience);
        }
        if let Some(s) = &self.subject {
            if c.sub.as_deref() != Some(s.as_str()) {
                return Err(DenyReason::WrongSubject);
            }
        }
        if !self.scopes.iter().all(|s| c.scopes.contains(s)) {
            return Err(DenyReason::InsufficientScope);
        }
        for (name, want) in &self.claims {
            let ok = match c.raw.get(name) {
                Some(Value::Array(items)) => {
                    items.contains(want)
                        || matches!(want, Value::Array(_)) && c.raw.get(name) == Some(want)
                }
                Some(v) => v == want,
                None => false,
            };
            if !ok {
                return Err(DenyReason::ClaimMismatch);
            }
        }
        Ok(())
    }
}

/// A claim's value as header text: strings as they are, numbers and booleans printed, arrays of
/// those joined with `,`. Objects and nulls give nothing.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => {
            let parts: Option<Vec<String>> = a
                .iter()
                .map(|x| match x {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    other => claim_text(other),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}
