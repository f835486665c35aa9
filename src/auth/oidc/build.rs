//! Building `oidc` providers and filters at config load. Every problem names its key path
//! (`oidc.main.cookie_secrets[0].secret`). A provider's discovery client is shared through the
//! context, so a reload keeps the discovered metadata of an unchanged provider; discovery runs
//! in the background (never at load: a provider that is down must not stop the edge, its routes
//! answer 503 until it is back).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use openidconnect::IssuerUrl;
use sha2::{Digest, Sha256};

use super::client::{Fixed, ProviderClient};

mod endpoints;
use super::config::{OidcProviderConfig, OidcRouteConfig};
use super::endpoints::{OidcEndpoint, Which};
use super::policy::Policy;
use super::redirect::Origin;
use super::session::{CookieJar, CookieSettings};
use super::store::{Backend, StoreKind};
use super::{HeaderSet, OidcSession, Provider};
use crate::auth::endpoint::EndpointAt;
use crate::auth::{Built, Endpoint};
use crate::config::{header_name, Problems};
use crate::context::Context;
use crate::state::Store;
use crate::tokens::seal::Sealer;
use endpoints::{check_issuer, fixed_endpoints};

/// Endpoints of one provider, with the config path they belong to.
pub type ProviderEndpoints = Vec<(String, Vec<(EndpointAt, Arc<dyn Endpoint>)>)>;

/// Build every provider under `oidc:`.
pub fn build_providers(
    cfg: &BTreeMap<String, OidcProviderConfig>,
    warm: &Context,
    state: &Store,
    problems: &mut Problems,
) -> (HashMap<String, Arc<Provider>>, ProviderEndpoints) {
    let mut providers = HashMap::new();
    let mut endpoints = Vec::new();
    for (name, c) in cfg {
        let path = format!("oidc.{name}");
        let Some(p) = build_provider(name, c, &path, warm, state, problems) else {
            continue;
        };
        let p = Arc::new(p);
        let list = Which::ALL
            .iter()
            .map(|(which, suffix)| {
                let at = format!("{}{suffix}", p.prefix);
                let at = match &c.host {
                    Some(h) => EndpointAt::on_host(h, at),
                    None => EndpointAt::any_host(at),
                };
                let e: Arc<dyn Endpoint> = Arc::new(OidcEndpoint {
                    provider: p.clone(),
                    state: state.clone(),
                    which: *which,
                });
                (at, e)
            })
            .collect();
        endpoints.push((path, list));
        providers.insert(name.clone(), p);
    }
    (providers, endpoints)
}

