//! The `oidc` mode through the real edge binary and the real provider (`oidc-provider`), driven
//! by a plain HTTP client: a login end to end with the identity upstream, and every refusal the
//! callback owes (state mismatch, replayed callback, nonce mismatch, missing or expired flow
//! cookie), the `rd` open-redirect vectors, hostile session cookies, API-style 401s, and the
//! domain and group 403s.

mod common;
#[allow(dead_code)]
mod oidc;

use authedge::auth::oidc::client::{LoginError, ProviderClient};
use authedge::auth::oidc::session::{open_flow, seal_flow, Flow};
use authedge::tokens::seal::Sealer;
use common::{client, echo_json};
use oidc::login::{location, session_cookies, set_cookies, Setup, COOKIE_SECRET};

fn sealer() -> Sealer {
    Sealer::new("oidc", b"main", &[("k1", COOKIE_SECRET.as_bytes())]).unwrap()
}

fn flow_of(cookie_pair: &str) -> Flow {
    let value = cookie_pair.split_once('=').unwrap().1;
    open_flow(&sealer(), value, 0).expect("the edge's flow cookie opens")
}

fn query_param(url: &str, name: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

/// No session cookie set (a refused callback sets none; it may expire old ones).
fn assert_no_session(r: &reqwest::blocking::Response) {
    assert_eq!(session_cookies(r), "", "no session cookie may be set");
}

#[test]
fn login_end_to_end_identity_upstream_userinfo_auth_and_sign_out() {
    let s = Setup::start("");
    // A page load without a session: to the login, carrying where it came from.
    let r = s.page("/app/page?x=1", "");
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/oauth2/start?rd=%2Fapp%2Fpage%3Fx%3D1");
    let (flow, authorize) = s.begin("/app/page?x=1");
    // PKCE S256, state and nonce on the authorize request, all bound to the flow cookie.
    let f = flow_of(&flow);
    assert_eq!(query_param(&authorize, "code_challenge_method"), "S256");
    assert_eq!(query_param(&authorize, "state"), f.st);
    assert_eq!(query_param(&authorize, "nonce"), f.n);
    assert!(query_param(&authorize, "scope").contains("groups"));
    let cb = s.provider_login(&authorize, "alice@example.com");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/app/page?x=1");
    let cleared = set_cookies(&r);
    assert!(
        cleared
            .iter()
            .any(|(n, v)| n.ends_with("_flow") && v.is_empty()),
        "flow cookie expired: {cleared:?}"
    );
    let session = session_cookies(&r);
    assert!(session.starts_with("_authedge="), "{session}");
    // The upstream sees who it is; client copies of the headers and the session cookie do not
    // pass.
    let v = echo_json(
        client()
            .get(s.edge.url("/app/page"))
            .header("cookie", format!("theme=dark; {session}"))
            .header("x-forwarded-user", "mallory")
            .header("X_Forwarded_Email", "mallory@example.com")
            .send()
            .unwrap(),
    );
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-user"], "alice@example.com");
    assert_eq!(h["x-forwarded-email"], "alice@example.com");
    assert_eq!(h["x-forwarded-preferred-username"], "alice");
    assert_eq!(h["x-auth-subject"], "alice@example.com");
    assert_eq!(h["x-auth-mode"], "oidc");
    assert_eq!(h["cookie"], "theme=dark", "session cookie stripped: {v}");
    assert!(h.get("x_forwarded_email").is_none());
    // userinfo and the forward-auth endpoint.
    let u: serde_json::Value = client()
        .get(s.edge.url("/oauth2/userinfo"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["preferred_username"], "alice");
    let r = client()
        .get(s.edge.url("/oauth2/auth"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-email"], "alice@example.com");
    assert_eq!(r.headers()["x-auth-request-user"], "alice@example.com");
    let r = client().get(s.edge.url("/oauth2/auth")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(s.edge.url("/oauth2/userinfo")).send().unwrap();
    assert_eq!(r.status(), 401);
    // Sign out: cookies expired, then the provider's end-session endpoint with the ID token.
    let r = client()
        .get(s.edge.url("/oauth2/sign_out?rd=%2Fpublic"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    assert!(loc.starts_with(&s.op.issuer), "{loc}");
    assert!(!query_param(&loc, "id_token_hint").is_empty());
    assert_eq!(query_param(&loc, "client_id"), "web");
    let expired = set_cookies(&r);
    assert!(expired
        .iter()
        .any(|(n, v)| n == "_authedge" && v.is_empty()));
}

#[test]
fn api_style_requests_get_401_and_page_loads_a_redirect() {
    let s = Setup::start("");
    let c = client();
    let cases = [
        c.get(s.edge.url("/app/x"))
            .header("accept", "application/json"),
        c.get(s.edge.url("/app/x")),
        c.post(s.edge.url("/app/x")).header("accept", "text/html"),
        c.get(s.edge.url("/app/x"))
            .header("accept", "text/html")
            .header("x-requested-with", "XMLHttpRequest"),
        c.get(s.edge.url("/api/x")).header("accept", "text/html"),
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let r = req.send().unwrap();
        assert_eq!(r.status(), 401, "case {i}");
        assert!(r.headers().get("location").is_none());
    }
    assert_eq!(s.page("/app/x", "").status(), 302);
    assert_eq!(s.page("/public/x", "").status(), 200);
}

#[test]
fn state_mismatch_missing_expired_or_forged_flow_cookies_are_refused() {
    let s = Setup::start("");
    let (flow_a, authorize_a) = s.begin("/app/a");
    let (flow_b, _) = s.begin("/app/b");
    let cb = s.provider_login(&authorize_a, "alice@example.com");
    // The callback of login A with the flow cookie of login B: state mismatch.
    let r = s.callback(&cb, &flow_b);
    assert_eq!(r.status(), 400);
    assert_no_session(&r);
    // No flow cookie at all.
    let r = s.callback(&cb, "");
    assert_eq!(r.status(), 400);
    assert_no_session(&r);
    // Login A's own flow, but expired: sealed with the right key and state, exp in the past.
    let mut f = flow_of(&flow_a);
    f.exp = 1;
    let name = flow_a.split_once('=').unwrap().0;
    let expired = format!("{name}={}", seal_flow(&sealer(), &f).unwrap());
    let r = s.callback(&cb, &expired);
    assert_eq!(r.status(), 400);
    assert_no_session(&r);
    // A flow cookie sealed with another key.
    let other = Sealer::new("oidc", b"main", &[("k1", &[9u8; 32])]).unwrap();
    f.exp = i64::MAX / 2;
    let forged = format!("{name}={}", seal_flow(&other, &f).unwrap());
    let r = s.callback(&cb, &forged);
    assert_eq!(r.status(), 400);
    assert_no_session(&r);
    // The genuine pair still works once (the failures above consumed nothing) ...
    let r = s.callback(&cb, &flow_a);
    assert_eq!(r.status(), 302);
    assert!(!session_cookies(&r).is_empty());
    // ... and never twice: a replayed callback (same code, same flow cookie) is refused.
    let r = s.callback(&cb, &flow_a);
    assert_eq!(r.status(), 400);
    assert_no_session(&r);
}

#[test]
fn replayed_code_with_a_fresh_flow_is_refused_by_the_provider() {
    let s = Setup::start("");
    let (flow, authorize) = s.begin("/app/a");
    let cb = s.provider_login(&authorize, "alice@example.com");
    assert_eq!(s.callback(&cb, &flow).status(), 302);
    // The same code again under a new state we control: the edge's single-use check passes,
    // the provider refuses the used code.
    let mut f = flow_of(&flow);
    f.st = "another-state".into();
    let name = flow.split_once('=').unwrap().0;
    let forged = format!("{name}={}", seal_flow(&sealer(), &f).unwrap());
    let code = query_param(&cb, "code");
    let cb2 = s
        .edge
        .url(&format!("/oauth2/callback?code={code}&state=another-state"));
    let r = s.callback(&cb2, &forged);
    assert_eq!(r.status(), 401);
    assert_no_session(&r);
}

#[test]
fn nonce_mismatch_is_refused() {
    let s = Setup::start("");
    let (flow, authorize) = s.begin("/app/a");
    // The provider puts whatever nonce the authorize request carries into the ID token.
    let mut u = url::Url::parse(&authorize).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "evil-nonce".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let cb = s.provider_login(u.as_str(), "alice@example.com");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 401);
    assert_no_session(&r);
}

#[test]
fn rd_open_redirect_vectors_fall_back_to_slash() {
    let s = Setup::start("    allowed_redirect_origins: [\"https://example.com\"]\n");
    for rd in [
        "//evil.com",
        "/\\evil.com",
        "\\/\\/evil.com",
        "/%09/evil.com",
        "/\t/evil.com",
        "/%0d%0a//evil.com",
        "/%2F%2Fevil.com",
        "https:evil.com",
        "http:/\\evil.com",
        "https://example.com@evil.com",
        "https://evil.com#@example.com",
        "https://example.com.evil.com",
        "https://evil-example.com",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://exаmple.com/",
        "HTTPS://EVIL.COM/",
        "https://example.com./",
        "http://example.com/",
    ] {
        let (flow, _) = s.begin(rd);
        assert_eq!(flow_of(&flow).rd, "/", "{rd:?}");
    }
    for ok in [
        "/app/page?x=1",
        "https://example.com/x",
        "https://example.com:443/",
    ] {
        let (flow, _) = s.begin(ok);
        assert_eq!(flow_of(&flow).rd, ok);
    }
    // A whole login with a bad rd lands on `/`.
    let (_, to) = s.login("alice@example.com", "//evil.com/x");
    assert_eq!(to, "/");
}

#[test]
fn hostile_session_cookies_are_no_session() {
    let s = Setup::start("");
    let (session, _) = s.login("alice@example.com", "/app");
    assert_eq!(s.page("/app/x", &session).status(), 200);
    let value = session.split_once('=').unwrap().1;
    let mut many = String::new();
    for i in 0..500 {
        many.push_str(&format!("c{i}=v{i:08}; "));
    }
    let big = format!("_authedge={}", "A".repeat(8 * 1024));
    // The edge has just seen the session, so its memo holds it: the same length and last bytes
    // (what the memo's hash reads) with one character changed in the middle must be a miss,
    // opened in full, and refused.
    let mut flipped = value.as_bytes().to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let flipped = format!("_authedge={}", String::from_utf8(flipped).unwrap());
    let cases = [
        flipped,
        format!("_authedge={}", &value[..value.len() - 5]),
        format!("_authedge={}x", value),
        // Chunk 1 missing: only chunk 0 counts, half a sealed text.
        format!(
            "_authedge_0={}; _authedge_2={}",
            &value[..value.len() / 2],
            &value[value.len() / 2..]
        ),
        format!("_authedge_1={value}; _authedge_0=AAAA"),
        big,
        many.clone(),
        format!("{many}_authedge=garbage"),
    ];
    for (i, c) in cases.iter().enumerate() {
        let r = s.page("/app/x", c);
        assert_eq!(r.status(), 302, "case {i}: a login redirect, not a session");
        let r = client()
            .get(s.edge.url("/api/x"))
            .header("cookie", c)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "case {i}");
    }
    // 500 cookies with the good session among them: still the session.
    assert_eq!(s.page("/app/x", &format!("{many}{session}")).status(), 200);
}

#[test]
fn large_sessions_are_chunked_and_each_chunk_matters() {
    let s = Setup::start("");
    let groups: Vec<String> = (0..150).map(|i| format!("team-{i:03}")).collect();
    let login = format!("carol+{}@example.com", groups.join("."));
    let (session, _) = s.login(&login, "/app");
    let names: Vec<&str> = session
        .split("; ")
        .map(|p| p.split_once('=').unwrap().0)
        .collect();
    assert!(
        names.len() >= 2 && names.contains(&"_authedge_0"),
        "{names:?}"
    );
    let v = echo_json(s.page("/app/x", &session));
    let got = v["headers"]["x-forwarded-groups"].as_str().unwrap();
    assert_eq!(got, groups.join(","));
    assert!(v["headers"].get("cookie").is_none(), "every chunk stripped");
    // Without its last chunk the session is gone.
    let short = session.rsplit_once("; ").unwrap().0;
    assert_eq!(s.page("/app/x", short).status(), 302);
}

#[test]
fn domain_group_and_unverified_email_denials_are_403() {
    let s = Setup::start("");
    // Another domain: the login is refused, no session.
    let (flow, authorize) = s.begin("/app");
    let cb = s.provider_login(&authorize, "bob@other.test");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 403);
    assert_no_session(&r);
    // Unverified e-mail: refused.
    let (flow, authorize) = s.begin("/app");
    let cb = s.provider_login(&authorize, "unverified@example.com");
    let r = s.callback(&cb, &flow);
    assert_eq!(r.status(), 403);
    assert_no_session(&r);
    // A user without the group: /app passes, /admin is 403 (no login loop).
    let (plain, _) = s.login("alice@example.com", "/app");
    assert_eq!(s.page("/app/x", &plain).status(), 200);
    let r = s.page("/admin/x", &plain);
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
    let (admin, _) = s.login("alice+admins@example.com", "/admin");
    let v = echo_json(s.page("/admin/x", &admin));
    assert_eq!(v["headers"]["x-forwarded-groups"], "admins");
}

#[test]
fn id_tokens_for_another_audience_expired_or_with_another_nonce_are_refused() {
    let s = Setup::start("");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = authedge::outbound::Outbound::new(rt.handle().clone()).unwrap();
    let c = ProviderClient::new(
        openidconnect::IssuerUrl::new(s.op.issuer.clone()).unwrap(),
        "web",
        Some("secret-web".into()),
        &[],
        std::time::Duration::from_secs(5),
        out,
        None,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Signed by the provider's own key, with claims it would not issue for this client.
    let token = |aud: &str, exp: i64, nonce: &str| {
        let claims = serde_json::json!({
            "iss": s.op.issuer, "aud": aud, "sub": "alice@example.com",
            "iat": now - 10, "exp": exp, "nonce": nonce,
        });
        let v = s.op.admin(
            "sign",
            serde_json::json!({"alg": "RS256", "claims": claims, "header": {"typ": "JWT"}}),
        );
        v["token"].as_str().unwrap().to_string()
    };
    let check = |t: String| rt.block_on(c.verify_id_token(&t, "n1"));
    assert_eq!(
        check(token("web", now + 300, "n1")),
        Ok(()),
        "the control passes"
    );
    for (what, t) in [
        ("another audience", token("other-client", now + 300, "n1")),
        ("expired", token("web", now - 120, "n1")),
        ("another nonce", token("web", now + 300, "n2")),
    ] {
        assert!(
            matches!(check(t), Err(LoginError::BadIdToken(_))),
            "{what} must be refused"
        );
    }
}
