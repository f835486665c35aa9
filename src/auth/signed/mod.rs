//! Auth mode `signed`: verify service-to-service requests signed by a jwtproxy-style signer
//! (quay jwtproxy's verifier), with replay protection.
//!
//! A request walks: `Authorization: Bearer <JWS>` (or the Basic password when `allow_basic`;
//! none → not my kind; two headers → 400) → parse (header `kid`, configured `alg`, typed
//! registered claims) → claims (audience origin, times within `max_skew`, `exp - iat <=
//! max_ttl`, `jti` shape, required claims) → key of (`iss`, `kid`) from the key server →
//! signature → nonce. Stricter than jwtproxy, which records the nonce before the signature: a
//! nonce is only recorded once the signature verified, so unsigned tokens cannot burn nonces.
//! A nonce is kept until `exp + max_skew`; a second use is 401 `replay`; a nonce store that
//! fails is 503.
//!
//! Identity: `X-Auth-Subject` = `iss`, `X-Auth-Mode: signed`. `Authorization` is consumed
//! (removed unless the route keeps it).

pub mod config;
pub mod jwtproxy;
pub mod keys;
pub mod keyserver;
pub mod pubkey;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

pub use self::config::{KeyServerConfig, SignedConfig};
use self::keys::Registry;
use self::pubkey::PublicKey;
use self::token::{Origin, Rules, Token};
use crate::auth::{bearer_token, AuthFilter, Denial, DenyReason, Outcome, RequestView};
use crate::config::Problems;
use crate::context::Warm;
use crate::identity::Identity;
use crate::state::Store;
use crate::tokens::jwks::{family_of, parse_alg};

const CHALLENGE: &str = r#"Bearer realm="authedge""#;
const INVALID_TOKEN: &str = r#"Bearer realm="authedge", error="invalid_token""#;
const INVALID_REQUEST: &str = r#"Bearer realm="authedge", error="invalid_request""#;

/// Where the filter's keys come from, built.
#[derive(Debug)]
pub enum KeySource {
    Preshared {
        issuer: String,
        key_id: String,
        key: Arc<PublicKey>,
    },
    Registry(Arc<Registry>),
}

/// The compiled `signed` filter.
#[derive(Debug)]
pub struct SignedFilter {
    rules: Rules,
    algs: Vec<Algorithm>,
    keys: KeySource,
    nonces: Store,
    allow_basic: bool,
    max_token: usize,
}

use crate::auth::{secs, unix_now as now};

/// Build a `signed` filter: check the audience, algorithms and claims, load a preshared key or
/// set up the registry client. Every problem is reported with its key path.
pub fn build(
    cfg: &SignedConfig,
    path: &str,
    warm: &Warm,
    state: &Store,
) -> Result<Arc<dyn AuthFilter>, Problems> {
    let mut problems = Problems::default();
    let audience = Origin::parse(&cfg.audience);
    if audience.is_none() {
        problems.push(
            format!("{path}.audience"),
            format!(
                "{:?} is not an origin (scheme://host[:port], http or https, no path)",
                cfg.audience
            ),
        );
    }
    let algs = check_algs(cfg, path, &mut problems);
    if cfg.max_ttl.is_zero() {
        problems.push(format!("{path}.max_ttl"), "must be more than 0s");
    }
    if cfg.min_nonce_length > token::MAX_NONCE {
        problems.push(
            format!("{path}.min_nonce_length"),
            format!("at most {}", token::MAX_NONCE),
        );
    }
    let keys = key_source(cfg, path, &algs, warm, &mut problems);
    let claims: Vec<(String, serde_json::Value)> = cfg
        .claims
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (Some(audience), Some(keys), true) = (audience, keys, problems.is_empty()) else {
        return Err(problems);
    };
    Ok(Arc::new(SignedFilter {
        rules: Rules {
            audience,
            max_skew: secs(cfg.max_skew),
            max_ttl: secs(cfg.max_ttl),
            min_nonce: cfg.min_nonce_length,
            claims,
        },
        algs,
        keys,
        nonces: state.clone(),
        allow_basic: cfg.allow_basic,
        max_token: cfg.max_token_bytes,
    }))
}

/// The configured `algs`: asymmetric ones only, at least one.
fn check_algs(cfg: &SignedConfig, path: &str, problems: &mut Problems) -> Vec<Algorithm> {
    let mut algs = Vec::new();
    for (i, a) in cfg.algs.iter().enumerate() {
        match parse_alg(a) {
            Some(alg) if family_of(alg) != AlgorithmFamily::Hmac => algs.push(alg),
            Some(_) => problems.push(
                format!("{path}.algs[{i}]"),
                format!("{a}: HMAC algorithms are not used for signed requests"),
            ),
            None => problems.push(
                format!("{path}.algs[{i}]"),
                format!("unknown algorithm {a:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"),
            ),
        }
    }
    if cfg.algs.is_empty() {
        problems.push(format!("{path}.algs"), "at least one algorithm is needed");
    }
    algs
}

