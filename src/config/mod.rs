//! Loading config: read → parse (unknown keys rejected, errors with their key path). The caller
//! compiles the result ([`snapshot::load`](crate::snapshot::load) does both): `authedge check`,
//! `authedge run` and SIGHUP reloads all go through it, so what `check` accepts is exactly what
//! `run` would run. Parsing only: nothing here imports the snapshot, the proxy or a mode's code
//! (the caller passes the parser, so another tool's file is read above this floor).

pub mod dropin;
pub mod schema;
pub mod secret;

use std::fmt;
use std::path::Path;

/// One problem with a config, with the key path it concerns (`routes[2].upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Problem {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found; never empty when returned as an error.
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.0.push(Problem::new(path, message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Parse a configured header name; an empty string means "disabled" (`None`), a bad name is a
/// problem at `path`.
pub fn header_name(value: &str, path: &str, problems: &mut Problems) -> Option<http::HeaderName> {
    if value.is_empty() {
        return None;
    }
    match http::HeaderName::from_bytes(value.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(path, format!("{value:?} is not a valid header name"));
            None
        }
    }
}

/// A parser of config text: [`parse`] for authedge's own YAML, or one that also reads another
/// tool's file ([`snapshot::parse`](crate::snapshot::parse) knows the drop-ins).
/// It gets the file's path too (a drop-in may read files beside it).
pub type Parser = fn(&Path, &str) -> Result<schema::FileConfig, Problems>;

/// Parse authedge's YAML into the file schema. Errors carry the key path serde was at.
pub fn parse(text: &str) -> Result<schema::FileConfig, Problems> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.into_inner().to_string();
        // The YAML error may repeat (part of) the path as a prefix; keep it once.
        let msg = match msg.split_once(": ") {
            Some((head, rest))
                if !head.contains(' ') && (path.starts_with(head) || head == ".") =>
            {
                rest.to_string()
            }
            _ => msg,
        };
        Problems(vec![Problem::new(path, msg)])
    })
}

/// Read and parse a file with `parse`. Relative secret `file:` paths are taken from the file's
/// directory, like every other path in it.
pub fn read(path: &Path, parse: Parser) -> Result<schema::FileConfig, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    secret::with_base_dir(path.parent(), || parse(path, &text))
}

/// Read and parse a file off the async runtime's worker threads.
pub async fn load(path: &Path, parse: Parser) -> Result<schema::FileConfig, Problems> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || read(&p, parse))
        .await
        .map_err(|e| Problems(vec![Problem::new("", format!("config loader failed: {e}"))]))?
}
