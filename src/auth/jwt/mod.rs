//! Auth mode `jwt`: a bearer JWT verified locally against its issuer's keys (the machine-to-
//! machine case of ooproxy). No redirects, no calls to the provider per request.
//!
//! A request walks: `Authorization: Bearer` (none → not my kind; two headers → 400) → size limit
//! → verified-token cache (hit: skip the signature) → strict parse of header and claims → the
//! provider chosen by the exact `iss` (keys are kept per issuer: a `kid` of one issuer never
//! verifies another's token) → key by `kid` and `alg` (unknown kid: one single-flight refetch per
//! cooldown) → signature → the route's claims policy (time, `typ`, audience, subject, scopes,
//! required claims) → identity with mapped claim headers.
//!
//! Answers: bad token 401 `error="invalid_token"`; missing scope 403 `error="insufficient_scope"`;
//! no keys because the provider is down 503. Bodies never carry the reason; it goes to the
//! metric label and the log.

pub mod cache;
pub mod config;
pub mod keys;
pub mod provider;
#[cfg(test)]
mod tests;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use self::cache::{Verified, VerifiedCache};
pub use self::config::{JwtConfig, OneOrMany, ProviderConfig};
use self::keys::Keys;
use self::provider::Provider;
use self::token::{claim_text, Policy};
use crate::auth::{bearer_token, AuthFilter, Denial, DenyReason, Outcome, RequestView};
use crate::config::Problems;
use crate::context::Warm;
use crate::identity::Identity;
use crate::tokens::jwks::{family_of, parse_alg, VerifyKey};

/// Most keys tried for one token (a token without `kid` against a set of keys).
const MAX_ATTEMPTS: usize = 4;
/// Headers a claim may never be mapped to.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "cookie",
];

const CHALLENGE: &str = r#"Bearer realm="authedge""#;
const INVALID_TOKEN: &str = r#"Bearer realm="authedge", error="invalid_token""#;
const INVALID_REQUEST: &str = r#"Bearer realm="authedge", error="invalid_request""#;

/// The compiled `jwt` filter.
#[derive(Debug)]
pub struct JwtFilter {
    providers: Vec<Provider>,
    /// Accepted algorithms (`None`: what the keys declare).
    algorithms: Option<Vec<Algorithm>>,
    policy: Policy,
    claim_headers: Vec<(String, HeaderName)>,
    header_names: Vec<HeaderName>,
    max_token: usize,
    cache: Arc<VerifiedCache>,
    scope_challenge: HeaderValue,
}

use crate::auth::{secs, unix_now as now};

