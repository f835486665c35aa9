//! Users of an opaque realm: their config (inline or in a users file, YAML or JSON), Argon2id
//! password hashes (checked at load, verified off the async workers), optional plaintext
//! passwords hashed at load, and the compiled lookup tables the endpoints and filters use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::Params;
use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::password::{check_hash, dummy_hash};
use crate::config::Problems;
use crate::identity::Identity;
use crate::tokens::aead::MAX_USER_ID;

pub use super::password::{hash_password, hash_password_from_reader, verify_password, weak_params};

/// One user as configured.
#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Stable id carried by tokens; never reuse one for another person.
    pub id: String,
    pub username: String,
    /// Argon2id PHC string (`authedge hash-password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Plaintext password: refused unless the realm sets `allow_plaintext: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Client networks the user may log in from and use tokens from (empty: anywhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<IpNet>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("id", &self.id)
            .field("username", &self.username)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<hash>"),
            )
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("roles", &self.roles)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .finish()
    }
}

/// The users file: `users: [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    pub users: Vec<UserConfig>,
}

/// A compiled user (Debug leaves the hash out).
pub struct User {
    pub id: Arc<str>,
    pub username: String,
    /// PHC string, validated at load.
    pub hash: String,
    pub roles: Vec<String>,
    pub allowed_cidrs: Vec<IpNet>,
    /// The identity this user gets on every request, built once at load (with the realm's user
    /// header = username and roles header = roles joined with `,`, when configured).
    pub identity: Arc<Identity>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether a client address may use this account (no list: anywhere; no address: only if
    /// there is no list).
    pub fn client_allowed(&self, ip: Option<std::net::IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        match ip {
            Some(ip) => {
                let ip = match ip {
                    std::net::IpAddr::V6(v6) => {
                        v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip)
                    }
                    v4 => v4,
                };
                self.allowed_cidrs.iter().any(|n| n.contains(&ip))
            }
            None => false,
        }
    }
}

/// Users by id and by username, and the dummy hash verified for unknown usernames.
#[derive(Default)]
pub struct UserDb {
    pub by_id: HashMap<Arc<str>, Arc<User>>,
    pub by_name: HashMap<String, Arc<User>>,
    pub dummy_hash: String,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb")
            .field("users", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

/// Where a user entry came from, for problem paths.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub path: String,
    pub cfg: UserConfig,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 256 && u.trim() == u && !u.chars().any(|c| c.is_control())
}

fn valid_role(r: &str) -> bool {
    !r.is_empty() && r.len() <= 128 && r.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// A users file that cannot be read or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `reason` starts with the path inside the file (`users[0]: unknown field ...`).
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
}

/// Read a users file (YAML, or JSON when the name ends in `.json`).
pub fn read_users_file(path: &Path) -> Result<UsersFile, UsersFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let res = if is_json {
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    } else {
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    };
    res.map_err(|reason| UsersFileError::Parse {
        path: path.display().to_string(),
        reason,
    })
}

/// Resolve a users file path against the main config's directory.
pub fn resolve(file: &str, source: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_absolute() {
        return p;
    }
    match source.and_then(|s| s.parent()) {
        Some(dir) => dir.join(p),
        None => p,
    }
}

/// Options of a realm that shape how users compile.
#[derive(Debug, Clone, Copy)]
pub struct UserOptions {
    pub allow_plaintext: bool,
    pub allow_weak_hashes: bool,
}

