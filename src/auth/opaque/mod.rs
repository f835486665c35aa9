//! Auth mode `opaque` (replaces ProxyAuth): the edge keeps a list of users per named realm,
//! issues encrypted tokens at a token endpoint (`/auth`), and lets holders through to the routes
//! that allow them, with per-user rate limits and revocation.
//!
//! - [`users`]: user config (inline or users file) and the compiled user tables.
//! - [`password`]: Argon2id hashing and verification, `authedge hash-password`.
//! - [`cache`]: tokens that already opened.
//! - [`rewrite`]: ProxyAuth's `rewrite_plaintext` (users file rewritten with hashes).
//! - [`limits`]: governor limiters and the revocation list, shared across reloads.
//! - [`endpoints`]: `POST /auth`, `/auth/revoke`, the admin revocation endpoint.
//! - [`filter`]: the route filter (bearer token -> identity).
//!
//! Tokens themselves are sealed and opened by [`crate::tokens::aead`].

pub mod cache;
pub mod config;
pub mod endpoints;
pub mod filter;
pub mod limits;
pub mod password;
pub mod rewrite;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::auth::{AuthFilter, Endpoint};
use crate::config::Problems;
use crate::snapshot::header_name;
use crate::snapshot::Warm;
use crate::tokens::aead::{valid_key_id, Keyring, MIN_SECRET};

pub use config::{
    AuthRateLimitConfig, KeyConfig, OpaqueHeadersConfig, OpaqueRealmConfig, OpaqueRouteConfig,
};
pub use limits::RateLimitConfig;
pub use users::{hash_password, hash_password_from_reader, UserConfig};

use limits::{Limiter, Revocations};
use users::{Sourced, UserDb, UserOptions};

/// A built realm, shared by its endpoints and by the filters of routes that name it.
#[derive(Debug)]
pub struct Realm {
    pub name: String,
    pub(crate) keyring: Keyring,
    pub(crate) users: UserDb,
    pub(crate) revocations: Arc<Revocations>,
    pub(crate) user_limit: Option<Arc<Limiter<Arc<str>>>>,
    pub(crate) login_user_limit: limits::LoginLimits,
    pub(crate) login_client_limit: Arc<Limiter<IpAddr>>,
    pub(crate) lifetime: Duration,
    pub(crate) user_header: Option<HeaderName>,
    pub(crate) roles_header: Option<HeaderName>,
    /// `Bearer realm="<name>"`.
    pub(crate) challenge: HeaderValue,
    /// `Bearer realm="<name>", error="invalid_token"`.
    pub(crate) invalid_token: HeaderValue,
    /// Token endpoint outcomes for metrics.
    pub(crate) logins: limits::LoginCounters,
    /// Tokens that already opened (skips the AEAD for repeat requests).
    pub(crate) opened: cache::OpenCache,
    /// Bounds concurrent Argon2 computations (memory and CPU).
    pub(crate) argon_gate: Arc<tokio::sync::Semaphore>,
}

impl Realm {
    /// Verify a password against a PHC string on a blocking thread, at most a few at a time.
    /// `Err` when the work could not run (fail closed: the caller answers 503).
    pub(crate) async fn verify(
        &self,
        hash: String,
        password: Zeroizing<String>,
    ) -> Result<bool, ()> {
        let _permit = self.argon_gate.acquire().await.map_err(|_| ())?;
        tokio::task::spawn_blocking(move || users::verify_password(&hash, password.as_bytes()))
            .await
            .map_err(|_| ())
    }
}

/// Tokens remembered per realm after they opened (about 200 bytes each).
const OPEN_CACHE_TOKENS: usize = 65_536;

/// Endpoints a realm serves: `(exact canonical path, endpoint)`.
pub type RealmEndpoints = Vec<(String, Arc<dyn Endpoint>)>;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn valid_realm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_endpoint_path(p: &str, key: &str, problems: &mut Problems) {
    let canonical = crate::routing::canonical_path(p)
        .map(|c| c == p)
        .unwrap_or(false);
    if !p.starts_with('/') || !canonical || p.contains(['?', '#']) {
        problems.push(key, format!("{p:?} must be an absolute canonical path (no dot segments, doubled slashes or query)"));
    }
}

