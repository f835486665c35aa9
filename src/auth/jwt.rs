//! Auth mode `jwt` (placeholder until the mode lands: any use is a config error, so nothing
//! fails open).

use std::sync::Arc;

use serde::Deserialize;

use crate::auth::AuthFilter;
use crate::config::{Problem, Problems};
use crate::snapshot::Warm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub issuer: String,
}

pub async fn build(_cfg: &JwtConfig, path: &str, _warm: &Warm) -> Result<Arc<dyn AuthFilter>, Problems> {
    Err(Problems(vec![Problem::new(path, "the jwt mode is not available in this build")]))
}
