//! JWKS: turning JSON Web Keys into verification keys, and the per-provider key cache that the
//! `jwt` mode verifies against.
//!
//! The cache ([`JwksCache`]) holds the last good key set in an `ArcSwapOption` (a request only
//! loads a pointer). It is fetched when config loads, refreshed in the background on the control
//! runtime every `refresh` interval (sooner when the JWKS `Cache-Control: max-age` says so), and
//! refetched when a token names an unknown `kid` — single-flight and at most once per cooldown, so
//! a flood of random kids never becomes a flood of fetches. A failed fetch keeps the last good
//! keys. Every fetch runs on the control runtime (Pingora's workers are other runtimes, and the
//! HTTP client's connections belong to the runtime that made them).
//!
//! Keys that are refused when a JWKS is read: `use` other than `sig`, `key_ops` without
//! `verify`, RSA moduli under 2048 bits, symmetric (`oct`) keys, unknown `kty`/`crv`/`alg`, and
//! `alg: none`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use prometheus::IntCounter;
use serde_json::Value;

/// Largest JWKS or discovery document read.
pub const MAX_DOCUMENT: usize = 512 * 1024;
/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 64;
/// Smallest gap between fetches while no keys are held.
const NO_KEYS_GAP: Duration = Duration::from_secs(1);
/// Deadline of one fetch (discovery + JWKS).
const FETCH_DEADLINE: Duration = Duration::from_secs(8);

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    pub algs: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// The keys of one provider.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl KeySet {
    pub fn new(keys: Vec<VerifyKey>) -> KeySet {
        KeySet { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that may verify a token with this `kid` and `alg`: those with the same kid, or when
    /// the token has no kid (or no key has it), the keys that have no kid at all.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        let by_kid = kid.is_some() && self.keys.iter().any(|k| k.kid.as_deref() == kid);
        self.keys.iter().filter(move |k| {
            let kid_ok = if by_kid {
                k.kid.as_deref() == kid
            } else {
                k.kid.is_none()
            };
            kid_ok && k.algs.contains(&alg)
        })
    }
}

/// The algorithm of a JOSE `alg` name (exact, case-sensitive). `none` is never one.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The family an algorithm belongs to.
pub fn family_of(alg: Algorithm) -> AlgorithmFamily {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        _ => AlgorithmFamily::Rsa,
    }
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {field}"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("{field} is not base64url"))
}

/// Bits of a big-endian unsigned integer.
fn bit_len(n: &[u8]) -> usize {
    let mut i = 0;
    while i < n.len() && n[i] == 0 {
        i += 1;
    }
    match n.get(i) {
        Some(b) => (n.len() - i) * 8 - b.leading_zeros() as usize,
        None => 0,
    }
}

