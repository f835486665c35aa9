//! Secrets in config: given as a value, an environment variable, or a file; never printed.

use serde::Deserialize;
use zeroize::Zeroizing;

/// Where a secret comes from: a map with exactly one of `value`, `env`, `file`
/// (`{value: "..."}`, `{env: NAME}`, `{file: /path}`), or the same as a YAML tag
/// (`!value "..."`, `!env NAME`, `!file /path`).
#[derive(Clone)]
pub enum SecretSource {
    Value(String),
    Env(String),
    File(String),
}

const KINDS: &[&str] = &["value", "env", "file"];

thread_local! {
    /// The directory relative `file:` secrets are read from while a config file is parsed (its
    /// own directory); unset: the working directory.
    static BASE: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` (a parse) with relative secret files resolved against `dir`.
pub fn with_base_dir<T>(dir: Option<&std::path::Path>, f: impl FnOnce() -> T) -> T {
    let old = BASE.with(|b| b.replace(dir.map(std::path::Path::to_path_buf)));
    let out = f();
    BASE.with(|b| *b.borrow_mut() = old);
    out
}

fn relative_to_base(path: String) -> String {
    if std::path::Path::new(&path).is_absolute() {
        return path;
    }
    BASE.with(|b| match &*b.borrow() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(&path).display().to_string(),
        _ => path,
    })
}

fn source(kind: &str, v: String) -> Option<SecretSource> {
    match kind.trim_start_matches('!') {
        "value" => Some(SecretSource::Value(v)),
        "env" => Some(SecretSource::Env(v)),
        "file" => Some(SecretSource::File(relative_to_base(v))),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, VariantAccess};
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{value: ...}, {env: NAME} or {file: /path}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<SecretSource, A::Error> {
                let mut found = None;
                while let Some(k) = m.next_key::<String>()? {
                    let v: String = m.next_value()?;
                    let s = source(&k, v).ok_or_else(|| A::Error::unknown_field(&k, KINDS))?;
                    if found.replace(s).is_some() {
                        return Err(A::Error::custom("give exactly one of value, env or file"));
                    }
                }
                found.ok_or_else(|| A::Error::custom("give exactly one of value, env or file"))
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                e: A,
            ) -> Result<SecretSource, A::Error> {
                let (tag, variant): (String, _) = e.variant()?;
                let v: String = variant.newtype_variant()?;
                source(&tag, v).ok_or_else(|| A::Error::unknown_variant(&tag, KINDS))
            }
        }
        d.deserialize_any(V)
    }
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

/// Why a secret could not be resolved (never contains the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or not UTF-8")]
    Env(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret is empty")]
    Empty,
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
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let bytes = match self {
            SecretSource::Value(v) => v.as_bytes().to_vec(),
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| SecretError::Env(name.clone()))?
                .into_bytes(),
            SecretSource::File(path) => {
                let mut b = std::fs::read(path).map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                while matches!(b.last(), Some(b'\n' | b'\r')) {
                    b.pop();
                }
                b
            }
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(Zeroizing::new(bytes)))
    }
}

/// Write a secret a drop-in reader generated (a key from environment variables) to a file only
/// its owner can read (0600). The message names the file, never the secret.
pub fn write_private(
    path: &std::path::Path,
    data: &[u8],
) -> Result<(), super::dropin::DropInError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| super::dropin::DropInError::io("cannot write", path, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(data).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_secret_files_are_read_from_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "beside-the-config\n").unwrap();
        let parse = |y: &str| serde_norway::from_str::<SecretSource>(y).unwrap();
        let s = with_base_dir(Some(dir.path()), || parse("{file: k}"));
        assert_eq!(s.resolve().unwrap().expose(), b"beside-the-config");
        let tagged = with_base_dir(Some(dir.path()), || parse("!file k"));
        assert_eq!(tagged.resolve().unwrap().expose(), b"beside-the-config");
        // Absolute paths stay; outside a config parse, relative means the working directory.
        let abs = format!("{{file: {}}}", dir.path().join("k").display());
        let a = with_base_dir(Some(std::path::Path::new("/nowhere")), || parse(&abs));
        assert_eq!(a.resolve().unwrap().expose(), b"beside-the-config");
        assert!(matches!(parse("{file: k}"), SecretSource::File(p) if p == "k"));
    }

    #[test]
    fn sources_resolve_and_never_print() {
        let v = SecretSource::Value("s3cret".into());
        assert_eq!(v.resolve().unwrap().expose(), b"s3cret");
        assert!(!format!("{v:?}").contains("s3cret"));
        assert!(!format!("{:?}", v.resolve().unwrap()).contains("s3cret"));

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "from-file\n").unwrap();
        let fs = SecretSource::File(f.display().to_string());
        assert_eq!(fs.resolve().unwrap().expose(), b"from-file");

        let missing = SecretSource::Env("AUTHEDGE_TEST_SURELY_UNSET_VAR".into());
        assert!(missing
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("AUTHEDGE_TEST_SURELY_UNSET_VAR"));
        assert_eq!(
            SecretSource::Value(String::new()).resolve().unwrap_err(),
            SecretError::Empty
        );
    }

    #[test]
    fn inside_a_type_tagged_list_only_the_map_form_works() {
        // Filters are `type`-tagged (serde buffers them), where YAML tags cannot pass.
        #[derive(Deserialize, Debug)]
        #[serde(tag = "type")]
        enum F {
            #[serde(rename = "x")]
            X { secret: SecretSource },
        }
        let f: Vec<F> = serde_norway::from_str("- {type: x, secret: {env: K}}").unwrap();
        assert!(matches!(&f[0], F::X { secret: SecretSource::Env(k) } if k == "K"));
        assert!(
            serde_norway::from_str::<Vec<F>>("- {type: x, secret: {value: a, file: b}}").is_err()
        );
        assert!(serde_norway::from_str::<Vec<F>>("- {type: x, secret: {valu: a}}").is_err());
    }

    #[test]
    fn yaml_forms() {
        let s: SecretSource = serde_norway::from_str("{env: FOO}").unwrap();
        assert!(matches!(s, SecretSource::Env(ref n) if n == "FOO"));
        let s: SecretSource = serde_norway::from_str("{file: /run/k}").unwrap();
        assert!(matches!(s, SecretSource::File(_)));
        let e = serde_norway::from_str::<SecretSource>("{env: A, file: B}")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
        assert!(serde_norway::from_str::<SecretSource>("plain").is_err());
        let s: SecretSource = serde_norway::from_str("!value abc").unwrap();
        assert!(matches!(s, SecretSource::Value(ref v) if v == "abc"));
        let s: SecretSource = serde_norway::from_str("!env FOO").unwrap();
        assert!(matches!(s, SecretSource::Env(ref n) if n == "FOO"));
    }
}
