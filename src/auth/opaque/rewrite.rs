//! ProxyAuth's behaviour (`rewrite_plaintext: true`): after plaintext passwords were hashed at
//! load, rewrite the users file atomically with `password_hash` in place of `password`, keeping
//! everything else. The edit is done on the text (comments and order survive) and then checked
//! by parsing the result; if the check fails (unusual layout such as YAML flow style), the file
//! is written from the parsed data instead, which keeps every value but not comments.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

/// Why the users file was not rewritten (the file is then left as it was).
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse the users file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot parse the users file: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("the file has no users list")]
    NoUsers,
    #[error("cannot rewrite {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Rewrite `path`, replacing each user's `password: <plaintext>` by `password_hash: <PHC>` from
/// `hashes` (plaintext -> PHC string).
pub fn rewrite_users_file(
    path: &Path,
    hashes: &HashMap<String, String>,
) -> Result<(), RewriteError> {
    let text = std::fs::read_to_string(path).map_err(|source| RewriteError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let original = parse(&text, is_json)?;
    let expected = substitute(original, hashes)?;
    let edited = if is_json {
        edit_json(&text, hashes)
    } else {
        edit_yaml(&text, hashes)
    };
    let contents = match edited {
        Some(t) if parse(&t, is_json).ok().as_ref() == Some(&expected) => t,
        _ => {
            if is_json {
                serde_json::to_string_pretty(&expected)? + "\n"
            } else {
                serde_norway::to_string(&expected)?
            }
        }
    };
    write_atomic(path, contents.as_bytes())
}

fn parse(text: &str, is_json: bool) -> Result<Value, RewriteError> {
    Ok(if is_json {
        serde_json::from_str(text)?
    } else {
        serde_norway::from_str(text)?
    })
}

/// The data the file must hold afterwards.
fn substitute(mut v: Value, hashes: &HashMap<String, String>) -> Result<Value, RewriteError> {
    let users = v
        .get_mut("users")
        .and_then(Value::as_array_mut)
        .ok_or(RewriteError::NoUsers)?;
    for u in users {
        let Some(obj) = u.as_object_mut() else {
            continue;
        };
        let Some(Value::String(pw)) = obj.get("password") else {
            continue;
        };
        let Some(h) = hashes.get(pw) else { continue };
        let h = h.clone();
        obj.remove("password");
        obj.insert("password_hash".into(), Value::String(h));
    }
    Ok(v)
}

/// Block-style YAML: `[indent][- ]password: <scalar> [# comment]` lines.
fn edit_yaml(text: &str, hashes: &HashMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let trimmed = body.trim_start();
        let indent_len = body.len() - trimmed.len();
        let (dash, rest) = match trimmed.strip_prefix("- ") {
            Some(r) => {
                let r2 = r.trim_start();
                (&trimmed[..trimmed.len() - r2.len()], r2)
            }
            None => ("", trimmed),
        };
        let value = rest
            .strip_prefix("password")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix(':'));
        match value {
            Some(v) if v.is_empty() || v.starts_with([' ', '\t']) => {
                let plain: String = serde_norway::from_str(v.trim()).ok()?;
                let h = hashes.get(&plain)?;
                out.push_str(&body[..indent_len]);
                out.push_str(dash);
                out.push_str("password_hash: '");
                out.push_str(h);
                out.push('\'');
                out.push_str(ending);
            }
            _ => out.push_str(line),
        }
    }
    Some(out)
}

/// JSON: each `"password": "<string>"` member.
fn edit_json(text: &str, hashes: &HashMap<String, String>) -> Option<String> {
    const KEY: &str = "\"password\"";
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at]);
        let after = &rest[at + KEY.len()..];
        let after_ws = after.trim_start();
        let Some(v) = after_ws.strip_prefix(':') else {
            out.push_str(KEY);
            rest = after;
            continue;
        };
        let v = v.trim_start();
        if !v.starts_with('"') {
            return None;
        }
        // Find the closing quote of the string literal.
        let bytes = v.as_bytes();
        let mut i = 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return None;
        }
        let literal = &v[..=i];
        let plain: String = serde_json::from_str(literal).ok()?;
        let h = hashes.get(&plain)?;
        out.push_str("\"password_hash\": ");
        out.push_str(&serde_json::to_string(h).ok()?);
        rest = &v[i + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Write to a temporary file beside `path` (same permissions), sync, then rename over it.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), RewriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.authedge-{}-{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let perms = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(p) = perms {
            f.set_permissions(p)?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        RewriteError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes() -> HashMap<String, String> {
        let mut h = HashMap::new();
        h.insert(
            "alicepass".to_string(),
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA".to_string(),
        );
        h.insert(
            "b'ob\"".to_string(),
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdA$b3RoZXI".to_string(),
        );
        h
    }

    #[test]
    fn yaml_keeps_comments_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.yaml");
        let text = "# team users\nusers:\n  - id: u1 # first\n    username: alice\n    password: alicepass # change me\n    roles: [admin]\n  - id: u2\n    username: bob\n    password: \"b'ob\\\"\"\n  - id: u3\n    username: carol\n    password_hash: '$argon2id$v=19$m=256,t=1,p=1$c2FsdA$Y2Fyb2w'\n";
        std::fs::write(&p, text).unwrap();
        rewrite_users_file(&p, &hashes()).unwrap();
        let out = std::fs::read_to_string(&p).unwrap();
        assert!(
            out.starts_with("# team users\nusers:\n  - id: u1 # first\n"),
            "{out}"
        );
        assert!(out.contains("    password_hash: '$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA'\n    roles: [admin]"), "{out}");
        assert!(!out.contains("alicepass") && !out.contains("b'ob"), "{out}");
        assert!(out.contains("Y2Fyb2w"));
        let parsed: crate::auth::opaque::users::UsersFile = serde_norway::from_str(&out).unwrap();
        assert!(parsed
            .users
            .iter()
            .all(|u| u.password.is_none() && u.password_hash.is_some()));
    }

    #[test]
    fn yaml_flow_style_falls_back_to_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.yml");
        std::fs::write(
            &p,
            "users: [{id: u1, username: alice, password: alicepass}]\n",
        )
        .unwrap();
        rewrite_users_file(&p, &hashes()).unwrap();
        let parsed: crate::auth::opaque::users::UsersFile =
            serde_norway::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(
            parsed.users[0].password_hash.as_deref(),
            hashes().get("alicepass").map(|s| s.as_str())
        );
        assert!(parsed.users[0].password.is_none());
    }

    #[test]
    fn json_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.json");
        let text = "{\n  \"users\": [\n    {\"username\": \"password\", \"id\": \"u1\", \"password\": \"alicepass\"}\n  ]\n}\n";
        std::fs::write(&p, text).unwrap();
        rewrite_users_file(&p, &hashes()).unwrap();
        let out = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            out,
            "{\n  \"users\": [\n    {\"username\": \"password\", \"id\": \"u1\", \"password_hash\": \"$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA\"}\n  ]\n}\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
