//! `store: shared` and OpenID Connect Back-Channel Logout through the real edge and the real
//! provider: the session lives in the shared state (the cookie holds a sealed id only); when
//! the user's session ends at the provider, the provider POSTs a signed logout token to the
//! edge's `/oauth2/backchannel-logout`, and the edge session of that `sid` is gone. Forged and
//! unsigned logout tokens are refused.

mod common;
#[allow(dead_code)]
mod oidc;

use authedge::auth::oidc::session::open_session;
use authedge::tokens::seal::Sealer;
use common::{client, wait_for};
use oidc::login::{absolute, form_action, hidden_input, Jar, Setup, COOKIE_SECRET};
use serde_json::json;

#[test]
fn back_channel_logout_ends_a_shared_session() {
    let s = Setup::start("    store: shared\n");
    let mut jar = Jar::default();
    let (flow, authorize) = s.begin("/app");
    let cb = s.provider_login_in(&mut jar, &authorize, "alice@example.com");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 302);
    let session = oidc::login::session_cookies(&r);
    // The cookie is a sealed reference, not the session itself.
    let sealer = Sealer::new("oidc", b"main", &[("k1", COOKIE_SECRET.as_bytes())]).unwrap();
    let value = session.split_once('=').unwrap().1;
    assert!(open_session(&sealer, value, 0).is_none());
    assert!(value.len() < 200, "{value}");
    assert_eq!(s.page("/app/x", &session).status(), 200);

    // Forged logout tokens: unsigned, and signed by the provider for another audience.
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9.";
    let other_aud = s.op.sign(
        "RS256",
        json!({
            "iss": s.op.issuer, "aud": "someone-else", "iat": now(),
            "jti": "x1", "sub": "alice@example.com",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    for t in [unsigned, other_aud.as_str(), "garbage"] {
        let r = client()
            .post(s.edge.url("/oauth2/backchannel-logout"))
            .form(&[("logout_token", t)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{t}");
    }
    assert_eq!(s.page("/app/x", &session).status(), 200, "still logged in");

    // The user signs out at the provider (RP-initiated logout confirmed there): the provider
    // calls the edge's back-channel endpoint.
    let r = jar.get(&format!("{}/session/end?client_id=web", s.op.issuer));
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    let action = absolute(&s.op.issuer, &form_action(&page));
    let xsrf = hidden_input(&page, "xsrf");
    let r = jar.post(&action, &[("xsrf", xsrf.as_str()), ("logout", "yes")]);
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    wait_for(
        || s.page("/app/x", &session).status() == 302,
        "the edge session to end",
    );
    let r = client()
        .get(s.edge.url("/oauth2/userinfo"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
