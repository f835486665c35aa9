//! The `pkce` mode end to end: the real authedge binary in front of the real oidc-provider
//! fixture, configured with a confidential client it does not hold to PKCE, and the same client
//! flow against the real goeven/oauth-pkce-proxy peer (`../shared/peers/bin/oauth-pkce-proxy`),
//! with every difference asserted.

mod common;
#[path = "pkce/deploy.rs"]
mod deploy;
#[path = "pkce/flow.rs"]
mod flow;
#[path = "pkce/provider.rs"]
mod provider;

use std::time::Duration;

use common::client;
use flow::*;
use provider::Browser;

#[test]
fn the_whole_flow_through_authedge_and_the_peer() {
    let s = Setup::start("");
    let (verifier, challenge) = pkce_pair(64);
    // authedge: the provider sees the edge's client id and callback, and a sealed state.
    let a = s.authedge();
    let mut b = Browser::new(&s.op.base);
    let step = b.get(&a.authorize_url(&Proxy::params(CLIENT, REDIRECT, &challenge)));
    let at_op = step.location.expect("to the provider");
    assert_eq!(q(&at_op, "client_id").as_deref(), Some("edge-client"));
    assert_eq!(
        q(&at_op, "redirect_uri"),
        Some(s.edge.url("/oauth/callback"))
    );
    assert_eq!(
        q(&at_op, "scope").as_deref(),
        Some("openid email offline_access")
    );
    assert_eq!(q(&at_op, "prompt").as_deref(), Some("consent"));
    assert!(
        q(&at_op, "code_challenge").is_none(),
        "no PKCE toward the provider"
    );
    assert_ne!(q(&at_op, "state").as_deref(), Some("client-state-1"));
    let callback = b.login(&at_op, "alice@example.com");
    let step = b.get(&callback);
    assert_eq!(step.status, 302);
    let code = code_of(&step.location.expect("to the client"), REDIRECT);
    let (status, tokens, headers) = a.token(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", &verifier),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
    ]);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    // The provider's JSON as it answered: id_token, expires_in and scope are kept.
    for k in [
        "access_token",
        "id_token",
        "refresh_token",
        "expires_in",
        "scope",
        "token_type",
    ] {
        assert!(tokens.get(k).is_some(), "{k} missing: {tokens}");
    }
    // Refresh is relayed with the edge's credentials.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed, _) = a.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", CLIENT),
    ]);
    assert_eq!(status, 200, "{refreshed}");
    assert!(refreshed["access_token"].is_string());
    let (status, v, _) = a.token(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", "nobody"),
    ]);
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));

    // The same client flow against the peer works too ...
    let p = s.peer();
    let (verifier, challenge) = pkce_pair(64);
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let (status, tokens) = p.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 200, "{tokens}");
    // ... but it answers with Go's oauth2.Token, not the provider's JSON: no id_token.
    assert!(tokens["access_token"].is_string());
    assert!(
        tokens.get("id_token").is_none() && tokens.get("expiry").is_some(),
        "{tokens}"
    );
}