/// An RSA key from its modulus and exponent, refused under [`MIN_RSA_BITS`].
pub fn rsa_key(
    n: &[u8],
    e: &[u8],
    kid: Option<String>,
    algs: Vec<Algorithm>,
) -> Result<VerifyKey, String> {
    // DER integers carry a sign byte; the verifier wants the bare magnitude.
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let (n, e) = (strip(n), strip(e));
    let (n, e) = (n.as_slice(), e.as_slice());
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits (at least {MIN_RSA_BITS} needed)"
        ));
    }
    if e.is_empty() || e.len() > 8 {
        return Err("RSA exponent out of range".into());
    }
    Ok(VerifyKey {
        kid,
        family: AlgorithmFamily::Rsa,
        algs,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

/// Turn one JWK (a JSON object) into a verification key. `rsa_default` lists the algorithms an
/// RSA key without `alg` may verify.
pub fn parse_jwk(jwk: &Value, rsa_default: &[Algorithm]) -> Result<VerifyKey, String> {
    if !jwk.is_object() {
        return Err("not a JSON object".into());
    }
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err("not a signature key (use)".into());
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .map(|a| a.iter().any(|o| o.as_str() == Some("verify")))
            .unwrap_or(false);
        if !verify {
            return Err("key_ops does not allow verify".into());
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("kid is not a string".into()),
    };
    let declared = match jwk.get("alg") {
        None => None,
        Some(Value::String(s)) => {
            Some(parse_alg(s).ok_or_else(|| format!("unsupported alg {s:?}"))?)
        }
        Some(_) => return Err("alg is not a string".into()),
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or("");
    let (family, algs) = match kty {
        "RSA" => (AlgorithmFamily::Rsa, rsa_default.to_vec()),
        "EC" => match crv {
            "P-256" => (AlgorithmFamily::Ec, vec![Algorithm::ES256]),
            "P-384" => (AlgorithmFamily::Ec, vec![Algorithm::ES384]),
            _ => return Err(format!("unsupported EC curve {crv:?}")),
        },
        "OKP" if crv == "Ed25519" => (AlgorithmFamily::Ed, vec![Algorithm::EdDSA]),
        "OKP" => return Err(format!("unsupported OKP curve {crv:?}")),
        "oct" => return Err("symmetric keys are not accepted from a JWKS".into()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let algs = match declared {
        Some(a)
            if family_of(a) != family || (family != AlgorithmFamily::Rsa && !algs.contains(&a)) =>
        {
            return Err(format!("alg {a:?} does not fit the key"))
        }
        Some(a) => vec![a],
        None => algs,
    };
    match family {
        AlgorithmFamily::Rsa => rsa_key(&b64(jwk, "n")?, &b64(jwk, "e")?, kid, algs),
        AlgorithmFamily::Ec => {
            let (x, y) = (b64(jwk, "x")?, b64(jwk, "y")?);
            let len = if crv == "P-256" { 32 } else { 48 };
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(VerifyKey {
                kid,
                family,
                algs,
                key: DecodingKey::from_ec_der(&point),
            })
        }
        _ => {
            let x = b64(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length".into());
            }
            Ok(VerifyKey {
                kid,
                family,
                algs,
                key: DecodingKey::from_ed_der(&x),
            })
        }
    }
}

/// Read a JWKS document (`{"keys": [...]}`); keys that cannot be used are skipped and counted.
pub fn parse_jwks(doc: &[u8], rsa_default: &[Algorithm]) -> Result<(KeySet, usize), String> {
    let v: Value = serde_json::from_slice(doc).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let list = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys array")?;
    let mut keys = Vec::new();
    let mut skipped = 0;
    for k in list {
        match parse_jwk(k, rsa_default) {
            Ok(key) if keys.len() < MAX_KEYS => keys.push(key),
            Ok(_) | Err(_) => skipped += 1,
        }
    }
    Ok((KeySet::new(keys), skipped))
}

/// Where a remote key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `<issuer>/.well-known/openid-configuration`, whose `issuer` must equal this one.
    Discovery {
        issuer: String,
    },
    Uri(String),
}

/// Settings of one remote key cache.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub source: JwksSource,
    /// Metric label (the issuer: from config, bounded).
    pub label: String,
    pub refresh: Duration,
    pub cooldown: Duration,
    pub allow_http: bool,
    /// Algorithms an RSA key without `alg` may verify.
    pub rsa_default: Vec<Algorithm>,
}

impl JwksSettings {
    /// The key under which `Warm` shares this cache across reloads: everything that changes
    /// what is fetched or how.
    pub fn share_key(&self) -> String {
        format!(
            "jwks|{:?}|{:?}|{:?}|{}|{:?}",
            self.source, self.refresh, self.cooldown, self.allow_http, self.rsa_default
        )
    }
}

/// Whether a URL may be fetched: https, or http to a loopback host (or when allowed).
pub fn url_allowed(url: &str, allow_http: bool) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => {
            let host = u
                .host_str()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false);
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url:?} is plain http to a non-loopback host (set allow_http: true to permit)"
                ))
            }
        }
        s => Err(format!("{url:?}: scheme {s:?} is not http(s)")),
    }
}

