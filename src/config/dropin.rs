//! Why a drop-in reader (another tool's environment variables turned into authedge's config:
//! ooproxy, oauth2-proxy, the PKCE proxy) could not write the config it generates. Each error
//! names the variable or the file it concerns, never a secret's value.

use std::path::PathBuf;

/// A drop-in reader's failure, before any config exists.
#[derive(Debug, thiserror::Error)]
pub enum DropInError {
    /// A variable whose value cannot be used.
    #[error("{var}: {reason}")]
    Var { var: &'static str, reason: String },
    /// A variable the drop-in needs (`hint` says why, or is empty).
    #[error("{var} is not set{hint}")]
    Unset {
        var: &'static str,
        hint: &'static str,
    },
    /// A file or directory that could not be read or written (`what` says which and why it was
    /// touched: `AUTHEDGE_STATE_DIR`, `cannot write`, `CERT_FILE: cannot read`).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No config file given and no drop-in's variables set.
    #[error(
        "no config: give --config FILE (or AUTHEDGE_CONFIG), or set PROVIDER_URL and UPSTREAM_URL \
         to run with ooproxy's environment variables \
         (or OAUTH_AUTH_URL and the others of the PKCE proxy)"
    )]
    NoConfig,
    /// The oauth2-proxy reader's message (`auth::oidc::env` reports its problems as text).
    #[error("{0}")]
    Oauth2Proxy(String),
}

impl DropInError {
    /// A bad value of `var`.
    pub fn var(var: &'static str, reason: impl Into<String>) -> Self {
        DropInError::Var {
            var,
            reason: reason.into(),
        }
    }

    /// A failed read or write of `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DropInError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
