//! Auth mode `opaque` (placeholder until the mode lands: any use is a config error, so nothing
//! fails open).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::{AuthFilter, Endpoint};
use crate::config::{Problem, Problems};
use crate::snapshot::Warm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueRealmConfig {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaqueRouteConfig {
    pub realm: String,
}

#[derive(Debug)]
pub struct Realm;

pub type RealmEndpoints = Vec<(String, Arc<dyn Endpoint>)>;

pub async fn build_realm(
    _name: &str,
    _cfg: &OpaqueRealmConfig,
    path: &str,
    _warm: &Warm,
    _source: Option<&Path>,
) -> Result<(Arc<Realm>, RealmEndpoints), Problems> {
    Err(Problems(vec![Problem::new(path, "the opaque mode is not available in this build")]))
}

pub fn build_filter(
    _cfg: &OpaqueRouteConfig,
    _realms: &HashMap<String, Arc<Realm>>,
    path: &str,
    _warm: &Warm,
) -> Result<Arc<dyn AuthFilter>, Problems> {
    Err(Problems(vec![Problem::new(path, "the opaque mode is not available in this build")]))
}