/// A remote provider's key cache. Shared across reloads through `Warm::shared`.
pub struct JwksCache {
    settings: JwksSettings,
    keys: ArcSwapOption<KeySet>,
    http: reqwest::Client,
    control: tokio::runtime::Handle,
    ok: IntCounter,
    err: IntCounter,
    /// Single-flight gate; holds the time of the last fetch attempt.
    gate: tokio::sync::Mutex<Option<Instant>>,
    /// The jwks_uri found by discovery (cleared when a fetch from it fails).
    discovered: Mutex<Option<String>>,
    /// Delay until the next background refresh.
    next: Mutex<Duration>,
    refresher: AtomicBool,
    /// Failed fetches in a row (for the backoff while no keys are held).
    failures: AtomicU32,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.settings.source)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    pub fn new(settings: JwksSettings, warm: &crate::snapshot::Warm) -> JwksCache {
        let m = &warm.metrics.jwks_fetches;
        JwksCache {
            ok: m.with_label_values(&[&settings.label, "ok"]),
            err: m.with_label_values(&[&settings.label, "error"]),
            next: Mutex::new(settings.refresh),
            settings,
            keys: ArcSwapOption::empty(),
            http: warm.http.clone(),
            control: warm.control.clone(),
            gate: tokio::sync::Mutex::new(None),
            discovered: Mutex::new(None),
            refresher: AtomicBool::new(false),
            failures: AtomicU32::new(0),
        }
    }

    /// The last good key set, if any fetch ever succeeded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    pub fn has_keys(&self) -> bool {
        self.keys
            .load()
            .as_ref()
            .map(|k| !k.is_empty())
            .unwrap_or(false)
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// Fetch when no keys are held yet (config load). Never fails: without keys the filter is
    /// not ready and requests get 503 until a later fetch succeeds.
    pub async fn prime(self: &Arc<Self>) {
        if !self.has_keys() {
            // Filters sharing this cache in one load fetch once.
            self.refetch(NO_KEYS_GAP).await;
        }
    }

    /// Start the background refresher once per cache. It stops when the cache is dropped and
    /// idles while no filter uses the cache.
    pub fn start_refresher(self: &Arc<Self>) {
        if self.refresher.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        self.control.spawn(async move {
            loop {
                let delay = match weak.upgrade() {
                    Some(c) => c.next.lock().map(|d| *d).unwrap_or(c.settings.refresh),
                    None => return,
                };
                tokio::time::sleep(delay).await;
                let Some(c) = weak.upgrade() else { return };
                // Only the `Warm` store and this task hold it: no live filter uses it.
                if Arc::strong_count(&c) <= 2 {
                    continue;
                }
                c.refetch(delay.min(c.settings.cooldown)).await;
            }
        });
    }

    /// A token named a kid this set lacks (or no keys are held): refetch, single-flight, unless
    /// a fetch was attempted within the cooldown. Returns once no fetch is in flight; the caller
    /// then looks at [`current`](Self::current) again.
    pub async fn refetch_unknown_kid(self: &Arc<Self>) {
        // Without any keys every request fails anyway: retry sooner (still at most once a second).
        let gap = if self.has_keys() {
            self.settings.cooldown
        } else {
            self.settings.cooldown.min(NO_KEYS_GAP)
        };
        self.refetch(gap).await;
    }

    async fn refetch(self: &Arc<Self>, min_gap: Duration) {
        let mut last = self.gate.lock().await;
        if let Some(t) = *last {
            if !min_gap.is_zero() && t.elapsed() < min_gap {
                return;
            }
        }
        *last = Some(Instant::now());
        let me = self.clone();
        // Run on the control runtime and wait for it there; if this caller goes away the fetch
        // still completes and stores its result.
        let job = self.control.spawn(async move {
            match tokio::time::timeout(FETCH_DEADLINE, me.fetch()).await {
                Ok(r) => r,
                Err(_) => Err("fetch timed out".to_string()),
            }
        });
        let result = job
            .await
            .unwrap_or_else(|e| Err(format!("fetch task failed: {e}")));
        let delay = match result {
            Ok((set, max_age)) => {
                self.ok.inc();
                self.failures.store(0, Ordering::Relaxed);
                tracing::debug!(provider = %self.settings.label, keys = set.len(), "JWKS fetched");
                self.keys.store(Some(Arc::new(set)));
                let floor = self.settings.cooldown.max(Duration::from_secs(1));
                match max_age {
                    Some(age) => self.settings.refresh.min(age.max(floor)),
                    None => self.settings.refresh,
                }
            }
            Err(e) => {
                self.err.inc();
                let n = self.failures.fetch_add(1, Ordering::Relaxed).min(16);
                tracing::warn!(
                    provider = %self.settings.label,
                    error = %e,
                    "JWKS fetch failed; keeping the last good keys"
                );
                let cap = self
                    .settings
                    .refresh
                    .min(self.settings.cooldown.max(Duration::from_secs(1)));
                if self.has_keys() {
                    cap
                } else {
                    // No keys yet: back off 1 s, 2 s, 4 s ... up to the cooldown.
                    cap.min(Duration::from_secs(1u64 << n))
                }
            }
        };
        if let Ok(mut n) = self.next.lock() {
            *n = delay;
        }
    }

    /// One fetch: discovery when configured (the jwks_uri is remembered), then the JWKS.
    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), String> {
        let uri = match &self.settings.source {
            JwksSource::Uri(u) => u.clone(),
            JwksSource::Discovery { issuer } => {
                let known = self.discovered.lock().ok().and_then(|d| d.clone());
                match known {
                    Some(u) => u,
                    None => {
                        let u = self.discover(issuer).await?;
                        if let Ok(mut d) = self.discovered.lock() {
                            *d = Some(u.clone());
                        }
                        u
                    }
                }
            }
        };
        let result = self.fetch_jwks(&uri).await;
        if result.is_err() {
            if let Ok(mut d) = self.discovered.lock() {
                *d = None;
            }
        }
        result
    }

    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (body, _) = get_bounded(&self.http, &url).await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("discovery document is not JSON: {e}"))?;
        match doc.get("issuer").and_then(Value::as_str) {
            Some(i) if i == issuer => {}
            Some(i) => return Err(format!("discovery names issuer {i:?}, expected {issuer:?}")),
            None => return Err("discovery document has no issuer".into()),
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("discovery document has no jwks_uri")?;
        url_allowed(jwks, self.settings.allow_http)?;
        Ok(jwks.to_string())
    }

    async fn fetch_jwks(&self, uri: &str) -> Result<(KeySet, Option<Duration>), String> {
        let (body, max_age) = get_bounded(&self.http, uri).await?;
        let (set, skipped) = parse_jwks(&body, &self.settings.rsa_default)?;
        if skipped > 0 {
            tracing::debug!(provider = %self.settings.label, skipped, "JWKS keys skipped");
        }
        if set.is_empty() {
            return Err("JWKS holds no usable signature key".into());
        }
        Ok((set, max_age))
    }
}