/// A route's filter naming a provider.
pub fn build_filter(
    c: &OidcRouteConfig,
    providers: &HashMap<String, Arc<Provider>>,
    known: &BTreeMap<String, OidcProviderConfig>,
    path: &str,
) -> Result<Built, Problems> {
    let mut problems = Problems::default();
    let Some(p) = providers.get(&c.provider) else {
        if !known.contains_key(&c.provider) {
            problems.push(
                format!("{path}.provider"),
                format!(
                    "unknown oidc provider {:?} (define it under oidc:)",
                    c.provider
                ),
            );
        }
        // A provider that failed to build has reported its own problems.
        return Err(problems);
    };
    if c.email_domains.as_ref().is_some_and(Vec::is_empty) {
        problems.push(
            format!("{path}.email_domains"),
            "an empty list admits no one",
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let policy = Policy::new(
        c.email_domains.as_deref(),
        &c.allowed_emails,
        &c.allowed_groups,
    );
    Ok(Built::filter(Arc::new(OidcSession {
        provider: p.clone(),
        policy,
        api: c.api,
        cookies: p.jar.names(),
        identity_headers: p.headers.names(),
    })))
}

fn build_provider(
    name: &str,
    c: &OidcProviderConfig,
    path: &str,
    warm: &Context,
    state: &Store,
    problems: &mut Problems,
) -> Option<Provider> {
    let before = problems.0.len();
    let issuer = check_issuer(c, path, problems);
    let fixed = fixed_endpoints(c, path, problems);
    let secret = client_secret(c, path, problems);
    if c.client_id.is_empty() {
        problems.push(format!("{path}.client_id"), "must not be empty");
    }
    let sealer = sealer(name, c, path, problems);
    check_prefix_and_urls(c, path, problems);
    let origins = origins(c, path, problems);
    check_cookie(c, path, problems);
    check_times(c, path, problems);
    check_policy(c, path, problems);
    let headers = headers(c, path, problems);
    if problems.0.len() > before {
        return None;
    }
    let (issuer, sealer) = (issuer?, sealer?);
    let client = shared_client(c, issuer, fixed, secret, warm);
    let jar = CookieJar::new(&CookieSettings {
        name: &c.cookie_name,
        secure: c.cookie_secure,
        domain: c.cookie_domain.as_deref(),
        path: &c.cookie_path,
        max_age: c.cookie_expire.as_secs(),
    });
    Some(Provider {
        name: name.into(),
        client,
        sealer,
        jar,
        prefix: c.prefix.as_str().into(),
        redirect_url: c.redirect_url.as_deref().map(Into::into),
        allowed_origins: origins,
        policy: Policy::new(
            c.email_domains.as_deref(),
            &c.allowed_emails,
            &c.allowed_groups,
        ),
        headers,
        issuer: c
            .issuer
            .as_deref()
            .and_then(|i| HeaderValue::from_str(i).ok()),
        cookie_expire: c.cookie_expire,
        flow_ttl: c.flow_ttl,
        skip_provider_button: c.skip_provider_button,
        allow_unverified_email: c.allow_unverified_email,
        sign_out_at_provider: c.sign_out_at_provider,
        post_logout_redirect_url: c.post_logout_redirect_url.as_deref().map(Into::into),
        groups_claim: c.groups_claim.as_str().into(),
        user_claim: c.user_claim.as_str().into(),
        pass_access_token: c.pass_access_token,
        pass_authorization_header: c.pass_authorization_header,
        client_id: c.client_id.as_str().into(),
        cookie_refresh: c.cookie_refresh,
        refresher: Default::default(),
        backend: match c.store {
            StoreKind::Cookie => {
                Backend::Cookie(crate::tokens::memo::Memo::new(super::store::SESSION_MEMO))
            }
            StoreKind::Shared => Backend::Shared(state.clone()),
        },
    })
}

/// The client secret, resolved (UTF-8).
fn client_secret(c: &OidcProviderConfig, path: &str, problems: &mut Problems) -> Option<String> {
    c.client_secret.as_ref().and_then(|s| match s.resolve() {
        Ok(v) => match String::from_utf8(v.expose().to_vec()) {
            Ok(s) => Some(s),
            Err(_) => {
                problems.push(format!("{path}.client_secret"), "must be UTF-8");
                None
            }
        },
        Err(m) => {
            problems.push(format!("{path}.client_secret"), m);
            None
        }
    })
}

/// Who may log in must be said; the claims read must be named.
fn check_policy(c: &OidcProviderConfig, path: &str, problems: &mut Problems) {
    match &c.email_domains {
        None => problems.push(
            format!("{path}.email_domains"),
            "say who may log in: a list of domains, or [\"*\"] for any",
        ),
        Some(d) if d.is_empty() => problems.push(
            format!("{path}.email_domains"),
            "an empty list admits no one",
        ),
        _ => {}
    }
    for (k, v) in [
        ("groups_claim", &c.groups_claim),
        ("user_claim", &c.user_claim),
    ] {
        if v.is_empty() {
            problems.push(format!("{path}.{k}"), "must not be empty");
        }
    }
}

/// The discovery client, shared across reloads while issuer and registration are unchanged,
/// with its background upkeep (not for `check`).
fn shared_client(
    c: &OidcProviderConfig,
    issuer: IssuerUrl,
    fixed: Option<Fixed>,
    secret: Option<String>,
    warm: &Context,
) -> Arc<ProviderClient> {
    let mut h = Sha256::new();
    let e = c.endpoints.as_ref();
    let parts = [
        Some(issuer.as_str()),
        Some(c.client_id.as_str()),
        e.map(|e| e.authorization.as_str()),
        e.map(|e| e.token.as_str()),
        e.and_then(|e| e.userinfo.as_deref()),
        e.and_then(|e| e.jwks.as_deref()),
        e.and_then(|e| e.end_session.as_deref()),
    ];
    for part in parts {
        h.update(part.unwrap_or("\u{1}").as_bytes());
        h.update([0]);
    }
    h.update(secret.as_deref().unwrap_or("").as_bytes());
    h.update(c.scopes.join(" ").as_bytes());
    h.update(c.timeout.as_millis().to_le_bytes());
    let key = format!("oidc:{}:{:x}", issuer.as_str(), h.finalize());
    let mut fresh = false;
    let client = warm.shared(&key, || {
        fresh = true;
        ProviderClient::new(
            issuer,
            &c.client_id,
            secret,
            &c.scopes,
            c.timeout,
            warm.outbound.clone(),
            fixed,
        )
    });
    if fresh && !warm.dry_run {
        let weak = Arc::downgrade(&client);
        warm.spawn_for(&key, async move {
            // Until the first success: 1 s, doubling to 30 s between tries; then hourly.
            let mut backoff = 1;
            loop {
                let Some(c) = weak.upgrade() else { return };
                let ok = c.discover(0).await;
                drop(c);
                let wait = if ok { 3600 } else { backoff };
                backoff = if ok { 1 } else { (backoff * 2).min(30) };
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
        });
    }
    client
}

fn sealer(
    name: &str,
    c: &OidcProviderConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<Sealer> {
    if c.cookie_secrets.is_empty() {
        problems.push(
            format!("{path}.cookie_secrets"),
            "at least one key is needed (the first seals, all open)",
        );
        return None;
    }
    let mut secrets = Vec::with_capacity(c.cookie_secrets.len());
    for (i, k) in c.cookie_secrets.iter().enumerate() {
        match k.secret.resolve() {
            Ok(s) => secrets.push((k.id.as_str(), s)),
            Err(m) => problems.push(format!("{path}.cookie_secrets[{i}].secret"), m),
        }
    }
    if secrets.len() != c.cookie_secrets.len() {
        return None;
    }
    let pairs: Vec<(&str, &[u8])> = secrets.iter().map(|(id, s)| (*id, s.expose())).collect();
    for (i, (_, s)) in pairs.iter().enumerate() {
        if s.len() < 32 && s.len() != 16 && s.len() != 24 {
            problems.push(
                format!("{path}.cookie_secrets[{i}].secret"),
                format!("is {} bytes: give 16, 24 or at least 32", s.len()),
            );
            return None;
        }
    }
    match Sealer::with_min_secret("oidc", name.as_bytes(), &pairs, 16) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("{path}.cookie_secrets[{}]", e.index), e.reason);
            None
        }
    }
}

fn check_prefix_and_urls(c: &OidcProviderConfig, path: &str, problems: &mut Problems) {
    let pre = &c.prefix;
    let ok = pre.starts_with('/')
        && pre.len() > 1
        && !pre.ends_with('/')
        && !pre.contains("//")
        && pre
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if !ok {
        problems.push(
            format!("{path}.prefix"),
            "a path like /oauth2: starts with /, no trailing /, letters digits - _ . ~",
        );
    }
    if let Some(r) = &c.redirect_url {
        match url::Url::parse(r) {
            Ok(u) if u.path() == format!("{pre}/callback") => {}
            Ok(_) => problems.push(
                format!("{path}.redirect_url"),
                format!("its path must be {pre}/callback (where the edge serves the callback)"),
            ),
            Err(e) => problems.push(format!("{path}.redirect_url"), format!("not a URL: {e}")),
        }
    }
    if let Some(r) = &c.post_logout_redirect_url {
        if let Err(e) = url::Url::parse(r) {
            problems.push(
                format!("{path}.post_logout_redirect_url"),
                format!("not a URL: {e}"),
            );
        }
    }
}

fn origins(c: &OidcProviderConfig, path: &str, problems: &mut Problems) -> Vec<Origin> {
    let mut out = Vec::new();
    for (i, o) in c.allowed_redirect_origins.iter().enumerate() {
        match Origin::parse(o) {
            Ok(o) => out.push(o),
            Err(m) => problems.push(format!("{path}.allowed_redirect_origins[{i}]"), m),
        }
    }
    out
}

fn cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_cookie(c: &OidcProviderConfig, path: &str, problems: &mut Problems) {
    if !cookie_token(&c.cookie_name) || c.cookie_name.len() > 64 {
        problems.push(
            format!("{path}.cookie_name"),
            "1 to 64 characters of A-Z a-z 0-9 - _ .",
        );
    }
    if c.cookie_name.starts_with("__Host-") && !c.cookie_secure {
        problems.push(
            format!("{path}.cookie_name"),
            "a __Host- cookie must be Secure (cookie_secure: true)",
        );
    }
    if !c.cookie_path.starts_with('/')
        || !c
            .cookie_path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';')
    {
        problems.push(format!("{path}.cookie_path"), "a path starting with /");
    }
    if let Some(d) = &c.cookie_domain {
        if !cookie_token(d.trim_start_matches('.')) {
            problems.push(format!("{path}.cookie_domain"), "a domain name");
        }
    }
}

