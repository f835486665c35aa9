//! The realm of the ProxyAuth drop-in: `secret` and `token_expiry_seconds` checked, `users[]`
//! and `ratelimit` translated into the JSON of the one `opaque` realm.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::files::{located, AppConfig, RateLimit, User};
use super::REALM;
use crate::config::Problems;

/// Shortest accepted `secret` (the opaque mode's key minimum).
const MIN_SECRET: usize = 32;
/// ProxyAuth's fixed replenish period of the `/auth` limit.
const AUTH_PERIOD_SECS: f64 = 10.0;
/// ProxyAuth's `requests_per_second`, `burst`, `block_delay`, `auth` when `ratelimit` is absent.
const DEFAULT_LIMITS: (u64, u64, u64, u64) = (1000, 10, 500, 5);

/// The realm's JSON, and the names of its users (the only names a route's `username` can let in).
/// `c` names `config.json` in problems and notes.
pub(super) fn realm<'a>(
    app: &'a AppConfig,
    c: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> (Value, BTreeSet<&'a str>) {
    check_key_and_lifetime(app, c, problems);
    let (users, names) = users(&app.users, c, problems, notes);
    let (rate_limit, auth_rate_limit) = rate_limits(app.ratelimit.as_ref(), c, problems, notes);
    let mut realm = json!({
        "keys": [ { "id": REALM, "secret": { "value": app.secret } } ],
        "token_lifetime": format!("{}s", app.token_expiry_seconds.max(1)),
        "token_path": "/auth",
        "allow_plaintext": true,
        "response": "proxyauth",
        "rate_limit": rate_limit,
        "users": users,
    });
    if let Some(auth) = auth_rate_limit {
        realm["auth_rate_limit"] = auth;
    }
    (realm, names)
}

/// `secret` long enough for a token key, `token_expiry_seconds` above 0.
fn check_key_and_lifetime(app: &AppConfig, c: &str, problems: &mut Problems) {
    if app.secret.len() < MIN_SECRET {
        problems.push(
            located(c, "secret"),
            format!(
                "{} bytes; authedge needs at least {MIN_SECRET} (ProxyAuth's advice: over 64 characters). \
                 ProxyAuth's tokens do not carry over anyway, so a new secret costs nothing",
                app.secret.len()
            ),
        );
    }
    if app.token_expiry_seconds <= 0 {
        problems.push(
            located(c, "token_expiry_seconds"),
            "must be above 0 (every token would be expired)",
        );
    }
}

/// The users' JSON and their names; a note names the users whose password is plaintext.
fn users<'a>(
    list: &'a [User],
    c: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> (Vec<Value>, BTreeSet<&'a str>) {
    let mut users = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut plaintext = Vec::new();
    for (i, u) in list.iter().enumerate() {
        check_name(&mut names, i, u, c, problems);
        let (user, plain) = user(i, u, c, problems);
        if plain {
            plaintext.push(u.username.clone());
        }
        users.push(user);
    }
    if !plaintext.is_empty() {
        notes.push(format!(
            "{c}:users: plaintext passwords of {} hashed with Argon2id in memory at load; ProxyAuth \
             would rewrite {c} with the hashes, authedge leaves the file alone: replace each with \
             the output of `authedge hash-password` to skip the hashing",
            plaintext.join(", ")
        ));
    }
    (users, names.into_keys().collect())
}

/// `users[i].username`: not empty, no surrounding spaces, no earlier user's; `names` takes it.
fn check_name<'a>(
    names: &mut BTreeMap<&'a str, usize>,
    i: usize,
    u: &'a User,
    c: &str,
    problems: &mut Problems,
) {
    let at = || located(c, &format!("users[{i}].username"));
    if u.username.is_empty() || u.username.trim() != u.username {
        problems.push(at(), "empty, or surrounded by spaces");
    } else if let Some(prev) = names.insert(&u.username, i) {
        problems.push(
            at(),
            format!(
                "{:?} is already users[{prev}] (ProxyAuth would take whichever password matches)",
                u.username
            ),
        );
    }
}