/// GET a JSON document of at most [`MAX_DOCUMENT`] bytes; returns it with its `max-age`.
async fn get_bounded(
    http: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let mut resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    if resp
        .content_length()
        .map(|l| l as usize > MAX_DOCUMENT)
        .unwrap_or(false)
    {
        return Err(format!(
            "GET {url}: document larger than {MAX_DOCUMENT} bytes"
        ));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` count as 0).
pub fn max_age(cc: &str) -> Option<Duration> {
    for part in cc.split(',') {
        let part = part.trim();
        if part.eq_ignore_ascii_case("no-store") || part.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if let Some((k, v)) = part.split_once('=') {
            if k.trim().eq_ignore_ascii_case("max-age") {
                return v
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn refuses_weak_enc_and_symmetric_keys() {
        let small =
            serde_json::json!({"kty":"RSA","n": URL_SAFE_NO_PAD.encode([0xffu8; 128]),"e":"AQAB"});
        assert!(parse_jwk(&small, &[Algorithm::RS256]).is_err());
        let big =
            serde_json::json!({"kty":"RSA","n": URL_SAFE_NO_PAD.encode([0xffu8; 256]),"e":"AQAB"});
        assert!(parse_jwk(&big, &[Algorithm::RS256]).is_ok());
        let mut enc = big.clone();
        enc["use"] = "enc".into();
        assert!(parse_jwk(&enc, &[Algorithm::RS256]).is_err());
        let mut hs = big.clone();
        hs["alg"] = "HS256".into();
        assert!(parse_jwk(&hs, &[Algorithm::RS256]).is_err());
        let mut none = big;
        none["alg"] = "none".into();
        assert!(parse_jwk(&none, &[Algorithm::RS256]).is_err());
        let oct = serde_json::json!({"kty":"oct","k":"c2VjcmV0"});
        assert!(parse_jwk(&oct, &[]).is_err());
    }

    #[test]
    fn urls() {
        assert!(url_allowed("https://op.example/jwks", false).is_ok());
        assert!(url_allowed("http://127.0.0.1:9/jwks", false).is_ok());
        assert!(url_allowed("http://op.example/jwks", false).is_err());
        assert!(url_allowed("http://op.example/jwks", true).is_ok());
        assert!(url_allowed("file:///etc/passwd", true).is_err());
    }

    /// A tiny JWKS server: counts GETs, answers `body` with `Cache-Control: max-age=600`, or 500
    /// while `down` is set.
    async fn jwks_server(
        body: Arc<Mutex<String>>,
        down: Arc<AtomicBool>,
        hits: Arc<std::sync::atomic::AtomicUsize>,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let (body, down, hits) = (body.clone(), down.clone(), hits.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    hits.fetch_add(1, Ordering::SeqCst);
                    let resp = if down.load(Ordering::SeqCst) {
                        "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_string()
                    } else {
                        let b = body.lock().unwrap().clone();
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                            b.len()
                        )
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/jwks")
    }

    /// Pretend the last fetch attempt was longer ago than the cooldown (no sleeping in tests).
    async fn expire_cooldown(cache: &JwksCache) {
        let mut last = cache.gate.lock().await;
        *last = Instant::now().checked_sub(cache.settings.cooldown + Duration::from_millis(1));
    }

    fn rsa_jwk(kid: &str, fill: u8) -> Value {
        let mut n = vec![fill; 256];
        n[0] = 0xc1;
        serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_kid_refetch_is_single_flight_with_cooldown_and_keeps_keys_on_failure() {
        let body = Arc::new(Mutex::new(
            serde_json::json!({"keys": [rsa_jwk("a", 1)]}).to_string(),
        ));
        let down = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let url = jwks_server(body.clone(), down.clone(), hits.clone()).await;
        let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
        let warm =
            crate::snapshot::Warm::new(tokio::runtime::Handle::current(), metrics, false).unwrap();
        let settings = JwksSettings {
            source: JwksSource::Uri(url),
            label: "test".into(),
            refresh: Duration::from_secs(3600),
            cooldown: Duration::from_secs(30),
            allow_http: false,
            rsa_default: vec![Algorithm::RS256],
        };
        let cache = warm.shared(&settings.share_key(), || {
            JwksCache::new(settings.clone(), &warm)
        });
        cache.prime().await;
        assert!(cache.has_keys());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // The same share key gives the same cache (a reload reuses it).
        let again = warm.shared(&settings.share_key(), || {
            JwksCache::new(settings.clone(), &warm)
        });
        assert!(Arc::ptr_eq(&cache, &again));
        again.prime().await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "priming a cache with keys fetches nothing"
        );

        // Within the cooldown: no fetch at all, however many unknown kids.
        *body.lock().unwrap() =
            serde_json::json!({"keys": [rsa_jwk("a", 1), rsa_jwk("b", 2)]}).to_string();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move { c.refetch_unknown_kid().await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(!cache.current().unwrap().has_kid("b"));

        // After the cooldown: 50 concurrent misses cause exactly one fetch, and all see its keys.
        expire_cooldown(&cache).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move {
                c.refetch_unknown_kid().await;
                c.current().unwrap().has_kid("b")
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap(), "every waiter sees the refetched key");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        // A failed fetch keeps the last good keys.
        down.store(true, Ordering::SeqCst);
        expire_cooldown(&cache).await;
        cache.refetch_unknown_kid().await;
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(cache.current().unwrap().has_kid("b"));
        assert!(cache.has_keys());
        // The refresh delay after a success follows max-age (600 s) bounded by `refresh`.
        down.store(false, Ordering::SeqCst);
        expire_cooldown(&cache).await;
        cache.refetch_unknown_kid().await;
        assert_eq!(*cache.next.lock().unwrap(), Duration::from_secs(600));
    }
}
