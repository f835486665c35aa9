//! Secrets in config: given as a value, an environment variable, or a file; never printed.

use serde::Deserialize;
use zeroize::Zeroizing;

/// Where a secret comes from. Exactly one of `value`, `env`, `file`.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    Value(String),
    Env(String),
    File(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
            SecretSource::Env(n) => write!(f, "Env({n})"),
            SecretSource::File(p) => write!(f, "File({p})"),
        }
    }
}

/// A resolved secret: bytes wiped on drop, redacted in Debug.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl SecretSource {
    /// Resolve now. A file's trailing newline is dropped. Errors never contain the secret.
    pub fn resolve(&self) -> Result<Secret, String> {
        let bytes = match self {
            SecretSource::Value(v) => v.as_bytes().to_vec(),
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set or not UTF-8"))?
                .into_bytes(),
            SecretSource::File(path) => {
                let mut b = std::fs::read(path).map_err(|e| format!("cannot read secret file {path}: {e}"))?;
                while matches!(b.last(), Some(b'\n' | b'\r')) {
                    b.pop();
                }
                b
            }
        };
        if bytes.is_empty() {
            return Err("secret is empty".into());
        }
        Ok(Secret(Zeroizing::new(bytes)))
    }
}