/// `key_server`: exactly one of a preshared key or a key registry.
fn key_source(
    cfg: &SignedConfig,
    path: &str,
    algs: &[Algorithm],
    warm: &Warm,
    problems: &mut Problems,
) -> Option<KeySource> {
    let ks = &cfg.key_server;
    match (&ks.preshared, &ks.keyregistry) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(
                format!("{path}.key_server"),
                "give exactly one of preshared or keyregistry",
            );
            None
        }
        (Some(p), None) => {
            let kp = format!("{path}.key_server.preshared");
            if p.issuer.is_empty() {
                problems.push(format!("{kp}.issuer"), "must not be empty");
            }
            if p.key_id.is_empty() {
                problems.push(format!("{kp}.key_id"), "must not be empty");
            }
            match keys::pem_key(&warm.resolve_path(&p.public_key_file), algs) {
                Ok(k) => {
                    let der = k.key.try_get_as_bytes().ok().map(<[u8]>::to_vec);
                    Some(KeySource::Preshared {
                        issuer: p.issuer.clone(),
                        key_id: p.key_id.clone(),
                        key: Arc::new(PublicKey::new(k, der.as_deref())),
                    })
                }
                // No usable algorithm is already a problem; the key cannot be judged.
                Err(_) if algs.is_empty() => None,
                Err(e) => {
                    problems.push(format!("{kp}.public_key_file"), e);
                    None
                }
            }
        }
        (None, Some(r)) => {
            let kp = format!("{path}.key_server.keyregistry");
            if let Err(e) = crate::tokens::jwks::url_allowed(&r.registry, r.allow_http) {
                problems.push(format!("{kp}.registry"), e);
                return None;
            }
            let share = format!(
                "signed-registry|{}|{:?}|{:?}|{}|{:?}",
                r.registry, r.cache.duration, r.unknown_kid_cooldown, r.max_keys, algs
            );
            let reg = warm.shared(&share, || {
                Registry::new(
                    &r.registry,
                    r.cache.duration,
                    r.unknown_kid_cooldown,
                    r.max_keys,
                    algs.to_vec(),
                    warm.outbound.clone(),
                )
            });
            Some(KeySource::Registry(reg))
        }
    }
}

/// The password of an `Authorization: Basic` header, when there is exactly one such header.
fn basic_password(headers: &http::HeaderMap) -> Result<Option<String>, DenyReason> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let raw = v.as_bytes();
    if raw.len() < 6 || !raw[..6].eq_ignore_ascii_case(b"basic ") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(raw[6..].trim_ascii())
        .map_err(|_| DenyReason::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| DenyReason::Malformed)?;
    match text.split_once(':') {
        Some((_, pw)) if !pw.is_empty() => Ok(Some(pw.to_string())),
        _ => Err(DenyReason::Malformed),
    }
}

impl SignedFilter {
    fn denial(&self, reason: DenyReason) -> Outcome {
        let (status, challenge) = match reason {
            DenyReason::MultipleCredentials => (StatusCode::BAD_REQUEST, Some(INVALID_REQUEST)),
            DenyReason::KeysUnavailable | DenyReason::StateUnavailable | DenyReason::Internal => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            _ => (StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN)),
        };
        let mut d = Denial::new(status, reason);
        if let Some(c) = challenge {
            d = d.with_header(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            d = d.with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        tracing::debug!(reason = reason.as_str(), "signed denied");
        Outcome::Deny(d)
    }

    /// The key that must have signed this token.
    async fn key_for(&self, t: &Token<'_>) -> Result<Arc<PublicKey>, DenyReason> {
        match &self.keys {
            KeySource::Preshared {
                issuer,
                key_id,
                key,
            } => {
                if t.iss != *issuer {
                    Err(DenyReason::WrongIssuer)
                } else if t.kid != *key_id {
                    Err(DenyReason::UnknownKey)
                } else {
                    Ok(key.clone())
                }
            }
            KeySource::Registry(r) => r.key(&t.iss, &t.kid).await,
        }
    }

    /// Parse → claims → signature → nonce. The nonce is recorded last, only for a token whose
    /// signature verified.
    async fn verify(&self, raw: &str, now: i64) -> Result<Arc<Identity>, DenyReason> {
        let t = token::parse(raw, self.max_token)?;
        if !self.algs.contains(&t.alg) {
            return Err(DenyReason::UnsupportedAlgorithm);
        }
        self.rules.check(&t, now)?;
        let key = self.key_for(&t).await?;
        if !key.verifies(t.alg, t.message.as_bytes(), t.signature) {
            return Err(DenyReason::BadSignature);
        }
        let until = t.exp.saturating_add(self.rules.max_skew);
        let ttl = Duration::from_secs(u64::try_from(until.saturating_sub(now)).unwrap_or(0).max(1));
        let nonce = format!("signed|{}|{}", t.iss, t.jti);
        match self.nonces.nonce_once(&nonce, ttl).await {
            Ok(true) => {}
            Ok(false) => return Err(DenyReason::Replay),
            Err(e) => {
                tracing::warn!(error = %e, "nonce store failed; request refused");
                return Err(DenyReason::StateUnavailable);
            }
        }
        Ok(Arc::new(Identity {
            subject: HeaderValue::from_str(&t.iss).ok(),
            issuer: None,
            mode: "signed",
            scopes: None,
            headers: Vec::new(),
        }))
    }
}

#[async_trait]
impl AuthFilter for SignedFilter {
    fn kind(&self) -> &'static str {
        "signed"
    }

    async fn check(&self, req: &RequestView<'_>) -> Outcome {
        let basic;
        let raw = match bearer_token(req.headers) {
            Ok(Some(t)) => t,
            Ok(None) if self.allow_basic => match basic_password(req.headers) {
                Ok(Some(pw)) => {
                    basic = pw;
                    basic.as_str()
                }
                Ok(None) => return Outcome::NotApplicable,
                Err(r) => return self.denial(r),
            },
            Ok(None) => return Outcome::NotApplicable,
            Err(r) => return self.denial(r),
        };
        match self.verify(raw, now()).await {
            Ok(id) => Outcome::Allow(id),
            Err(r) => self.denial(r),
        }
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(CHALLENGE))
    }

    fn credential_headers(&self) -> &[HeaderName] {
        static AUTH: [HeaderName; 1] = [http::header::AUTHORIZATION];
        &AUTH
    }
}
