//! Building the key registry endpoint from the `key_registry:` block: every value checked, every
//! problem named by its key path.

use crate::auth::endpoint::admin_secret_digest;
use std::sync::Arc;

use http::HeaderName;

use super::config::KeyRegistryConfig;
use super::KeyRegistry;
use crate::auth::endpoint::{Endpoint, EndpointAt};
use crate::auth::secs;
use crate::auth::signed::keys::segment_ok;
use crate::auth::signed::token::Origin;
use crate::config::Problems;
use crate::state::Store;

/// Check the block and build the endpoint with where it is served.
pub fn build(
    cfg: &KeyRegistryConfig,
    path: &str,
    state: &Store,
) -> Result<(EndpointAt, Arc<dyn Endpoint>), Problems> {
    let mut problems = Problems::default();
    let p = &cfg.path;
    if !p.starts_with('/') || !p.ends_with("/services/") || p.contains("//") {
        problems.push(
            format!("{path}.path"),
            format!("{p:?} must start with / and end with /services/ (jwtproxy's protocol)"),
        );
    }
    let audience = match &cfg.audience {
        None => None,
        Some(a) => {
            let o = Origin::parse(a);
            if o.is_none() {
                problems.push(
                    format!("{path}.audience"),
                    format!("{a:?} is not an origin (scheme://host[:port])"),
                );
            }
            o
        }
    };
    for (i, s) in cfg.auto_approve.iter().enumerate() {
        if !segment_ok(s) {
            problems.push(
                format!("{path}.auto_approve[{i}]"),
                format!("{s:?} is not a service name (letters, digits, - _ . ~ + =)"),
            );
        }
    }
    for (key, d) in [
        ("max_ttl", cfg.max_ttl),
        ("cache_max_age", cfg.cache_max_age),
        ("key_lifetime", cfg.key_lifetime),
        ("pending_lifetime", cfg.pending_lifetime),
    ] {
        if d.is_zero() {
            problems.push(format!("{path}.{key}"), "must be more than 0s");
        }
    }
    if cfg.max_keys_per_service == 0 || cfg.max_keys_per_service > 256 {
        problems.push(
            format!("{path}.max_keys_per_service"),
            "must be between 1 and 256",
        );
    }
    let admin = admin(cfg, path, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let at = match &cfg.host {
        Some(h) => EndpointAt::on_host(h, cfg.path.clone()),
        None => EndpointAt::any_host(cfg.path.clone()),
    };
    let reg = KeyRegistry {
        audience,
        auto_approve: cfg.auto_approve.clone(),
        admin,
        max_skew: secs(cfg.max_skew),
        max_ttl: secs(cfg.max_ttl),
        cache_max_age: secs(cfg.cache_max_age),
        key_lifetime: secs(cfg.key_lifetime),
        pending_lifetime: secs(cfg.pending_lifetime),
        max_keys: cfg.max_keys_per_service,
        path: cfg.path.clone().into(),
        state: state.clone(),
    };
    Ok((at.with_prefix(), Arc::new(reg)))
}

fn admin(
    cfg: &KeyRegistryConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<(HeaderName, [u8; 32])> {
    let src = cfg.admin_secret.as_ref()?;
    let header = match HeaderName::from_bytes(cfg.admin_header.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            problems.push(format!("{path}.admin_header"), "not a header name");
            None
        }
    };
    let digest = admin_secret_digest(src, &format!("{path}.admin_secret"), problems)?;
    header.map(|h| (h, digest))
}
