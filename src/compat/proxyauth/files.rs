//! ProxyAuth's two files as it reads them: `config.json` and `routes.yml` parsed strictly
//! (unknown keys refused), a parse error named by its file and key path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ROUTES_FILE;
use crate::config::{Problem, Problems};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppConfig {
    pub(super) token_expiry_seconds: i64,
    pub(super) secret: String,
    pub(super) users: Vec<User>,
    #[serde(default)]
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) port: Option<u16>,
    #[serde(default)]
    pub(super) worker: Option<u8>,
    #[serde(default)]
    pub(super) ratelimit: Option<RateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct User {
    pub(super) username: String,
    pub(super) password: String,
}

/// ProxyAuth reads `requests_per_second`, `burst`, `block_delay` and `auth` (it stops at start
/// when one is missing); `block_delay_auth` is in its defaults but never read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimit {
    #[serde(default)]
    pub(super) requests_per_second: Option<u64>,
    #[serde(default)]
    pub(super) burst: Option<u64>,
    #[serde(default)]
    pub(super) block_delay: Option<u64>,
    #[serde(default)]
    pub(super) auth: Option<u64>,
    #[serde(default)]
    pub(super) block_delay_auth: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub(super) routes: Vec<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Route {
    pub(super) prefix: String,
    pub(super) target: String,
    #[serde(default)]
    pub(super) username: Vec<String>,
    #[serde(default = "yes")]
    pub(super) secure: bool,
    #[serde(default)]
    pub(super) proxy: bool,
    #[serde(default)]
    pub(super) proxy_config: String,
    #[serde(default)]
    pub(super) cert: Option<BTreeMap<String, String>>,
}

fn yes() -> bool {
    true
}

/// `file:path` as problems and notes name a key (`file` alone for the whole document).
pub(super) fn located(file: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        file.to_string()
    } else {
        format!("{file}:{path}")
    }
}

fn parse<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    de: D,
    file: &str,
) -> Result<T, Problems> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Problems(vec![Problem::new(
            located(file, &path),
            e.into_inner().to_string(),
        )])
    })
}

/// Parse `config.json` (named `c` in problems; nothing may follow its object) and `routes.yml`.
pub(super) fn parse_files(
    c: &str,
    config_text: &str,
    routes_text: &str,
) -> Result<(AppConfig, RouteFile), Problems> {
    let mut jd = serde_json::Deserializer::from_str(config_text);
    let app: AppConfig = parse(&mut jd, c)?;
    jd.end()
        .map_err(|e| Problems(vec![Problem::new(c, e.to_string())]))?;
    let file: RouteFile = parse(
        serde_norway::Deserializer::from_str(routes_text),
        ROUTES_FILE,
    )?;
    Ok((app, file))
}
