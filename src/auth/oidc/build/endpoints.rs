//! Where a provider is found: the issuer (discovery, or the `iss` configured keys check) and
//! the endpoints of a provider used without discovery, each checked with its key path.

use openidconnect::{AuthUrl, EndSessionUrl, IssuerUrl, JsonWebKeySetUrl, TokenUrl, UserInfoUrl};

use super::super::client::Fixed;
use super::super::config::OidcProviderConfig;
use crate::config::Problems;

/// The issuer: required for discovery and for ID tokens checked against configured keys.
/// With endpoints and no keys it may be left out; the authorization endpoint then stands in
/// for it in logs (nothing is checked against it).
pub(super) fn check_issuer(
    c: &OidcProviderConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<IssuerUrl> {
    let p = format!("{path}.issuer");
    let given = match (&c.issuer, &c.endpoints) {
        (Some(i), _) => i.clone(),
        (None, Some(e)) if e.jwks.is_none() => e.authorization.clone(),
        (None, Some(_)) => {
            problems.push(
                p,
                "required with endpoints.jwks (the ID token's iss is checked)",
            );
            return None;
        }
        (None, None) => {
            problems.push(p, "required (discovery), or name the provider's endpoints");
            return None;
        }
    };
    match url::Url::parse(&given) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(_) => {
            problems.push(p, "must be an http or https URL");
            return None;
        }
        Err(e) => {
            problems.push(p, format!("not a URL: {e}"));
            return None;
        }
    }
    match IssuerUrl::new(given) {
        Ok(i) => Some(i),
        Err(e) => {
            problems.push(p, format!("not a URL: {e}"));
            None
        }
    }
}

/// An endpoint URL: `https`, or `http` to a loopback address only (tests, a sidecar).
fn endpoint_url(v: &str, key: &str, problems: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(v) {
        Ok(u) if u.scheme() == "https" => Some(u),
        Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
        Ok(_) => {
            problems.push(key, "must be https (http only to a loopback address)");
            None
        }
        Err(e) => {
            problems.push(key, format!("not a URL: {e}"));
            None
        }
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// The configured endpoints (no discovery), each checked; `None` also for discovery.
pub(super) fn fixed_endpoints(
    c: &OidcProviderConfig,
    path: &str,
    problems: &mut Problems,
) -> Option<Fixed> {
    let e = c.endpoints.as_ref()?;
    let key = |k: &str| format!("{path}.endpoints.{k}");
    let opt = |v: &Option<String>, k: &str, problems: &mut Problems| {
        v.as_deref().map(|v| endpoint_url(v, &key(k), problems))
    };
    let authorization = endpoint_url(&e.authorization, &key("authorization"), problems);
    let token = endpoint_url(&e.token, &key("token"), problems);
    let userinfo = opt(&e.userinfo, "userinfo", problems);
    let jwks = opt(&e.jwks, "jwks", problems);
    let end_session = opt(&e.end_session, "end_session", problems);
    if e.jwks.is_none() && e.userinfo.is_none() {
        problems.push(
            format!("{path}.endpoints"),
            "name jwks (to check ID tokens) or userinfo (who logged in), or both",
        );
        return None;
    }
    // `Some(None)`: named but invalid (already reported).
    let (userinfo, jwks, end_session) = (
        userinfo.map(|u| u.ok_or(())).transpose().ok()?,
        jwks.map(|u| u.ok_or(())).transpose().ok()?,
        end_session.map(|u| u.ok_or(())).transpose().ok()?,
    );
    Some(Fixed {
        authorization: AuthUrl::from_url(authorization?),
        token: TokenUrl::from_url(token?),
        userinfo: userinfo.map(UserInfoUrl::from_url),
        jwks: jwks.map(JsonWebKeySetUrl::from_url),
        end_session: end_session.map(EndSessionUrl::from_url),
    })
}
