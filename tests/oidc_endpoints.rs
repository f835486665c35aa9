//! A provider used without discovery (`endpoints:`, oauth2-proxy's LOGIN_URL / REDEEM_URL /
//! VALIDATE_URL): through the real edge and the real provider, a login whose identity comes
//! from the userinfo endpoint (no issuer, no keys, a 16-byte cookie secret), a login whose ID
//! token is checked against configured keys, and the same ID token refused when it names
//! another issuer than the configured one.

mod common;
#[allow(dead_code)]
mod oidc;

use common::{client, echo_json};
use oidc::login::{location, session_cookies, Setup};

/// The fixture issues access tokens for its userinfo endpoint (as a provider used without
/// discovery must).
const USERINFO: &[(&str, &str)] = &[("OIDC_USERINFO_TOKENS", "1")];

/// The provider block's `issuer:` line replaced by `with` (empty: no issuer).
fn endpoints(config: String, op: u16, issuer: Option<&str>, jwks: bool) -> String {
    let op = format!("http://127.0.0.1:{op}");
    let mut block = String::new();
    if let Some(i) = issuer {
        block.push_str(&format!("    issuer: \"{}\"\n", i.replace("OP", &op)));
    }
    block.push_str(&format!(
        "    endpoints:\n      authorization: \"{op}/auth\"\n      token: \"{op}/token\"\n      userinfo: \"{op}/me\"\n"
    ));
    if jwks {
        block.push_str(&format!("      jwks: \"{op}/jwks\"\n"));
    }
    let line = format!("    issuer: \"{op}\"\n");
    assert!(config.contains(&line), "{config}");
    config
        .replace(&line, &block)
        // oauth2-proxy's cookie secret size (the seed's `someSecret123456`).
        .replace(oidc::login::COOKIE_SECRET, "someSecret123456")
}

#[test]
fn without_discovery_or_keys_who_logged_in_is_what_userinfo_says() {
    let s = Setup::start_mapped(
        "",
        "[openid, email, profile, groups]",
        |c, op| endpoints(c, op, None, false),
        USERINFO,
    );
    let r = s.page("/app/x", "");
    assert_eq!(r.status(), 302);
    let (session, to) = s.login("alice+admins@example.com", "/app/x");
    assert_eq!(to, "/app/x");
    assert!(!session.is_empty());
    let v = echo_json(
        client()
            .get(s.edge.url("/app/x"))
            .header("cookie", &session)
            .send()
            .unwrap(),
    );
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-user"], "alice+admins@example.com");
    assert_eq!(h["x-forwarded-email"], "alice+admins@example.com");
    assert_eq!(h["x-forwarded-groups"], "admins");
    assert_eq!(h["x-forwarded-preferred-username"], "alice");
    let info: serde_json::Value = client()
        .get(s.edge.url("/oauth2/userinfo"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["email"], "alice+admins@example.com");
    // The domain policy still applies to what userinfo says.
    let (flow, authorize) = s.begin("/app/x");
    let cb = s.provider_login(&authorize, "eve@elsewhere.example");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 403);
    assert_eq!(session_cookies(&r), "");
}

#[test]
fn configured_keys_check_the_id_token_and_its_issuer() {
    let s = Setup::start_mapped(
        "",
        "[openid, email, profile, groups]",
        |c, op| endpoints(c, op, Some("OP"), true),
        USERINFO,
    );
    let (session, to) = s.login("bob@example.com", "/app/y");
    assert_eq!(to, "/app/y");
    let v = echo_json(
        client()
            .get(s.edge.url("/app/y"))
            .header("cookie", &session)
            .send()
            .unwrap(),
    );
    assert_eq!(v["headers"]["x-forwarded-email"], "bob@example.com");

    // The same provider and keys, but another issuer configured: its ID tokens are refused.
    let s = Setup::start_mapped(
        "",
        "[openid, email, profile, groups]",
        |c, op| endpoints(c, op, Some("OP/not-this-issuer"), true),
        USERINFO,
    );
    let (flow, authorize) = s.begin("/app/y");
    let cb = s.provider_login(&authorize, "bob@example.com");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 401, "{:?}", r.headers());
    assert_eq!(session_cookies(&r), "");
    let r = s.page("/app/y", "");
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with("/oauth2/start"));
}
