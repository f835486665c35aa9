//! JWKS: turning JSON Web Keys into verification keys, and the per-provider key cache that the
//! `jwt` mode verifies against.
//!
//! The cache ([`JwksCache`]) holds the last good key set in an `ArcSwapOption` (a request only
//! loads a pointer). It is fetched when config loads, refreshed in the background on the control
//! runtime every `refresh` interval (sooner when the JWKS `Cache-Control: max-age` says so), and
//! refetched when a token names an unknown `kid` — single-flight and at most once per cooldown, so
//! a flood of random kids never becomes a flood of fetches. A failed fetch keeps the last good
//! keys. Every fetch runs on the outbound runtime through [`crate::outbound`] (Pingora's workers are
//! other runtimes, and the HTTP client's connections belong to the runtime that made them).
//!
//! Keys that are refused when a JWKS is read: `use` other than `sig`, `key_ops` without
//! `verify`, RSA moduli under 2048 bits, symmetric (`oct`) keys, unknown `kty`/`crv`/`alg`, and
//! `alg: none`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use jsonwebtoken::Algorithm;
use prometheus::IntCounter;
use serde_json::Value;

use crate::outbound::{Call, Outbound, OutboundError};

mod keys;
#[cfg(test)]
pub(crate) mod tests;

pub use self::keys::{
    family_of, parse_alg, parse_jwk, parse_jwks, rsa_key, JwkError, KeySet, VerifyKey, MIN_RSA_BITS,
};

/// Largest JWKS or discovery document read.
pub const MAX_DOCUMENT: usize = 512 * 1024;
/// Smallest gap between fetches while no keys are held.
const NO_KEYS_GAP: Duration = Duration::from_secs(1);
/// Deadline of one fetch (discovery + JWKS).
const FETCH_DEADLINE: Duration = Duration::from_secs(8);

/// What the single-flight gate remembers.
#[derive(Debug, Default)]
struct Gate {
    last_attempt: Option<Instant>,
    last_unknown_kid: Option<Instant>,
}

/// Why a fetch is asked for: each has its own rule for skipping it.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// Config load with no keys held: filters sharing this cache in one load fetch once.
    Prime,
    /// The background refresh: skipped when any fetch ran within this gap.
    Scheduled(Duration),
    /// A token named a kid the set lacks.
    UnknownKid,
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

/// A key source URL that may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?} is not a URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{0:?} is plain http to a non-loopback host (set allow_http: true to permit)")]
    PlainHttp(String),
    #[error("{url:?}: scheme {scheme:?} is not http(s)")]
    Scheme { url: String, scheme: String },
}

/// Why a key fetch failed (the last good keys stay in use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("GET {0}")]
    Outbound(#[from] OutboundError),
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Jwk(#[from] JwkError),
    #[error("JWKS holds no usable signature key")]
    NoUsableKey,
    #[error("fetch timed out")]
    Timeout,
    #[error("fetch task failed: {0}")]
    Task(String),
}

/// Whether a URL may be fetched: https, or http to a loopback host (or when allowed).
pub fn url_allowed(url: &str, allow_http: bool) -> Result<(), UrlError> {
    let u = reqwest::Url::parse(url).map_err(|e| UrlError::Invalid {
        url: url.into(),
        reason: e.to_string(),
    })?;
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
                Err(UrlError::PlainHttp(url.into()))
            }
        }
        s => Err(UrlError::Scheme {
            url: url.into(),
            scheme: s.into(),
        }),
    }
}

/// A remote provider's key cache. Shared across reloads through `Warm::shared`.
pub struct JwksCache {
    settings: JwksSettings,
    keys: ArcSwapOption<KeySet>,
    outbound: Outbound,
    ok: IntCounter,
    err: IntCounter,
    /// Single-flight gate: the times of the last fetch attempt (any kind) and of the last
    /// refetch for an unknown kid (the only one the cooldown counts from).
    gate: tokio::sync::Mutex<Gate>,
    /// Completed fetches; a waiter that sees it change while queued at the gate returns, since
    /// the fetch it waited for has just run.
    fetches: AtomicU64,
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
    pub fn new(settings: JwksSettings, warm: &crate::context::Warm) -> JwksCache {
        let m = &warm.metrics.jwks_fetches;
        JwksCache {
            ok: m.with_label_values(&[&settings.label, "ok"]),
            err: m.with_label_values(&[&settings.label, "error"]),
            next: Mutex::new(settings.refresh),
            settings,
            keys: ArcSwapOption::empty(),
            outbound: warm.outbound.clone(),
            gate: tokio::sync::Mutex::new(Gate::default()),
            fetches: AtomicU64::new(0),
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
            self.refetch(Why::Prime).await;
        }
    }

