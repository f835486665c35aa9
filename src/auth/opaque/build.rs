//! Building an opaque realm at config load, one phase per function: keys, paths and admin,
//! limits, users (with plaintext hashing and the optional users-file rewrite), then the realm
//! and its endpoints. Every problem names its full key path.

use crate::auth::endpoint::admin_secret_digest;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::limits::{self, SharedLimit};
use super::users::{self, Sourced, UserOptions};
use super::{
    argon_gate, cache, check_endpoint_path, endpoints, rewrite, valid_realm_name,
    OpaqueRealmConfig, Realm, RealmEndpoints, OPEN_CACHE_TOKENS,
};
use crate::config::{header_name, Problem, Problems};
use crate::context::Context;
use crate::state::{Rate, Store};
use crate::tokens::aead::{valid_key_id, Keyring, MIN_SECRET};

/// Build a realm and its endpoints. `source` is the main config file (for a relative
/// `users_file`). Every problem names its full key path.
pub async fn build_realm(
    name: &str,
    cfg: &OpaqueRealmConfig,
    path: &str,
    warm: &Context,
    state: &Store,
    source: Option<&Path>,
) -> Result<(Arc<Realm>, RealmEndpoints), Problems> {
    let mut problems = Problems::default();
    if !valid_realm_name(name) {
        problems.push(
            path,
            "a realm name is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        );
    }
    let keyring = build_keyring(name, cfg, path, &mut problems);
    let paths = check_paths(cfg, path, &mut problems);
    let quotas = check_limits(cfg, path, &mut problems);
    let (entries, inline, file_path) = gather_users(cfg, path, source, &mut problems);
    let opts = UserOptions {
        allow_plaintext: cfg.allow_plaintext,
        allow_weak_hashes: cfg.allow_weak_hashes,
    };
    let (mut hashes, to_hash) = users::validate(&entries, opts, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(keyring), Some(quotas)) = (keyring, quotas) else {
        return Err(problems);
    };
    if !to_hash.is_empty() {
        let by_plain = hash_plaintext(&entries, &to_hash, inline, &mut hashes, path).await?;
        if cfg.rewrite_plaintext && !by_plain.is_empty() && !warm.dry_run {
            if let Some(fp) = file_path {
                rewrite_users_file(name, fp, by_plain).await;
            }
        }
    }
    let users = users::compile(
        &entries,
        &hashes,
        (paths.user_header.as_ref(), paths.roles_header.as_ref()),
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let realm = assemble(name, cfg, warm, state, keyring, users, quotas, &paths);
    let eps = realm_endpoints(&realm, cfg, paths.admin);
    Ok((realm, eps))
}

/// The realm's keyring: the first key seals, all open.
fn build_keyring(
    name: &str,
    cfg: &OpaqueRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<Keyring> {
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
    if !problems.is_empty() {
        return None;
    }
    let pairs: Vec<(&str, &[u8])> = secrets.iter().map(|(id, s)| (*id, s.expose())).collect();
    match Keyring::new(name.as_bytes(), &pairs) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(format!("{path}.keys[{}]", e.index), e.reason);
            None
        }
    }
}

/// Lifetime, endpoint paths, identity headers and the admin endpoint's header and secret.
struct Paths {
    user_header: Option<HeaderName>,
    roles_header: Option<HeaderName>,
    admin: Option<(HeaderName, [u8; 32])>,
}

fn check_paths(cfg: &OpaqueRealmConfig, path: &str, problems: &mut Problems) -> Paths {
    if cfg.token_lifetime < Duration::from_secs(1)
        || cfg.token_lifetime > Duration::from_secs(30 * 86400)
    {
        problems.push(
            format!("{path}.token_lifetime"),
            "must be between 1s and 30 days",
        );
    }
    check_endpoint_path(&cfg.token_path, &format!("{path}.token_path"), problems);
    check_endpoint_path(&cfg.revoke_path, &format!("{path}.revoke_path"), problems);
    if cfg.revoke_path == cfg.token_path {
        problems.push(format!("{path}.revoke_path"), "must differ from token_path");
    }
    let user_header = header_name(&cfg.headers.user, &format!("{path}.headers.user"), problems);
    let roles_header = header_name(
        &cfg.headers.roles,
        &format!("{path}.headers.roles"),
        problems,
    );
    Paths {
        user_header,
        roles_header,
        admin: check_admin(cfg, path, problems),
    }
}

fn check_admin(
    cfg: &OpaqueRealmConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<(HeaderName, [u8; 32])> {
    let src = cfg.admin_secret.as_ref()?;
    check_endpoint_path(&cfg.admin_path, &format!("{path}.admin_path"), problems);
    if cfg.admin_path == cfg.token_path || cfg.admin_path == cfg.revoke_path {
        problems.push(
            format!("{path}.admin_path"),
            "must differ from token_path and revoke_path",
        );
    }
    let hname = header_name(&cfg.admin_header, &format!("{path}.admin_header"), problems);
    if hname.is_none() && cfg.admin_header.is_empty() {
        problems.push(format!("{path}.admin_header"), "must name a header");
    }
    let digest = admin_secret_digest(src, &format!("{path}.admin_secret"), problems)?;
    hname.map(|h| (h, digest))
}

/// The realm's quotas: per user (optional), per login username, per login client.
struct Quotas {
    user: Option<Rate>,
    per_username: Rate,
    per_username_global: Rate,
    per_client: Rate,
}

fn check_limits(cfg: &OpaqueRealmConfig, path: &str, problems: &mut Problems) -> Option<Quotas> {
    let user = cfg.rate_limit.as_ref().and_then(|r| match r.rate() {
        Ok(q) => Some(q),
        Err(m) => {
            problems.push(format!("{path}.rate_limit"), m);
            None
        }
    });
    let per_username = cfg.auth_rate_limit.per_username.rate().map_err(|m| {
        problems.push(format!("{path}.auth_rate_limit.per_username"), m);
    });
    let per_username_global = cfg.auth_rate_limit.per_username_global.rate().map_err(|m| {
        problems.push(format!("{path}.auth_rate_limit.per_username_global"), m);
    });
    let per_client = cfg.auth_rate_limit.per_client.rate().map_err(|m| {
        problems.push(format!("{path}.auth_rate_limit.per_client"), m);
    });
    Some(Quotas {
        user,
        per_username: per_username.ok()?,
        per_username_global: per_username_global.ok()?,
        per_client: per_client.ok()?,
    })
}

/// Inline users, then the users file's; with the count of inline ones and the file's path.
fn gather_users(
    cfg: &OpaqueRealmConfig,
    path: &str,
    source: Option<&Path>,
    problems: &mut Problems,
) -> (Vec<Sourced>, usize, Option<PathBuf>) {
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
    (entries, inline, file_path)
}

/// Hash plaintext passwords off the async threads; fill `hashes`. Returns the users file's
/// plaintext -> hash pairs (for the rewrite).
async fn hash_plaintext(
    entries: &[Sourced],
    to_hash: &[usize],
    inline: usize,
    hashes: &mut [Option<String>],
    path: &str,
) -> Result<HashMap<String, String>, Problems> {
    let plain: Vec<Zeroizing<String>> = to_hash
        .iter()
        .map(|&i| Zeroizing::new(entries[i].cfg.password.clone().unwrap_or_default()))
        .collect();
    let hashed = tokio::task::spawn_blocking(move || {
        plain
            .iter()
            .map(|p| users::hash_password(p.as_bytes(), None).map(|h| (p.clone(), h)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    let one = |m: String| Problems(vec![Problem::new(format!("{path}.users"), m)]);
    let hashed = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(m)) => return Err(one(m.to_string())),
        Err(_) => return Err(one("password hashing failed".into())),
    };
    let mut by_plain: HashMap<String, String> = HashMap::new();
    for (&i, (plain, phc)) in to_hash.iter().zip(&hashed) {
        hashes[i] = Some(phc.clone());
        if i >= inline {
            by_plain.insert(plain.to_string(), phc.clone());
        }
    }
    Ok(by_plain)
}

/// ProxyAuth's `rewrite_plaintext`: the users file gets the hashes (a failure is only logged).
async fn rewrite_users_file(name: &str, fp: PathBuf, by_plain: HashMap<String, String>) {
    let res =
        tokio::task::spawn_blocking(move || rewrite::rewrite_users_file(&fp, &by_plain)).await;
    match res {
        Ok(Ok(())) => tracing::info!(realm = %name, "users file rewritten with password hashes"),
        Ok(Err(m)) => tracing::warn!(realm = %name, error = %m, "users file not rewritten"),
        Err(_) => tracing::warn!(realm = %name, "users file not rewritten"),
    }
}

/// The realm itself: its limits and revocations live in the shared state.
#[allow(clippy::too_many_arguments)]
fn assemble(
    name: &str,
    cfg: &OpaqueRealmConfig,
    warm: &Context,
    state: &Store,
    keyring: Keyring,
    users: users::UserDb,
    q: Quotas,
    paths: &Paths,
) -> Arc<Realm> {
    let on_err = cfg.on_state_error;
    let user_limit = q
        .user
        .map(|r| SharedLimit::new(state, name, "user", r, on_err));
    // The per-(username, network) budget takes a new key name; "login-user" is now the
    // per-username ceiling over all networks.
    let login_user_limit = limits::LoginLimits {
        per_network: SharedLimit::new(state, name, "login-user-network", q.per_username, on_err),
        global: SharedLimit::new(state, name, "login-user", q.per_username_global, on_err),
    };
    let login_client_limit = SharedLimit::new(state, name, "login-client", q.per_client, on_err);
    let challenge = HeaderValue::from_str(&format!("Bearer realm=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("Bearer"));
    let invalid_token =
        HeaderValue::from_str(&format!("Bearer realm=\"{name}\", error=\"invalid_token\""))
            .unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\""));
    Arc::new(Realm {
        name: name.to_string(),
        keyring,
        users,
        state: state.clone(),
        revocations: state.revocations(name, cfg.token_lifetime),
        user_limit,
        login_user_limit,
        login_client_limit,
        lifetime: cfg.token_lifetime,
        response: cfg.response,
        user_header: paths.user_header.clone(),
        roles_header: paths.roles_header.clone(),
        challenge,
        invalid_token,
        opened: cache::OpenCache::new(OPEN_CACHE_TOKENS),
        logins: limits::LoginCounters::new(warm, name),
        argon_gate: argon_gate(warm),
    })
}

/// Token, revoke and (with an admin secret) admin endpoints.
fn realm_endpoints(
    realm: &Arc<Realm>,
    cfg: &OpaqueRealmConfig,
    admin: Option<(HeaderName, [u8; 32])>,
) -> RealmEndpoints {
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
    eps
}