fn argon_gate(warm: &Warm) -> Arc<tokio::sync::Semaphore> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    warm.shared("opaque:argon2-gate", || tokio::sync::Semaphore::new(n))
}

/// Build a realm and its endpoints. `source` is the main config file (for a relative
/// `users_file`). Every problem names its full key path.
pub async fn build_realm(
    name: &str,
    cfg: &OpaqueRealmConfig,
    path: &str,
    warm: &Warm,
    source: Option<&Path>,
) -> Result<(Arc<Realm>, RealmEndpoints), Problems> {
    let mut problems = Problems::default();
    if !valid_realm_name(name) {
        problems.push(
            path,
            "a realm name is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        );
    }

    // Keys.
    let mut secrets = Vec::with_capacity(cfg.keys.len());
    if cfg.keys.is_empty() {
        problems.push(
            format!("{path}.keys"),
            "at least one key is needed (the first seals, all open)",
        );
    }
    let mut seen = HashSet::new();
    for (i, k) in cfg.keys.iter().enumerate() {
        if !valid_key_id(&k.id) {
            problems.push(
                format!("{path}.keys[{i}].id"),
                "a key id is 1 to 64 characters of A-Z a-z 0-9 . _ -",
            );
        } else if !seen.insert(k.id.as_str()) {
            problems.push(
                format!("{path}.keys[{i}].id"),
                format!("key id {:?} is listed twice", k.id),
            );
        }
        match k.secret.resolve() {
            Ok(s) if s.expose().len() >= MIN_SECRET => secrets.push((k.id.as_str(), s)),
            Ok(_) => problems.push(
                format!("{path}.keys[{i}].secret"),
                format!("secret must be at least {MIN_SECRET} bytes"),
            ),
            Err(m) => problems.push(format!("{path}.keys[{i}].secret"), m),
        }
    }
    let keyring = if problems.is_empty() {
        let pairs: Vec<(&str, &[u8])> = secrets.iter().map(|(id, s)| (*id, s.expose())).collect();
        match Keyring::new(name.as_bytes(), &pairs) {
            Ok(k) => Some(k),
            Err((i, m)) => {
                problems.push(format!("{path}.keys[{i}]"), m);
                None
            }
        }
    } else {
        None
    };

    // Lifetime, paths, headers, admin.
    if cfg.token_lifetime < Duration::from_secs(1)
        || cfg.token_lifetime > Duration::from_secs(30 * 86400)
    {
        problems.push(
            format!("{path}.token_lifetime"),
            "must be between 1s and 30 days",
        );
    }
    check_endpoint_path(
        &cfg.token_path,
        &format!("{path}.token_path"),
        &mut problems,
    );
    check_endpoint_path(
        &cfg.revoke_path,
        &format!("{path}.revoke_path"),
        &mut problems,
    );
    if cfg.revoke_path == cfg.token_path {
        problems.push(format!("{path}.revoke_path"), "must differ from token_path");
    }
    let user_header = header_name(
        &cfg.headers.user,
        &format!("{path}.headers.user"),
        &mut problems,
    );
    let roles_header = header_name(
        &cfg.headers.roles,
        &format!("{path}.headers.roles"),
        &mut problems,
    );
    let mut admin = None;
    if let Some(src) = &cfg.admin_secret {
        check_endpoint_path(
            &cfg.admin_path,
            &format!("{path}.admin_path"),
            &mut problems,
        );
        if cfg.admin_path == cfg.token_path || cfg.admin_path == cfg.revoke_path {
            problems.push(
                format!("{path}.admin_path"),
                "must differ from token_path and revoke_path",
            );
        }
        let hname = header_name(
            &cfg.admin_header,
            &format!("{path}.admin_header"),
            &mut problems,
        );
        if hname.is_none() && cfg.admin_header.is_empty() {
            problems.push(format!("{path}.admin_header"), "must name a header");
        }
        match src.resolve() {
            Ok(s) if s.expose().len() >= 16 => {
                let digest: [u8; 32] = Sha256::digest(s.expose()).into();
                if let Some(h) = hname {
                    admin = Some((h, digest));
                }
            }
            Ok(_) => problems.push(
                format!("{path}.admin_secret"),
                "the admin secret must be at least 16 bytes",
            ),
            Err(m) => problems.push(format!("{path}.admin_secret"), m),
        }
    }

    // Rate limits.
    let user_quota = cfg.rate_limit.as_ref().and_then(|r| match r.quota() {
        Ok(q) => Some((r, q)),
        Err(m) => {
            problems.push(format!("{path}.rate_limit"), m);
            None
        }
    });
    let per_username = cfg.auth_rate_limit.per_username.quota().map_err(|m| {
        problems.push(format!("{path}.auth_rate_limit.per_username"), m);
    });
    let per_username_global = cfg
        .auth_rate_limit
        .per_username_global
        .quota()
        .map_err(|m| {
            problems.push(format!("{path}.auth_rate_limit.per_username_global"), m);
        });
    let per_client = cfg.auth_rate_limit.per_client.quota().map_err(|m| {
        problems.push(format!("{path}.auth_rate_limit.per_client"), m);
    });

    // Users.
    if cfg.rewrite_plaintext && !cfg.allow_plaintext {
        problems.push(
            format!("{path}.rewrite_plaintext"),
            "needs allow_plaintext: true",
        );
    }
    if cfg.rewrite_plaintext && cfg.users_file.is_none() {
        problems.push(
            format!("{path}.rewrite_plaintext"),
            "needs a users_file to rewrite",
        );
    }
    let mut entries: Vec<Sourced> = cfg
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| Sourced {
            path: format!("{path}.users[{i}]"),
            cfg: u.clone(),
        })
        .collect();
    let inline = entries.len();
    let mut file_path = None;
    if let Some(f) = &cfg.users_file {
        let p = users::resolve(f, source);
        match users::read_users_file(&p) {
            Ok(file) => {
                for (i, u) in file.users.into_iter().enumerate() {
                    entries.push(Sourced {
                        path: format!("{path}.users_file({f}).users[{i}]"),
                        cfg: u,
                    });
                }
            }
            Err(m) => problems.push(format!("{path}.users_file"), m),
        }
        file_path = Some(p);
    }
    let opts = UserOptions {
        allow_plaintext: cfg.allow_plaintext,
        allow_weak_hashes: cfg.allow_weak_hashes,
    };
    let (mut hashes, to_hash) = users::validate(&entries, opts, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(keyring), Ok(per_username), Ok(per_username_global), Ok(per_client)) =
        (keyring, per_username, per_username_global, per_client)
    else {
        return Err(problems);
    };

    // Plaintext passwords: hash off the async thread, then maybe rewrite the users file.
    if !to_hash.is_empty() {
        let plain: Vec<Zeroizing<String>> = to_hash
            .iter()
            .map(|&i| Zeroizing::new(entries[i].cfg.password.clone().unwrap_or_default()))
            .collect();
        let hashed = tokio::task::spawn_blocking(move || {
            plain
                .iter()
                .map(|p| users::hash_password(p.as_bytes(), None).map(|h| (p.clone(), h)))
                .collect::<Result<Vec<_>, String>>()
        })
        .await;
        let hashed = match hashed {
            Ok(Ok(h)) => h,
            Ok(Err(m)) => {
                return Err(Problems(vec![crate::config::Problem::new(
                    format!("{path}.users"),
                    m,
                )]))
            }
            Err(_) => {
                return Err(Problems(vec![crate::config::Problem::new(
                    format!("{path}.users"),
                    "password hashing failed",
                )]))
            }
        };
        let mut by_plain: HashMap<String, String> = HashMap::new();
        for (&i, (plain, phc)) in to_hash.iter().zip(&hashed) {
            hashes[i] = Some(phc.clone());
            if i >= inline {
                by_plain.insert(plain.to_string(), phc.clone());
            }
        }
        if cfg.rewrite_plaintext && !by_plain.is_empty() && !warm.dry_run {
            if let Some(fp) = file_path.clone() {
                let realm = name.to_string();
                let res = tokio::task::spawn_blocking(move || {
                    rewrite::rewrite_users_file(&fp, &by_plain)
                })
                .await;
                match res {
                    Ok(Ok(())) => {
                        tracing::info!(realm = %realm, "users file rewritten with password hashes")
                    }
                    Ok(Err(m)) => {
                        tracing::warn!(realm = %realm, error = %m, "users file not rewritten")
                    }
                    Err(_) => tracing::warn!(realm = %realm, "users file not rewritten"),
                }
            }
        }
    }
    let users = users::compile(
        &entries,
        &hashes,
        (user_header.as_ref(), roles_header.as_ref()),
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(problems);
    }

    let user_limit = user_quota
        .map(|(c, q)| limits::shared_limiter::<Arc<str>>(warm, &format!("{name}:user"), c, q));
    let login_user_limit = limits::LoginLimits {
        per_network: limits::shared_limiter(
            warm,
            &format!("{name}:login-user-network"),
            &cfg.auth_rate_limit.per_username,
            per_username,
        ),
        global: limits::shared_limiter(
            warm,
            &format!("{name}:login-user"),
            &cfg.auth_rate_limit.per_username_global,
            per_username_global,
        ),
    };
    let login_client_limit = limits::shared_limiter::<IpAddr>(
        warm,
        &format!("{name}:login-client"),
        &cfg.auth_rate_limit.per_client,
        per_client,
    );
    let challenge = HeaderValue::from_str(&format!("Bearer realm=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("Bearer"));
    let invalid_token =
        HeaderValue::from_str(&format!("Bearer realm=\"{name}\", error=\"invalid_token\""))
            .unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\""));
    let realm = Arc::new(Realm {
        name: name.to_string(),
        keyring,
        users,
        revocations: Revocations::shared(warm, name, cfg.token_lifetime),
        user_limit,
        login_user_limit,
        login_client_limit,
        lifetime: cfg.token_lifetime,
        user_header,
        roles_header,
        challenge,
        invalid_token,
        opened: cache::OpenCache::new(OPEN_CACHE_TOKENS),
        logins: limits::LoginCounters::new(warm, name),
        argon_gate: argon_gate(warm),
    });
    let mut eps: RealmEndpoints = vec![
        (
            cfg.token_path.clone(),
            Arc::new(endpoints::TokenEndpoint::new(realm.clone())),
        ),
        (
            cfg.revoke_path.clone(),
            Arc::new(endpoints::RevokeEndpoint::new(realm.clone())),
        ),
    ];
    if let Some((header, digest)) = admin {
        eps.push((
            cfg.admin_path.clone(),
            Arc::new(endpoints::AdminEndpoint::new(realm.clone(), header, digest)),
        ));
    }
    Ok((realm, eps))
}