#[test]
fn refusals_authedge_versus_the_peer() {
    let s = Setup::start("");
    let (a, p) = (s.authedge(), s.peer());
    let (verifier, challenge) = pkce_pair(64);

    // A plain challenge: both refuse at authorize; authedge sends the error back to the
    // client's (checked) redirect URI, the peer answers 400 itself.
    let mut plain = Proxy::params(CLIENT, REDIRECT, &verifier);
    plain[4] = ("code_challenge_method", "plain");
    let step = Browser::new(&s.op.base).get(&a.authorize_url(&plain));
    let l = step.location.unwrap_or_default();
    assert!(l.starts_with(REDIRECT) && q(&l, "code").is_none(), "{l}");
    assert_eq!(q(&l, "error").as_deref(), Some("invalid_request"));
    let step = Browser::new(&s.op.base).get(&p.authorize_url(&plain));
    assert_eq!((step.status, step.location), (400, None));
    // An unlisted redirect_uri: authedge refuses without redirecting; the peer takes it, and
    // after the login sends the code to the attacker's URI (its open redirect).
    let step =
        Browser::new(&s.op.base).get(&a.authorize_url(&Proxy::params(CLIENT, EVIL, &challenge)));
    assert_eq!((step.status, step.location), (400, None));
    let stolen = p.flow(&s.op, CLIENT, EVIL, &challenge);
    assert!(
        stolen.starts_with(EVIL) && q(&stolen, "code").is_some(),
        "{stolen}"
    );
    // A duplicated state: authedge refuses; the peer takes the first.
    let mut dup = Proxy::params(CLIENT, REDIRECT, &challenge);
    dup.push(("state", "second"));
    let step = Browser::new(&s.op.base).get(&a.authorize_url(&dup));
    assert_eq!(step.status, 400);
    assert_eq!(
        Browser::new(&s.op.base).get(&p.authorize_url(&dup)).status,
        302
    );

    // A tampered state at the callback: both refuse, authedge without a redirect.
    for proxy in [&a, &p] {
        let params = Proxy::params(CLIENT, REDIRECT, &challenge);
        let (mut b, callback) = proxy.to_callback(&s.op, &params);
        let state = q(&callback, "state").unwrap();
        let mut t: Vec<char> = state.chars().collect();
        let i = t.len() / 2;
        t[i] = if t[i] == 'A' { 'B' } else { 'A' };
        let bad: String = t.into_iter().collect();
        let tampered = callback.replace(&enc(&state), &enc(&bad));
        assert_ne!(tampered, callback);
        let step = b.get(&tampered);
        assert_eq!((step.status, step.location), (400, None), "{}", proxy.base);
    }

    // authedge, one code: every wrong redemption is refused and does not burn it.
    let code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let (wrong, _) = pkce_pair(64);
    assert_eq!(
        a.redeem(&code, &wrong, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    assert_eq!(
        a.redeem(&code, &verifier, OTHER, REDIRECT).1["error"],
        "invalid_grant"
    );
    assert_eq!(
        a.redeem(&code, &verifier, CLIENT, OTHER_REDIRECT).1["error"],
        "invalid_grant"
    );
    let mut t = code.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(t).unwrap();
    assert_eq!(
        a.redeem(&tampered, &verifier, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 200, "{v}");
    // Reused: authedge refuses by itself (its own description: the provider is not asked).
    let (status, v) = a.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(v["error_description"], OUR_DESCRIPTION);

    // The peer: a wrong verifier and a tampered code are refused ...
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    assert_eq!(
        p.redeem(&code, &wrong, CLIENT, REDIRECT).1["error"],
        "invalid_grant"
    );
    let mut t = code.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        p.redeem(&String::from_utf8(t).unwrap(), &verifier, CLIENT, REDIRECT)
            .0,
        400
    );
    // ... but a swapped client_id and redirect_uri are taken (nothing binds them) ...
    let (status, v) = p.redeem(&code, &verifier, OTHER, OTHER_REDIRECT);
    assert_eq!(status, 200, "{v}");
    // ... and a reused code reaches the provider, which refuses it (not the peer).
    let (status, v) = p.redeem(&code, &verifier, CLIENT, REDIRECT);
    assert_eq!(status, 400, "{v}");
    assert_ne!(v["error_description"], OUR_DESCRIPTION);

    // A 42-character verifier (challenge made from it): authedge refuses, the peer takes it.
    let (short, short_challenge) = pkce_pair(42);
    let code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &short_challenge), REDIRECT);
    let (status, v) = a.redeem(&code, &short, CLIENT, REDIRECT);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &short_challenge), REDIRECT);
    assert_eq!(p.redeem(&code, &short, CLIENT, REDIRECT).0, 200);

    // An expired code (authedge: code_lifetime 2s here): refused; the peer's (30 s) still works.
    let a_code = code_of(&a.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    let p_code = code_of(&p.flow(&s.op, CLIENT, REDIRECT, &challenge), REDIRECT);
    std::thread::sleep(Duration::from_millis(3100));
    let (status, v) = a.redeem(&a_code, &verifier, CLIENT, REDIRECT);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(p.redeem(&p_code, &verifier, CLIENT, REDIRECT).0, 200);

    // What authedge answered, by endpoint and result.
    let m = |endpoint: &str, result: &str| {
        s.edge.metric(&format!(
            "authedge_pkce_total{{endpoint=\"{endpoint}\",realm=\"mobile\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(m("token", "reused"), 1.0);
    assert_eq!(m("token", "issued"), 1.0);
    assert_eq!(m("token", "refused"), 6.0);
    assert_eq!(m("callback", "refused"), 1.0);
    assert_eq!(m("callback", "code"), 3.0);
    assert_eq!(m("authorize", "refused"), 3.0);
}

#[test]
fn authorize_and_token_requests_are_checked() {
    let s = Setup::start("");
    let a = s.authedge();
    let (_, challenge) = pkce_pair(43);
    let get = |params: &[(&str, &str)]| Browser::new(&s.op.base).get(&a.authorize_url(params));
    let base = Proxy::params(CLIENT, REDIRECT, &challenge);
    assert_eq!(get(&base).status, 302);
    let plus = format!("{}+", &challenge[..42]);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("unknown client", replace(&base, "client_id", "nobody")),
        (
            "other client's uri",
            replace(&base, "redirect_uri", OTHER_REDIRECT),
        ),
        (
            "prefix of a uri",
            replace(&base, "redirect_uri", "http://127.0.0.1:9/c"),
        ),
        (
            "request object",
            [base.clone(), vec![("request", "x.y.z")]].concat(),
        ),
        (
            "dup client_id",
            [base.clone(), vec![("client_id", CLIENT)]].concat(),
        ),
        (
            "dup redirect_uri",
            [base.clone(), vec![("redirect_uri", REDIRECT)]].concat(),
        ),
        (
            "dup scope",
            [base.clone(), vec![("scope", "admin")]].concat(),
        ),
    ];
    for (what, params) in cases {
        let step = get(&params);
        assert_eq!(
            (step.status, step.location),
            (400, None),
            "{what}: {}",
            step.body
        );
    }
    // Once client and redirect URI check out, errors go back to it (RFC 6749 §4.1.2.1), with
    // the client's state and never a code.
    let no_method: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .filter(|(k, _)| *k != "code_challenge_method")
        .collect();
    let back: Vec<(&str, Vec<(&str, &str)>, &str)> = vec![
        (
            "response_type",
            replace(&base, "response_type", "token"),
            "unsupported_response_type",
        ),
        (
            "plain",
            replace(&base, "code_challenge_method", "plain"),
            "invalid_request",
        ),
        ("no method", no_method, "invalid_request"),
        (
            "short challenge",
            replace(&base, "code_challenge", &challenge[..42]),
            "invalid_request",
        ),
        (
            "bad charset",
            replace(&base, "code_challenge", &plus),
            "invalid_request",
        ),
    ];
    for (what, params, error) in back {
        let step = get(&params);
        assert_eq!(step.status, 302, "{what}");
        let l = step.location.unwrap_or_default();
        assert!(l.starts_with(REDIRECT), "{what}: {l}");
        assert_eq!(q(&l, "error").as_deref(), Some(error), "{what}");
        assert_eq!(q(&l, "state").as_deref(), Some("client-state-1"), "{what}");
        assert!(q(&l, "code").is_none(), "{what}");
    }
    // The callback refuses a missing or foreign state, and duplicated parameters.
    let c = client();
    for qs in ["", "state=x&code=y", "state=a&state=b&code=c"] {
        let r = c
            .get(a.base.clone() + "/oauth/callback?" + qs)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{qs}");
        assert!(r.headers().get("location").is_none());
    }
    // Token endpoint: grant types, missing fields, duplicates, method, content type.
    let (status, v, _) = a.token(&[("grant_type", "password")]);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, v, _) = a.token(&[("grant_type", "authorization_code"), ("client_id", CLIENT)]);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, v, _) = a.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", "nobody"),
    ]);
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    let (status, _, _) = a.token(&[
        ("grant_type", "authorization_code"),
        ("grant_type", "refresh_token"),
    ]);
    assert_eq!(status, 400);
    let r = c.get(a.base.clone() + "/oauth/token").send().unwrap();
    assert_eq!(r.status(), 405);
    let r = c
        .post(a.base.clone() + "/oauth/token")
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"authorization_code"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // The seed's spelling of the authorize path is served too.
    let url = a
        .authorize_url(&base)
        .replace("/oauth/authorize", "/oauth/authorization");
    assert_eq!(Browser::new(&s.op.base).get(&url).status, 302);
}

#[test]
fn an_error_from_the_provider_goes_back_to_the_client() {
    let s = Setup::start("");
    let a = s.authedge();
    let (_, challenge) = pkce_pair(43);
    let mut b = Browser::new(&s.op.base);
    let step = b.get(&a.authorize_url(&Proxy::params(CLIENT, REDIRECT, &challenge)));
    let state = q(&step.location.unwrap(), "state").unwrap();
    let cb = format!(
        "{}/oauth/callback?error=access_denied&error_description={}&state={}",
        a.base,
        enc("the user said no"),
        enc(&state)
    );
    let step = b.get(&cb);
    assert_eq!(step.status, 302);
    let back = step.location.unwrap();
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(q(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        q(&back, "error_description").as_deref(),
        Some("the user said no")
    );
    assert_eq!(q(&back, "state").as_deref(), Some("client-state-1"));
    assert!(q(&back, "code").is_none());
}