fn check_times(c: &OidcProviderConfig, path: &str, problems: &mut Problems) {
    let checks = [
        ("cookie_expire", c.cookie_expire, 60, 366 * 86400),
        ("flow_ttl", c.flow_ttl, 10, 3600),
        ("timeout", c.timeout, 0, 60),
        (
            "cookie_refresh",
            c.cookie_refresh.unwrap_or(Duration::from_secs(60)),
            1,
            366 * 86400,
        ),
    ];
    for (k, d, min, max) in checks {
        if d < Duration::from_secs(min).max(Duration::from_millis(100))
            || d > Duration::from_secs(max)
        {
            problems.push(
                format!("{path}.{k}"),
                format!("between {min}s and {max}s (at least 100ms)"),
            );
        }
    }
}

fn headers(c: &OidcProviderConfig, path: &str, problems: &mut Problems) -> HeaderSet {
    let h = &c.headers;
    let p = |k: &str| format!("{path}.headers.{k}");
    HeaderSet {
        user: header_name(&h.user, &p("user"), problems),
        email: header_name(&h.email, &p("email"), problems),
        groups: header_name(&h.groups, &p("groups"), problems),
        preferred_username: header_name(&h.preferred_username, &p("preferred_username"), problems),
        access_token: header_name(&h.access_token, &p("access_token"), problems),
    }
}
