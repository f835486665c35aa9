//! One trusted issuer of a `jwt` filter and where its keys come from: discovery (the default),
//! an explicit `jwks_uri`, or a static `keys_file`; plus, optionally, an HMAC `secret` (ooproxy's
//! CLIENT_SECRET). HMAC keys are kept apart from the public keys: an HS token is only ever
//! checked against the secret, an RS/PS/ES/EdDSA token only against public keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::{Digest, Sha256};

use super::config::ProviderConfig;
use super::keys::{self, Keys};
use crate::config::Problems;
use crate::context::Warm;
use crate::tokens::jwks::{family_of, url_allowed, JwksCache, JwksSettings, JwksSource, KeySet};

/// A trusted issuer and its keys.
#[derive(Debug)]
pub struct Provider {
    pub issuer: String,
    /// Identity of the keys (binds verified-cache entries to them).
    pub id: Arc<str>,
    /// Public keys (none for a secret-only provider).
    pub keys: Option<Keys>,
    /// The HMAC key, when a secret is configured.
    pub hmac: Option<Arc<KeySet>>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Provider {
    /// Where a token of this algorithm finds its keys.
    pub fn keys_for(&self, alg: Algorithm) -> Option<Keys> {
        if family_of(alg) == AlgorithmFamily::Hmac {
            self.hmac.clone().map(Keys::Static)
        } else {
            self.keys.clone()
        }
    }

    pub fn remote(&self) -> Option<&Arc<JwksCache>> {
        match &self.keys {
            Some(Keys::Remote(c)) => Some(c),
            _ => None,
        }
    }

    pub fn ready(&self) -> bool {
        self.keys.as_ref().map(Keys::ready).unwrap_or(true)
    }
}

/// One key kind of a provider: not configured, built, or refused (its problem pushed).
enum Part<T> {
    Absent,
    Built(T),
    Refused,
}

/// Build one provider; problems are pushed with their key path (`pp` is the provider's path).
pub fn build(
    p: &ProviderConfig,
    pp: &str,
    rsa_algs: &[Algorithm],
    hmac_algs: &[Algorithm],
    warm: &Warm,
    problems: &mut Problems,
) -> Option<Provider> {
    if p.issuer.is_empty() {
        problems.push(format!("{pp}.issuer"), "must not be empty");
        return None;
    }
    if p.jwks_uri.is_some() && p.keys_file.is_some() {
        problems.push(pp, "give at most one of jwks_uri and keys_file");
        return None;
    }
    if p.refresh < Duration::from_secs(1) {
        problems.push(format!("{pp}.refresh"), "must be at least 1s");
    }
    if p.unknown_kid_cooldown < Duration::from_secs(1) {
        problems.push(format!("{pp}.unknown_kid_cooldown"), "must be at least 1s");
    }
    let mut id = p.issuer.clone();
    let hmac = match hmac_part(p, pp, hmac_algs, &mut id, problems) {
        Part::Refused => return None,
        Part::Absent => None,
        Part::Built(h) => Some(h),
    };
    let keys = match public_keys(p, pp, rsa_algs, warm, &mut id, problems) {
        Part::Refused => return None,
        Part::Absent => None,
        Part::Built(k) => Some(k),
    };
    if keys.is_none() && hmac.is_none() {
        problems.push(
            pp,
            "no keys: give jwks_uri, keys_file or secret, or leave discovery on",
        );
        return None;
    }
    Some(Provider {
        issuer: p.issuer.clone(),
        id: id.into(),
        keys,
        hmac,
    })
}

/// The HMAC key of `secret`; its digest joins the provider's identity `id`.
fn hmac_part(
    p: &ProviderConfig,
    pp: &str,
    hmac_algs: &[Algorithm],
    id: &mut String,
    problems: &mut Problems,
) -> Part<Arc<KeySet>> {
    let Some(secret) = &p.secret else {
        return Part::Absent;
    };
    if hmac_algs.is_empty() {
        problems.push(
            format!("{pp}.secret"),
            "algorithms lists no HS256/384/512 for this secret",
        );
        return Part::Refused;
    }
    match keys::hmac_keys(secret, hmac_algs.to_vec()) {
        Ok(set) => {
            let digest = secret
                .resolve()
                .map(|s| hex(&Sha256::digest(s.expose())))
                .unwrap_or_default();
            id.push_str(&format!("|hmac|{digest}"));
            Part::Built(Arc::new(set))
        }
        Err(e) => {
            problems.push(format!("{pp}.secret"), e);
            Part::Refused
        }
    }
}

/// The public keys: a static `keys_file`, or a JWKS (`jwks_uri`, or discovery: on by default,
/// off by default for a secret-only provider). What identifies them joins `id`.
fn public_keys(
    p: &ProviderConfig,
    pp: &str,
    rsa_algs: &[Algorithm],
    warm: &Warm,
    id: &mut String,
    problems: &mut Problems,
) -> Part<Keys> {
    let discovery = p.discovery.unwrap_or(p.secret.is_none());
    if p.discovery == Some(true) && (p.jwks_uri.is_some() || p.keys_file.is_some()) {
        problems.push(
            format!("{pp}.discovery"),
            "discovery cannot be combined with jwks_uri or keys_file",
        );
        return Part::Refused;
    }
    if let Some(file) = &p.keys_file {
        let file = &warm.resolve_path(file);
        return match keys::file_keys(file, rsa_algs) {
            Ok(set) => {
                let digest = std::fs::read(file)
                    .map(|b| hex(&Sha256::digest(b)))
                    .unwrap_or_default();
                id.push_str(&format!("|file|{file}|{digest}"));
                Part::Built(Keys::Static(Arc::new(set)))
            }
            Err(e) => {
                problems.push(format!("{pp}.keys_file"), e);
                Part::Refused
            }
        };
    }
    if p.jwks_uri.is_none() && !discovery {
        return Part::Absent;
    }
    remote_keys(p, pp, rsa_algs, warm, id, problems)
}

/// A JWKS cache shared across reloads (by its settings) for `jwks_uri` or discovery.
fn remote_keys(
    p: &ProviderConfig,
    pp: &str,
    rsa_algs: &[Algorithm],
    warm: &Warm,
    id: &mut String,
    problems: &mut Problems,
) -> Part<Keys> {
    let (source, key_path, url) = match &p.jwks_uri {
        Some(u) => (JwksSource::Uri(u.clone()), "jwks_uri", u.clone()),
        None => {
            if p.issuer.ends_with('/') {
                problems.push(
                    format!("{pp}.issuer"),
                    "discovery needs an issuer without a trailing slash",
                );
                return Part::Refused;
            }
            let issuer = p.issuer.clone();
            (JwksSource::Discovery { issuer }, "issuer", p.issuer.clone())
        }
    };
    if let Err(e) = url_allowed(&url, p.allow_http) {
        problems.push(format!("{pp}.{key_path}"), e);
        return Part::Refused;
    }
    let settings = JwksSettings {
        source,
        label: p.issuer.clone(),
        refresh: p.refresh,
        cooldown: p.unknown_kid_cooldown,
        allow_http: p.allow_http,
        rsa_default: rsa_algs.to_vec(),
    };
    let share = settings.share_key();
    id.push('|');
    id.push_str(&share);
    Part::Built(Keys::Remote(
        warm.shared(&share, || JwksCache::new(settings, warm)),
    ))
}