/// Build a `jwt` filter: parse keys and policy, fetch remote keys (a provider that is down does
/// not fail the build: the filter is not ready and requests get 503 until keys arrive).
pub async fn build(
    cfg: &JwtConfig,
    path: &str,
    warm: &Warm,
) -> Result<Arc<dyn AuthFilter>, Problems> {
    let mut problems = Problems::default();

    let algorithms = match &cfg.algorithms {
        None => None,
        Some(list) => {
            let mut algs = Vec::new();
            for (i, a) in list.iter().enumerate() {
                match parse_alg(a) {
                    Some(alg) => algs.push(alg),
                    None => problems.push(
                        format!("{path}.algorithms[{i}]"),
                        format!("{a:?} is not an accepted algorithm"),
                    ),
                }
            }
            if list.is_empty() {
                problems.push(
                    format!("{path}.algorithms"),
                    "an empty list accepts no token; omit it for the default",
                );
            }
            Some(algs)
        }
    };
    let in_family = |fam: AlgorithmFamily, default: &[Algorithm]| -> Vec<Algorithm> {
        match &algorithms {
            Some(list) => list
                .iter()
                .copied()
                .filter(|a| family_of(*a) == fam)
                .collect(),
            None => default.to_vec(),
        }
    };
    let rsa_algs = {
        let v = in_family(AlgorithmFamily::Rsa, &[Algorithm::RS256]);
        if v.is_empty() {
            vec![Algorithm::RS256]
        } else {
            v
        }
    };

    if cfg.providers.is_empty() {
        problems.push(
            format!("{path}.providers"),
            "at least one provider is needed",
        );
    }
    let hmac_algs = in_family(
        AlgorithmFamily::Hmac,
        &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
    );
    let mut providers: Vec<Provider> = Vec::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        let pp = format!("{path}.providers[{i}]");
        if cfg.providers[..i].iter().any(|q| q.issuer == p.issuer) {
            problems.push(
                format!("{pp}.issuer"),
                format!("issuer {:?} is listed twice", p.issuer),
            );
            continue;
        }
        if let Some(built) = provider::build(p, &pp, &rsa_algs, &hmac_algs, warm, &mut problems) {
            providers.push(built);
        }
    }

    let mut policy = Policy {
        audience: cfg
            .audience
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default(),
        subject: cfg.subject.clone(),
        leeway: secs(cfg.leeway),
        max_lifetime: cfg.max_lifetime.map(secs),
        typ: None,
        scopes: cfg.scopes.clone(),
        claims: cfg
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    policy.set_typ(cfg.typ.as_deref());
    if matches!(&cfg.audience, Some(OneOrMany::Many(v)) if v.is_empty()) {
        problems.push(
            format!("{path}.audience"),
            "an empty list; omit it to skip the audience check",
        );
    }
    if policy.audience.iter().any(String::is_empty) {
        problems.push(
            format!("{path}.audience"),
            "audiences must not be empty strings",
        );
    }
    if cfg.leeway > Duration::from_secs(600) {
        problems.push(format!("{path}.leeway"), "at most 10m");
    }
    for (i, s) in cfg.scopes.iter().enumerate() {
        if s.is_empty() || s.contains(' ') {
            problems.push(
                format!("{path}.scopes[{i}]"),
                "a scope is one non-empty word",
            );
        }
    }
    let scope_challenge = HeaderValue::from_str(&format!(
        r#"Bearer realm="authedge", error="insufficient_scope", scope="{}""#,
        cfg.scopes.join(" ")
    ))
    .unwrap_or(HeaderValue::from_static(
        r#"Bearer realm="authedge", error="insufficient_scope""#,
    ));
    if cfg
        .scopes
        .iter()
        .any(|s| s.contains('"') || s.contains('\\'))
    {
        problems.push(
            format!("{path}.scopes"),
            "scopes must not contain quotes or backslashes",
        );
    }

    let mut claim_headers = Vec::new();
    for (claim, header) in &cfg.claim_headers {
        let hp = format!("{path}.claim_headers.{claim}");
        match HeaderName::from_bytes(header.as_bytes()) {
            Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
                problems.push(hp, format!("{header:?} cannot carry a claim"))
            }
            Ok(h) if claim_headers.iter().any(|(_, x)| *x == h) => {
                problems.push(hp, format!("{header:?} is used twice"))
            }
            Ok(h) => claim_headers.push((claim.clone(), h)),
            Err(_) => problems.push(hp, format!("{header:?} is not a valid header name")),
        }
    }
    if cfg.max_token_bytes == 0 || cfg.max_token_bytes > 64 * 1024 {
        problems.push(
            format!("{path}.max_token_bytes"),
            "must be between 1 and 65536",
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // Fetch remote keys now (not under `check`), and keep them fresh.
    if !warm.dry_run {
        for p in &providers {
            if let Some(c) = p.remote() {
                c.prime().await;
                c.start_refresher(warm);
            }
        }
    }

    // One cache per built filter: a reload starts it empty (one signature check per token
    // again) rather than keeping caches of configs that no longer exist.
    let cache = Arc::new(VerifiedCache::new(cfg.cache_size));
    let header_names = claim_headers.iter().map(|(_, h)| h.clone()).collect();
    Ok(Arc::new(JwtFilter {
        providers,
        algorithms,
        policy,
        claim_headers,
        header_names,
        max_token: cfg.max_token_bytes,
        cache,
        scope_challenge,
    }))
}

/// Whether `key` verifies the JWS: the key must be of the algorithm's family and declare the
/// algorithm (so an HMAC check never runs with a public key's bytes).
pub fn signature_ok(jws: &token::Jws<'_>, key: &VerifyKey) -> bool {
    key.family == family_of(jws.alg)
        && key.algs.contains(&jws.alg)
        && jsonwebtoken::crypto::verify(jws.signature, jws.message.as_bytes(), &key.key, jws.alg)
            .unwrap_or(false)
}

impl JwtFilter {
    fn alg_allowed(&self, alg: Algorithm) -> bool {
        self.algorithms
            .as_ref()
            .map(|l| l.contains(&alg))
            .unwrap_or(true)
    }

    fn denial(&self, reason: DenyReason) -> Outcome {
        let (status, challenge) = match reason {
            DenyReason::MultipleCredentials => (
                StatusCode::BAD_REQUEST,
                Some(HeaderValue::from_static(INVALID_REQUEST)),
            ),
            DenyReason::KeysUnavailable | DenyReason::Internal => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            DenyReason::InsufficientScope => {
                (StatusCode::FORBIDDEN, Some(self.scope_challenge.clone()))
            }
            DenyReason::WrongSubject | DenyReason::ClaimMismatch | DenyReason::Forbidden => {
                (StatusCode::FORBIDDEN, None)
            }
            _ => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(INVALID_TOKEN)),
            ),
        };
        let mut d = Denial::new(status, reason);
        if let Some(c) = challenge {
            d = d.with_header(http::header::WWW_AUTHENTICATE, c);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            d = d.with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        tracing::debug!(reason = reason.as_str(), "jwt denied");
        Outcome::Deny(d)
    }

    /// Apply the route's policy to a verified token.
    fn decide(&self, v: &Verified, now: i64) -> Outcome {
        if let Err(reason) = self.policy.check(&v.claims, v.typ.as_deref(), now) {
            return self.denial(reason);
        }
        Outcome::Allow(v.identity.get_or_init(|| self.identity(v)).clone())
    }

    /// The identity of a verified token (built once per cache entry).
    fn identity(&self, v: &Verified) -> Arc<Identity> {
        let c = &v.claims;
        let mut headers = Vec::with_capacity(self.claim_headers.len());
        for (claim, name) in &self.claim_headers {
            if let Some(val) = c
                .raw
                .get(claim)
                .and_then(claim_text)
                .and_then(|t| HeaderValue::from_str(&t).ok())
            {
                headers.push((name.clone(), val));
            }
        }
        Arc::new(Identity {
            subject: c.sub.as_deref().and_then(|s| HeaderValue::from_str(s).ok()),
            issuer: HeaderValue::from_str(&c.iss).ok(),
            mode: "jwt",
            scopes: Identity::join_scopes(&c.scopes),
            headers,
        })
    }

    /// A cache entry counts only if this filter trusts the provider that verified it, allows its
    /// algorithm, and the key is still published.
    fn trusts(&self, v: &Verified) -> bool {
        let Some(p) = self.providers.iter().find(|p| p.id == v.provider) else {
            return false;
        };
        if !self.alg_allowed(v.alg) {
            return false;
        }
        match (p.keys_for(v.alg), &v.kid) {
            (Some(Keys::Remote(c)), Some(kid)) => {
                c.current().map(|s| s.has_kid(kid)).unwrap_or(false)
            }
            // Without a kid the entry cannot be tied to a published key: a rotated-out key
            // would keep verifying it. Such tokens are checked in full every time.
            (Some(Keys::Remote(_)), None) => false,
            (Some(_), _) => true,
            (None, _) => false,
        }
    }

    /// Parse and verify a token's signature with its issuer's keys.
    async fn verify(&self, token: &str) -> Result<Verified, DenyReason> {
        let token::Parsed { jws: t, claims } = token::parse(token, self.max_token)?;
        if !self.alg_allowed(t.alg) {
            return Err(DenyReason::UnsupportedAlgorithm);
        }
        let p = self
            .providers
            .iter()
            .find(|p| p.issuer == claims.iss)
            .ok_or(DenyReason::WrongIssuer)?;
        let kid = t.kid.as_deref();
        let keys = p.keys_for(t.alg).ok_or(DenyReason::UnknownKey)?;
        let mut set = keys.current();
        let mut refetched = false;
        loop {
            let missing = match &set {
                Some(s) if !s.is_empty() => {
                    let mut tried = 0;
                    for k in s.candidates(kid, t.alg).take(MAX_ATTEMPTS) {
                        tried += 1;
                        if signature_ok(&t, k) {
                            return Ok(Verified {
                                claims,
                                typ: t.typ,
                                alg: t.alg,
                                kid: t.kid.clone(),
                                provider: p.id.clone(),
                                identity: std::sync::OnceLock::new(),
                            });
                        }
                    }
                    if tried > 0 {
                        return Err(DenyReason::BadSignature);
                    }
                    match kid {
                        Some(k) if !s.has_kid(k) => DenyReason::UnknownKey,
                        _ => return Err(DenyReason::UnknownKey),
                    }
                }
                _ => DenyReason::KeysUnavailable,
            };
            match (&keys, refetched) {
                (Keys::Remote(c), false) => {
                    c.refetch_unknown_kid().await;
                    set = c.current();
                    refetched = true;
                }
                _ => return Err(missing),
            }
        }
    }
}