/// One user's JSON: an `$argon2` PHC string as its hash, anything else as its plaintext
/// password (`true`: plaintext).
fn user(i: usize, u: &User, c: &str, problems: &mut Problems) -> (Value, bool) {
    let at = || located(c, &format!("users[{i}].password"));
    let mut user = json!({ "id": u.username, "username": u.username });
    let mut plain = false;
    if u.password.starts_with("$argon2") {
        match crate::auth::opaque::password::check_hash(&u.password, false) {
            Ok(_) => user["password_hash"] = u.password.clone().into(),
            Err(e) => problems.push(at(), e),
        }
    } else if u.password.is_empty() {
        problems.push(at(), "empty");
    } else {
        plain = true;
        user["password"] = u.password.clone().into();
    }
    (user, plain)
}

/// `ratelimit` as the realm's `rate_limit` and, unless `auth` is 0, its `auth_rate_limit`.
fn rate_limits(
    rl: Option<&RateLimit>,
    c: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> (Value, Option<Value>) {
    let (rps, burst, block, auth) = match rl {
        None => DEFAULT_LIMITS,
        Some(rl) => given_limits(rl, c, problems, notes),
    };
    for (v, k) in [
        (rps, "requests_per_second"),
        (burst, "burst"),
        (block, "block_delay"),
    ] {
        if v == 0 {
            problems.push(
                located(c, &format!("ratelimit.{k}")),
                "0: ProxyAuth does not start either",
            );
        }
    }
    let burst_u32 = u32::try_from(burst).unwrap_or(u32::MAX);
    let per_user = 1000.0 / block.max(1) as f64;
    if rps.max(1) as f64 != per_user {
        notes.push(format!(
            "{c}:ratelimit: ProxyAuth 0.5 replaces requests_per_second ({rps}) by one request per block_delay ({block} ms); \
             authedge does the same: {per_user}/s per user, burst {burst}"
        ));
    }
    let rate_limit = json!({ "requests_per_second": per_user, "burst": burst_u32 });
    (rate_limit, auth_limit(auth, c, notes))
}

/// The four values of a given `ratelimit` block, each required (1 stands in for a missing one).
fn given_limits(
    rl: &RateLimit,
    c: &str,
    problems: &mut Problems,
    notes: &mut Vec<String>,
) -> (u64, u64, u64, u64) {
    let mut need = |v: Option<u64>, k: &str| {
        v.unwrap_or_else(|| {
            problems.push(
                located(c, &format!("ratelimit.{k}")),
                "required when ratelimit is given (ProxyAuth does not start without it)",
            );
            1
        })
    };
    let v = (
        need(rl.requests_per_second, "requests_per_second"),
        need(rl.burst, "burst"),
        need(rl.block_delay, "block_delay"),
        need(rl.auth, "auth"),
    );
    if rl.block_delay_auth.is_some() {
        notes.push(format!(
            "{c}:ratelimit.block_delay_auth: not read by ProxyAuth 0.5 either; one /auth attempt comes back every 10 s"
        ));
    }
    v
}

/// `/auth` per client address: burst `auth`, one attempt back every 10 s; `None` (and a note)
/// for 0.
fn auth_limit(auth: u64, c: &str, notes: &mut Vec<String>) -> Option<Value> {
    if auth > 0 {
        Some(json!({
            "per_client": {
                "requests_per_second": 1.0 / AUTH_PERIOD_SECS,
                "burst": u32::try_from(auth).unwrap_or(u32::MAX),
            }
        }))
    } else {
        notes.push(format!(
            "{c}:ratelimit.auth: 0 turns ProxyAuth's /auth limit off; authedge keeps its own (per client 1/s, burst 20)"
        ));
        None
    }
}