/// Build a route's filter against the realms of this config.
pub fn build_filter(
    cfg: &OpaqueRouteConfig,
    realms: &HashMap<String, Arc<Realm>>,
    path: &str,
    _warm: &Warm,
) -> Result<Arc<dyn AuthFilter>, Problems> {
    let mut problems = Problems::default();
    let Some(realm) = realms.get(&cfg.realm) else {
        problems.push(
            format!("{path}.realm"),
            format!("unknown opaque realm {:?}", cfg.realm),
        );
        return Err(problems);
    };
    // A user the realm no longer has is not an error: deleting a user must not block the
    // reload that stops their tokens. It is logged (a typo would otherwise go unnoticed).
    for (i, u) in cfg.users.iter().enumerate() {
        if u.is_empty() {
            problems.push(format!("{path}.users[{i}]"), "a username cannot be empty");
        } else if !realm.users.by_name.contains_key(u) {
            tracing::warn!(key = %format!("{path}.users[{i}]"), realm = %cfg.realm, user = %u, "route names a user the realm does not have");
        }
    }
    for (i, r) in cfg.roles.iter().enumerate() {
        if r.is_empty() {
            problems.push(format!("{path}.roles[{i}]"), "a role cannot be empty");
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(filter::OpaqueFilter::new(
        realm.clone(),
        &cfg.users,
        &cfg.roles,
    )))
}

#[cfg(test)]
mod tests;