/// Validate entries and compile the ones with hashes. Plaintext entries (allowed) come back in
/// `to_hash` (index into `entries`) to be hashed off the async thread.
pub fn validate(
    entries: &[Sourced],
    opts: UserOptions,
    problems: &mut Problems,
) -> (Vec<Option<String>>, Vec<usize>) {
    let mut hashes: Vec<Option<String>> = Vec::with_capacity(entries.len());
    let mut to_hash = Vec::new();
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let (p, u) = (&e.path, &e.cfg);
        if !valid_id(&u.id) {
            problems.push(
                format!("{p}.id"),
                "id must be 1 to 255 visible ASCII characters",
            );
        } else if let Some(prev) = ids.insert(&u.id, p) {
            problems.push(
                format!("{p}.id"),
                format!("id {:?} is already used by {prev}", u.id),
            );
        }
        if !valid_username(&u.username) {
            problems.push(
                format!("{p}.username"),
                "username must be 1 to 256 characters, no control characters or surrounding spaces",
            );
        } else if let Some(prev) = names.insert(&u.username, p) {
            problems.push(
                format!("{p}.username"),
                format!("username {:?} is already used by {prev}", u.username),
            );
        }
        for (j, r) in u.roles.iter().enumerate() {
            if !valid_role(r) {
                problems.push(
                    format!("{p}.roles[{j}]"),
                    "a role is 1 to 128 visible ASCII characters without commas",
                );
            }
        }
        match (&u.password_hash, &u.password) {
            (Some(h), None) => match check_hash(h, opts.allow_weak_hashes) {
                Ok(_) => {
                    hashes.push(Some(h.clone()));
                    continue;
                }
                Err(m) => problems.push(format!("{p}.password_hash"), m),
            },
            (None, Some(pw)) => {
                if !opts.allow_plaintext {
                    problems.push(
                        format!("{p}.password"),
                        "plaintext passwords are refused: store an Argon2id hash (authedge hash-password) \
                         or set allow_plaintext: true",
                    );
                } else if pw.is_empty() {
                    problems.push(format!("{p}.password"), "the password is empty");
                } else {
                    to_hash.push(i);
                }
            }
            (Some(_), Some(_)) => {
                problems.push(p.clone(), "give either password_hash or password, not both")
            }
            (None, None) => {
                problems.push(format!("{p}.password_hash"), "a password_hash is required")
            }
        }
        hashes.push(None);
    }
    (hashes, to_hash)
}

/// The identity of a user: subject = username, scopes = roles, and the realm's user and roles
/// headers when configured.
fn user_identity(
    username: &str,
    roles: &[String],
    user_value: &Option<HeaderValue>,
    roles_value: &Option<HeaderValue>,
    (user_header, roles_header): (Option<&HeaderName>, Option<&HeaderName>),
) -> Identity {
    let mut headers = Vec::new();
    if let (Some(n), Some(v)) = (user_header, user_value) {
        headers.push((n.clone(), v.clone()));
    }
    if let (Some(n), Some(v)) = (roles_header, roles_value) {
        headers.push((n.clone(), v.clone()));
    }
    Identity {
        subject: HeaderValue::from_str(username).ok(),
        issuer: None,
        mode: "opaque",
        scopes: Identity::join_scopes(roles),
        headers,
    }
}

