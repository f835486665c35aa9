//! `oidc` session refresh through the real edge and the real provider: with `cookie_refresh`
//! and the `offline_access` scope, a session older than the interval is renewed with its
//! refresh token at the next request (a new cookie on the proxied response, the upstream still
//! sees the user); a refresh token the provider refuses (`invalid_grant`) ends the session.

mod common;
#[allow(dead_code)]
mod oidc;

use std::time::{Duration, Instant};

use authedge::auth::oidc::session::{open_session, seal_session};
use authedge::tokens::seal::Sealer;
use common::echo_json;
use oidc::login::{session_cookies, set_cookies, Setup, COOKIE_SECRET};

fn sealer() -> Sealer {
    Sealer::new("oidc", b"main", &[("k1", COOKIE_SECRET.as_bytes())]).unwrap()
}

fn start() -> Setup {
    Setup::start_scopes(
        "    cookie_refresh: 1s\n",
        "[openid, email, profile, groups, offline_access]",
    )
}

#[test]
fn an_old_session_is_refreshed_on_the_proxied_response() {
    let s = start();
    let (session, _) = s.login("alice@example.com", "/app");
    let value = session.split_once('=').unwrap().1;
    let first = open_session(&sealer(), value, 0).expect("session opens");
    assert!(first.rt.is_some(), "the refresh token is kept");
    // Poll until the session is older than cookie_refresh and the edge renews it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let renewed = loop {
        let r = s.page("/app/x", &session);
        assert_eq!(r.status(), 200);
        let fresh = session_cookies(&r);
        if !fresh.is_empty() {
            let v = echo_json(r);
            assert_eq!(v["headers"]["x-forwarded-user"], "alice@example.com");
            break fresh;
        }
        assert!(Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(200));
    };
    let second = open_session(&sealer(), renewed.split_once('=').unwrap().1, 0).unwrap();
    assert!(second.iat > first.iat);
    assert_eq!(second.user, first.user);
    // The renewed cookie is a session of its own.
    assert_eq!(s.page("/app/x", &renewed).status(), 200);
}

#[test]
fn a_refused_refresh_token_ends_the_session() {
    let s = start();
    let (session, _) = s.login("alice@example.com", "/app");
    let (name, value) = session.split_once('=').unwrap();
    let mut old = open_session(&sealer(), value, 0).unwrap();
    // Due for a refresh, with a refresh token the provider never issued.
    old.iat -= 3600;
    old.rt = Some("not-a-refresh-token-the-provider-knows".into());
    let forged = format!("{name}={}", seal_session(&sealer(), &old).unwrap());
    let r = s.page("/app/x", &forged);
    assert_eq!(r.status(), 401, "invalid_grant ends the session");
    let cleared = set_cookies(&r);
    assert!(
        cleared.iter().any(|(n, v)| n == name && v.is_empty()),
        "the session cookie is expired: {cleared:?}"
    );
    // The genuine session is unaffected until it is due itself.
    let mut due_soon = open_session(&sealer(), value, 0).unwrap();
    due_soon.iat += 3600;
    let ok = format!("{name}={}", seal_session(&sealer(), &due_soon).unwrap());
    assert_eq!(s.page("/app/x", &ok).status(), 200);
}