#[async_trait]
impl AuthFilter for JwtFilter {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    async fn check(&self, req: &RequestView<'_>) -> Outcome {
        let token = match bearer_token(req.headers) {
            Ok(None) => return Outcome::NotApplicable,
            Ok(Some(t)) => t,
            Err(DenyReason::MultipleCredentials) => {
                return self.denial(DenyReason::MultipleCredentials)
            }
            Err(r) => return self.denial(r),
        };
        if token.len() > self.max_token {
            return self.denial(DenyReason::TooLarge);
        }
        let now = now();
        if let Some(hit) = self.cache.get(token, now, self.policy.leeway) {
            if self.trusts(&hit) {
                return self.decide(&hit, now);
            }
        }
        match self.verify(token).await {
            Ok(v) => {
                let v = self.cache.put(token, v, now, self.policy.leeway);
                self.decide(&v, now)
            }
            Err(reason) => self.denial(reason),
        }
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(CHALLENGE))
    }

    fn credential_headers(&self) -> &[HeaderName] {
        static AUTH: [HeaderName; 1] = [http::header::AUTHORIZATION];
        &AUTH
    }

    fn identity_headers(&self) -> Vec<HeaderName> {
        self.header_names.clone()
    }

    fn ready(&self) -> bool {
        self.providers.iter().all(Provider::ready)
    }
}
