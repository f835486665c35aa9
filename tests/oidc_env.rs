//! The oauth2-proxy drop-in: `authedge run` with no config file and only `OAUTH2_PROXY_*`
//! variables, against the real provider: a login through the generated one-route config, the
//! group policy (`OAUTH2_PROXY_ALLOWED_GROUPS`) refusing a user without the group, and an
//! unknown `OAUTH2_PROXY_*` variable refused by name.

mod common;
#[allow(dead_code)]
mod oidc;

use std::process::{Child, Command, Stdio};

use common::{bin, client, free_port, wait_for, EchoUpstream};
use oidc::login::{location, provider_login_at, session_cookies, set_cookies, Jar};
use oidc::{port_outside_ephemeral_range, Op};
use serde_json::json;

struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vars(port: u16, metrics: u16, op_port: u16, upstream: &str) -> Vec<(String, String)> {
    [
        ("HTTP_ADDRESS", format!("127.0.0.1:{port}")),
        ("METRICS_ADDRESS", format!("127.0.0.1:{metrics}")),
        ("UPSTREAMS", format!("{upstream}/app")),
        ("PROVIDER", "oidc".into()),
        ("OIDC_ISSUER_URL", format!("http://127.0.0.1:{op_port}")),
        ("CLIENT_ID", "web".into()),
        ("CLIENT_SECRET", "secret-web".into()),
        (
            "COOKIE_SECRET",
            "env-drop-in-cookie-secret-0123456789".into(),
        ),
        ("COOKIE_SECURE", "false".into()),
        ("COOKIE_NAME", "_oauth2_proxy".into()),
        ("EMAIL_DOMAINS", "example.com".into()),
        ("ALLOWED_GROUPS", "admins".into()),
        ("SCOPE", "openid email profile groups".into()),
        ("SKIP_PROVIDER_BUTTON", "true".into()),
        ("SET_XAUTHREQUEST", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("OAUTH2_PROXY_{k}"), v))
    .collect()
}