    /// Start the background refresher once per cache, tied to the cache's entry in `ctx`: it
    /// stops when the last filter using the cache is gone.
    pub fn start_refresher(self: &Arc<Self>, ctx: &crate::context::Context) {
        if self.refresher.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        ctx.spawn_for(&self.settings.share_key(), async move {
            loop {
                let delay = match weak.upgrade() {
                    Some(c) => c.next.lock().map(|d| *d).unwrap_or(c.settings.refresh),
                    None => return,
                };
                tokio::time::sleep(delay).await;
                let Some(c) = weak.upgrade() else { return };
                c.refetch(Why::Scheduled(delay.min(c.settings.cooldown)))
                    .await;
            }
        });
    }

    /// A token named a kid this set lacks (or no keys are held): refetch, single-flight, unless
    /// an unknown-kid refetch ran within the cooldown. The startup fetch and the scheduled
    /// refresh do not count, so the first token signed with a key rotated in right after start
    /// is verified at once; only a flood of unknown kids is throttled. Returns once no fetch is
    /// in flight; the caller then looks at [`current`](Self::current) again.
    pub async fn refetch_unknown_kid(self: &Arc<Self>) {
        self.refetch(Why::UnknownKid).await;
    }

    async fn refetch(self: &Arc<Self>, why: Why) {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut gate = self.gate.lock().await;
        if self.fetches.load(Ordering::Acquire) != seen {
            // A fetch completed while this caller queued: it is the one it waited for.
            return;
        }
        let within = |t: Option<Instant>, gap: Duration| {
            !gap.is_zero() && t.is_some_and(|t| t.elapsed() < gap)
        };
        let skip = match why {
            Why::Prime => within(gate.last_attempt, NO_KEYS_GAP),
            Why::Scheduled(gap) => within(gate.last_attempt, gap),
            // Without any keys every request fails anyway: retry sooner (still at most once a
            // second, counted from any attempt).
            Why::UnknownKid if !self.has_keys() => {
                within(gate.last_attempt, self.settings.cooldown.min(NO_KEYS_GAP))
            }
            Why::UnknownKid => within(gate.last_unknown_kid, self.settings.cooldown),
        };
        if skip {
            return;
        }
        let now = Instant::now();
        gate.last_attempt = Some(now);
        if matches!(why, Why::UnknownKid) {
            gate.last_unknown_kid = Some(now);
        }
        let me = self.clone();
        // Run on the outbound runtime and wait for it there; if this caller goes away the fetch
        // still completes and stores its result.
        let job = self.outbound.runtime().spawn(async move {
            match tokio::time::timeout(FETCH_DEADLINE, me.fetch()).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Timeout),
            }
        });
        let result = job
            .await
            .unwrap_or_else(|e| Err(FetchError::Task(e.to_string())));
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
        self.fetches.fetch_add(1, Ordering::Release);
        drop(gate);
    }

    /// One fetch: discovery when configured (the jwks_uri is remembered), then the JWKS.
    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
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

    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (body, _) = get_bounded(&self.outbound, &url).await?;
        let bad = |m: String| FetchError::Discovery(m);
        let doc: Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
        match doc.get("issuer").and_then(Value::as_str) {
            Some(i) if i == issuer => {}
            Some(i) => return Err(bad(format!("names issuer {i:?}, expected {issuer:?}"))),
            None => return Err(bad("no issuer".into())),
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no jwks_uri".into()))?;
        url_allowed(jwks, self.settings.allow_http)?;
        Ok(jwks.to_string())
    }

    async fn fetch_jwks(&self, uri: &str) -> Result<(KeySet, Option<Duration>), FetchError> {
        let (body, max_age) = get_bounded(&self.outbound, uri).await?;
        let (set, skipped) = parse_jwks(&body, &self.settings.rsa_default)?;
        if skipped > 0 {
            tracing::debug!(provider = %self.settings.label, skipped, "JWKS keys skipped");
        }
        if set.is_empty() {
            return Err(FetchError::NoUsableKey);
        }
        Ok((set, max_age))
    }
}

/// GET a JSON document of at most [`MAX_DOCUMENT`] bytes; returns it with its `max-age`.
async fn get_bounded(
    outbound: &Outbound,
    url: &str,
) -> Result<(Bytes, Option<Duration>), FetchError> {
    let call = Call::get(url)
        .header(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        )
        .max_body(MAX_DOCUMENT)
        .deadline(FETCH_DEADLINE)
        .follow_redirects(true);
    let reply = outbound.send(call).await?;
    if !reply.status.is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: reply.status.as_u16(),
        });
    }
    let max_age = reply
        .headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    Ok((reply.body, max_age))
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