/// Build the lookup tables. `hashes[i]` is the PHC string of `entries[i]`.
pub fn compile(
    entries: &[Sourced],
    hashes: &[Option<String>],
    headers: (Option<&HeaderName>, Option<&HeaderName>),
    problems: &mut Problems,
) -> UserDb {
    let (user_header, roles_header) = (headers.0.is_some(), headers.1.is_some());
    let mut db = UserDb::default();
    // The dummy hash (verified for unknown users) takes the costliest parameters in the realm,
    // so an unknown username is never faster to refuse than a known one.
    let mut costliest_params: Option<Params> = None;
    for (e, h) in entries.iter().zip(hashes) {
        let Some(h) = h else { continue };
        let u = &e.cfg;
        if let Some(p) = PasswordHash::new(h)
            .ok()
            .and_then(|p| Params::try_from(&p).ok())
        {
            let cost =
                |p: &Params| u64::from(p.m_cost()) * u64::from(p.t_cost()) * u64::from(p.p_cost());
            if costliest_params
                .as_ref()
                .map(|f| cost(&p) > cost(f))
                .unwrap_or(true)
            {
                costliest_params = Some(p);
            }
        }
        let user_value = if user_header {
            match HeaderValue::from_bytes(u.username.as_bytes()) {
                Ok(v) => Some(v),
                Err(_) => {
                    problems.push(
                        format!("{}.username", e.path),
                        "not usable as a header value",
                    );
                    None
                }
            }
        } else {
            None
        };
        let roles_value = if roles_header && !u.roles.is_empty() {
            HeaderValue::from_str(&u.roles.join(",")).ok()
        } else {
            None
        };
        let identity = Arc::new(user_identity(
            &u.username,
            &u.roles,
            &user_value,
            &roles_value,
            headers,
        ));
        let user = Arc::new(User {
            id: u.id.as_str().into(),
            username: u.username.clone(),
            hash: h.clone(),
            roles: u.roles.clone(),
            allowed_cidrs: u.allowed_cidrs.clone(),
            identity,
        });
        db.by_id.insert(user.id.clone(), user.clone());
        db.by_name.insert(user.username.clone(), user);
    }
    db.dummy_hash = dummy_hash(&costliest_params.unwrap_or_default());
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(256, 1, 1, None).unwrap()
    }

    #[test]
    fn validation_problems() {
        let h = hash_password(b"x", Some(cheap())).unwrap();
        let mk = |id: &str, name: &str, hash: Option<&str>, pw: Option<&str>| Sourced {
            path: format!("opaque.m.users[{id}]"),
            cfg: UserConfig {
                id: id.into(),
                username: name.into(),
                password_hash: hash.map(Into::into),
                password: pw.map(Into::into),
                ..Default::default()
            },
        };
        let entries = vec![
            mk("1", "a", Some(&h), None),
            mk("1", "b", Some(&h), None),
            mk("2", "a", Some(&h), None),
            mk("3", "c", None, Some("pw")),
            mk("4", "d", Some("$2b$10$abc"), None),
        ];
        let mut p = Problems::default();
        let opts = UserOptions {
            allow_plaintext: false,
            allow_weak_hashes: true,
        };
        validate(&entries, opts, &mut p);
        let text = p.to_string();
        assert!(
            text.contains("opaque.m.users[1].id: id \"1\" is already used"),
            "{text}"
        );
        assert!(text.contains("opaque.m.users[2].username"), "{text}");
        assert!(
            text.contains("opaque.m.users[3].password: plaintext passwords are refused"),
            "{text}"
        );
        assert!(text.contains("opaque.m.users[4].password_hash"), "{text}");
        let mut p = Problems::default();
        let opts = UserOptions {
            allow_plaintext: true,
            allow_weak_hashes: false,
        };
        let (_, to_hash) = validate(&entries[3..4], opts, &mut p);
        assert!(p.is_empty());
        assert_eq!(to_hash, vec![0]);
        let dbg = format!("{:?}", entries[3].cfg);
        assert!(!dbg.contains("pw\""), "{dbg}");
    }

    #[test]
    fn users_files_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("users.json");
        std::fs::write(
            &j,
            r#"{"users":[{"id":"1","username":"a","password_hash":"x","roles":["r"]}]}"#,
        )
        .unwrap();
        let f = read_users_file(&j).unwrap();
        assert_eq!(
            (f.users[0].username.as_str(), f.users[0].roles.len()),
            ("a", 1)
        );
        std::fs::write(&j, r#"{"users":[{"id":"1","username":"a","pasword":"x"}]}"#).unwrap();
        let e = read_users_file(&j).unwrap_err().to_string();
        assert!(e.contains("users[0]") && e.contains("pasword"), "{e}");
        let y = dir.path().join("users.yaml");
        std::fs::write(
            &y,
            "users:\n  - {id: '2', username: b, password_hash: x, allowed_cidrs: [10.0.0.0/8]}\n",
        )
        .unwrap();
        assert_eq!(read_users_file(&y).unwrap().users[0].allowed_cidrs.len(), 1);
        assert!(read_users_file(&dir.path().join("missing.yaml")).is_err());
        assert_eq!(
            resolve("u.yaml", Some(Path::new("/etc/authedge/main.yaml"))),
            PathBuf::from("/etc/authedge/u.yaml")
        );
        assert_eq!(
            resolve("/abs/u.yaml", Some(Path::new("/etc/a.yaml"))),
            PathBuf::from("/abs/u.yaml")
        );
    }

    #[test]
    fn cidrs() {
        let u = User {
            id: "1".into(),
            username: "a".into(),
            hash: String::new(),
            roles: vec![],
            allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            identity: Arc::default(),
        };
        assert!(u.client_allowed(Some("10.1.2.3".parse().unwrap())));
        assert!(u.client_allowed(Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(!u.client_allowed(Some("11.1.2.3".parse().unwrap())));
        assert!(!u.client_allowed(None));
    }
}