fn run(env: &[(String, String)], dir: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .env_remove("AUTHEDGE_CONFIG")
        .env("AUTHEDGE_STATE_DIR", dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

#[test]
fn oauth2_proxy_environment_runs_a_login_with_the_group_policy() {
    let up = EchoUpstream::start();
    let (port, metrics, op_port) = (free_port(), free_port(), port_outside_ephemeral_range());
    let dir = tempfile::tempdir().unwrap();
    let env = vars(port, metrics, op_port, &up.url());
    let _edge = Run(run(&env, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("authedge"));
    let clients = json!([{
        "client_id": "web", "client_secret": "secret-web",
        "redirect_uris": [format!("http://127.0.0.1:{port}/oauth2/callback")],
    }]);
    let op = Op::start_env(op_port, &[("OIDC_CLIENTS", &clients.to_string())]);
    let c = client();
    wait_for(
        || {
            c.get(format!("http://127.0.0.1:{metrics}/readyz"))
                .send()
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        },
        "the drop-in edge to be ready",
    );
    let base = format!("http://127.0.0.1:{port}");
    let login = |name: &str| {
        let r = c
            .get(format!("{base}/app/x"))
            .header("accept", "text/html")
            .send()
            .unwrap();
        assert_eq!(r.status(), 302);
        let r = c.get(format!("{base}{}", location(&r))).send().unwrap();
        assert_eq!(r.status(), 302);
        let flow = set_cookies(&r)
            .into_iter()
            .find(|(n, _)| n.ends_with("_flow"))
            .map(|(n, v)| format!("{n}={v}"))
            .unwrap();
        assert!(flow.starts_with("_oauth2_proxy_flow="), "{flow}");
        let cb = provider_login_at(&mut Jar::default(), &op.issuer, &base, &location(&r), name);
        c.get(cb).header("cookie", flow).send().unwrap()
    };
    // Without the group: refused at the callback, no session.
    let r = login("alice@example.com");
    assert_eq!(r.status(), 403);
    assert_eq!(session_cookies(&r), "");
    // With it: in, and the upstream sees who.
    let r = login("alice+admins@example.com");
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/app/x");
    let session = session_cookies(&r);
    assert!(session.starts_with("_oauth2_proxy="), "{session}");
    let v: serde_json::Value = c
        .get(format!("{base}/app/x"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["headers"]["x-forwarded-email"],
        "alice+admins@example.com"
    );
    assert_eq!(v["headers"]["x-forwarded-groups"], "admins");
    // Outside the upstream's path there is no route.
    let r = c.get(format!("{base}/other")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn unknown_oauth2_proxy_variables_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vars(free_port(), free_port(), 9, "http://127.0.0.1:9");
    env.push(("OAUTH2_PROXY_COOKIE_SAMESITE_TYPO".into(), "lax".into()));
    env.push((
        "OAUTH2_PROXY_LOGIN_URL".into(),
        "https://idp.example/auth".into(),
    ));
    let out = run(&env, dir.path()).output().expect("authedge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OAUTH2_PROXY_COOKIE_SAMESITE_TYPO"), "{err}");
    assert!(err.contains("OAUTH2_PROXY_LOGIN_URL"), "{err}");
}

/// seeds/003 as written: no `PROVIDER`, no issuer, the provider's endpoints in `LOGIN_URL`,
/// `REDEEM_URL` and `VALIDATE_URL` (the userinfo endpoint), a 16-byte `COOKIE_SECRET`, any
/// e-mail domain: a login end to end, the upstream seeing who.
#[test]
fn the_seed_environment_with_login_redeem_and_validate_urls_logs_in() {
    let up = EchoUpstream::start();
    let (port, metrics, op_port) = (free_port(), free_port(), port_outside_ephemeral_range());
    let dir = tempfile::tempdir().unwrap();
    let op_url = format!("http://127.0.0.1:{op_port}");
    let env: Vec<(String, String)> = [
        ("HTTP_ADDRESS", format!("127.0.0.1:{port}")),
        ("METRICS_ADDRESS", format!("127.0.0.1:{metrics}")),
        ("SCOPE", "openid email profile".into()),
        (
            "REDIRECT_URL",
            format!("http://127.0.0.1:{port}/oauth2/callback"),
        ),
        ("LOGIN_URL", format!("{op_url}/auth?audience=oauth2proxy")),
        ("REDEEM_URL", format!("{op_url}/token")),
        ("VALIDATE_URL", format!("{op_url}/me")),
        ("EMAIL_DOMAINS", "*".into()),
        ("COOKIE_SECRET", "someSecret123456".into()),
        ("COOKIE_SECURE", "false".into()),
        ("CLIENT_ID", "web".into()),
        ("CLIENT_SECRET", "secret-web".into()),
        ("UPSTREAMS", format!("{}/anything", up.url())),
        ("SKIP_PROVIDER_BUTTON", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("OAUTH2_PROXY_{k}"), v))
    .collect();
    let _edge = Run(run(&env, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("authedge"));
    let clients = json!([{
        "client_id": "web", "client_secret": "secret-web",
        "redirect_uris": [format!("http://127.0.0.1:{port}/oauth2/callback")],
    }]);
    let op = Op::start_env(
        op_port,
        &[
            ("OIDC_CLIENTS", &clients.to_string()),
            ("OIDC_USERINFO_TOKENS", "1"),
        ],
    );
    let c = client();
    wait_for(
        || {
            c.get(format!("http://127.0.0.1:{metrics}/readyz"))
                .send()
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        },
        "the drop-in edge to be ready",
    );
    let base = format!("http://127.0.0.1:{port}");
    let r = c
        .get(format!("{base}/anything"))
        .header("accept", "text/html")
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = c.get(format!("{base}{}", location(&r))).send().unwrap();
    assert_eq!(r.status(), 302);
    let authorize = location(&r);
    // The login URL is used as given, its own query kept.
    assert!(
        authorize.starts_with(&format!("{op_url}/auth?audience=oauth2proxy&")),
        "{authorize}"
    );
    let flow = set_cookies(&r)
        .into_iter()
        .find(|(n, _)| n.ends_with("_flow"))
        .map(|(n, v)| format!("{n}={v}"))
        .unwrap();
    let cb = provider_login_at(
        &mut Jar::default(),
        &op.issuer,
        &base,
        &authorize,
        "asaf@crossid.example",
    );
    let r = c.get(cb).header("cookie", flow).send().unwrap();
    assert_eq!(r.status(), 302);
    let session = session_cookies(&r);
    let v: serde_json::Value = c
        .get(format!("{base}/anything"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["headers"]["x-forwarded-email"], "asaf@crossid.example");
    assert_eq!(v["headers"]["x-forwarded-user"], "asaf@crossid.example");
    let r = c
        .get(format!("{base}/oauth2/userinfo"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
