use super::*;
use crate::config::schema::FilterConfig;

const SECRET: &str = "0123456789abcdef0123456789abcdef-proxyauth";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$o5bmliGtGQpgEFF1kgbIdQ$JdhJMcIasERi0N8I+jyaisf0SzklmRWeCDwgZ1l6PNw";

fn config(extra: &str) -> String {
    format!(
        r#"{{ "token_expiry_seconds": 600, "secret": "{SECRET}", "host": "127.0.0.1", "port": 9001, "worker": 2,
               {extra}
               "users": [ {{ "username": "admin", "password": "{HASH}" }}, {{ "username": "alice", "password": "alicepass" }} ] }}"#
    )
}

const ROUTES: &str = r#"
routes:
  - prefix: "/redoc"
    target: "http://127.0.0.1:8000/redoc"
    secure: false
  - prefix: "/api"
    target: "http://localhost:8000/v1/"
    username: ["admin", "alice1"]
  - prefix: "/api/public"
    target: "http://127.0.0.1:8000/open"
    secure: false
  - prefix: "/none"
    target: "https://backend.internal/none"
    cert: { file: "", password: "" }
"#;

#[test]
fn detects_config_json() {
    assert!(is_proxyauth(&config("")));
    assert!(!is_proxyauth("server: { threads: 1 }\n"));
    assert!(!is_proxyauth("# token_expiry_seconds\nroutes: []\n"));
}

#[test]
fn translates_users_limits_and_routes() {
    let text = config(
        r#""ratelimit": { "requests_per_second": 10, "burst": 100, "block_delay": 500, "auth": 5 },"#,
    );
    let (cfg, notes) = translate("config.json", &text, ROUTES).unwrap();
    assert_eq!(cfg.server.threads, 2);
    assert_eq!(cfg.listeners[0].address.as_deref(), Some("127.0.0.1:9001"));
    let realm = &cfg.opaque[REALM];
    assert_eq!(realm.token_lifetime, std::time::Duration::from_secs(600));
    assert_eq!(
        realm.response,
        crate::auth::opaque::config::ResponseShape::Proxyauth
    );
    assert!(realm.allow_plaintext && !realm.rewrite_plaintext);
    assert_eq!(realm.users.len(), 2);
    assert_eq!(realm.users[0].id, "admin");
    assert_eq!(realm.users[0].password_hash.as_deref(), Some(HASH));
    assert_eq!(realm.users[1].password.as_deref(), Some("alicepass"));
    let rl = realm.rate_limit.as_ref().unwrap();
    assert_eq!((rl.requests_per_second, rl.burst), (2.0, 100));
    let pc = &realm.auth_rate_limit.per_client;
    assert_eq!((pc.requests_per_second, pc.burst), (0.1, 5));
    // /api/public is behind /api in ProxyAuth: not loaded.
    assert_eq!(cfg.routes.len(), 3, "{:?}", cfg.routes);
    assert!(cfg.routes[0].public);
    assert_eq!(cfg.routes[0].rewrite_prefix, None);
    assert_eq!(cfg.routes[1].path, "/api");
    assert_eq!(cfg.routes[1].rewrite_prefix.as_deref(), Some("/v1"));
    let FilterConfig::Opaque(o) = &cfg.routes[1].auth[0] else {
        panic!()
    };
    assert_eq!(o.users, vec!["admin".to_string()]);
    // Secure with no listed user: nobody.
    let FilterConfig::Opaque(o) = &cfg.routes[2].auth[0] else {
        panic!()
    };
    assert_eq!(o.users, vec![String::new()]);
    assert_eq!(
        cfg.upstreams["target0"].url.as_deref(),
        Some("http://127.0.0.1:8000")
    );
    assert_eq!(
        cfg.upstreams["target1"].url.as_deref(),
        Some("http://localhost:8000")
    );
    assert_eq!(
        cfg.upstreams["target2"].url.as_deref(),
        Some("https://backend.internal:443")
    );
    let all = notes.join("\n");
    for want in [
        "routes.yml:routes[2].prefix: never reached",
        "plaintext passwords of alice",
        "alice1 not in config.json",
        "replaces requests_per_second (10)",
        "routes.yml:routes[3].username: no user",
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }
}

#[test]
fn problems_name_the_proxyauth_key() {
    let routes = "routes:\n  - { prefix: /a, target: http://127.0.0.1:1/a, proxy: true, proxy_config: 'http://127.0.0.1:8888' }\n  - { prefix: /b, target: 'ftp://x', cert: { file: c.p12, password: '1' } }\n";
    let text = r#"{ "token_expiry_seconds": 0, "secret": "short", "host": "example.com", "worker": 0,
            "ratelimit": { "burst": 0, "block_delay": 5, "auth": 1 },
            "users": [ { "username": "a", "password": "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, { "username": "a", "password": "x" } ] }"#;
    let e = translate("config.json", text, routes)
        .err()
        .unwrap()
        .to_string();
    for want in [
        "config.json:host:",
        "config.json:worker:",
        "config.json:secret: 5 bytes",
        "config.json:token_expiry_seconds:",
        "config.json:ratelimit.requests_per_second: required",
        "config.json:ratelimit.burst: 0",
        "config.json:users[0].password: algorithm argon2i",
        "config.json:users[1].username:",
        "routes.yml:routes[0].proxy:",
        "routes.yml:routes[1].cert.file:",
        "routes.yml:routes[1].target:",
    ] {
        assert!(e.contains(want), "{want} in {e}");
    }
    let e = translate("config.json", &config(r#""ratelimt": {},"#), ROUTES)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("config.json:ratelimt") || e.contains("config.json"),
        "{e}"
    );
    assert!(e.contains("unknown field `ratelimt`"), "{e}");
    let e = translate(
        "config.json",
        &config(""),
        "routes:\n  - { prefix: /a, target: http://x/a, secure: fals }\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("routes.yml:routes[0].secure"), "{e}");
}

#[test]
fn a_segment_match_that_widens_access_is_refused() {
    // ProxyAuth sends /apix to the secure /api route; authedge would send it to the public
    // "/" route, which maps it to the same URL.
    let routes = "routes:\n  - { prefix: /api, target: http://127.0.0.1:8000/api, username: [admin] }\n  - { prefix: /, target: http://127.0.0.1:8000/, secure: false }\n";
    let e = translate("config.json", &config(""), routes)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("routes.yml:routes[0].prefix: ProxyAuth sends /apix"),
        "{e}"
    );
    // With "/api/" both agree on /apix (the public route); only a note for /api itself.
    let routes = "routes:\n  - { prefix: /api/, target: http://127.0.0.1:8000/api/, username: [admin] }\n  - { prefix: /, target: http://127.0.0.1:8000/, secure: false }\n";
    let (cfg, notes) = translate("config.json", &config(""), routes).unwrap();
    assert_eq!(cfg.routes.len(), 2);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("ProxyAuth sends /api to routes[1]")),
        "{notes:?}"
    );
    // A different target URL: a note, not an error.
    let routes = "routes:\n  - { prefix: /api, target: http://127.0.0.1:9000/v1, username: [admin] }\n  - { prefix: /, target: http://127.0.0.1:8000/, secure: false }\n";
    let (_, notes) = translate("config.json", &config(""), routes).unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("ProxyAuth sends /apix to routes[0]")),
        "{notes:?}"
    );
}

#[test]
fn the_translation_loads() {
    let (cfg, _) = translate("config.json", &config(""), ROUTES).unwrap();
    // Defaults when ratelimit is absent: block_delay 500 -> 2/s, burst 10; auth 5.
    let rl = cfg.opaque[REALM].rate_limit.as_ref().unwrap();
    assert_eq!((rl.requests_per_second, rl.burst), (2.0, 10));
}

#[test]
fn paris_time_follows_summer_time() {
    use crate::auth::opaque::endpoints::paris_time;
    // 2026-01-15 12:00:00 UTC (CET, +1) and 2026-07-15 12:00:00 UTC (CEST, +2).
    assert_eq!(paris_time(1_768_478_400), "2026-01-15 13:00:00");
    assert_eq!(paris_time(1_784_116_800), "2026-07-15 14:00:00");
    // 2026-03-29 00:59:59 UTC is still winter, 01:00:00 summer.
    assert_eq!(paris_time(1_774_745_999), "2026-03-29 01:59:59");
    assert_eq!(paris_time(1_774_746_000), "2026-03-29 03:00:00");
}

#[test]
fn prefix_rewrite() {
    use crate::snapshot::PrefixRewrite;
    let rw = PrefixRewrite::new("/api", "/v1/").unwrap();
    assert_eq!(rw.apply("/api"), "/v1");
    assert_eq!(rw.apply("/api/x/y"), "/v1/x/y");
    let rw = PrefixRewrite::new("/api", "").unwrap();
    assert_eq!(rw.apply("/api"), "/");
    assert_eq!(rw.apply("/api/x"), "/x");
    let rw = PrefixRewrite::new("/", "/app").unwrap();
    assert_eq!(rw.apply("/x"), "/app/x");
    assert_eq!(rw.apply("/"), "/app");
    assert!(PrefixRewrite::new("/api", "v1").is_none());
    assert!(PrefixRewrite::new("/api", "/v1?x").is_none());
}

#[test]
fn a_pem_cert_becomes_the_upstreams_client_certificate() {
    let routes = r#"
routes:
  - { prefix: /a, target: "https://10.0.0.1:8443/a", secure: false, cert: { file: "edge.pem", password: "" } }
  - { prefix: /b, target: "https://10.0.0.1:8443/b", secure: false }
"#;
    let (cfg, _) = translate("config.json", &config(""), routes).unwrap();
    let a = &cfg.upstreams[&cfg.routes[0].upstream];
    assert_eq!(a.client_cert.as_deref(), Some("edge.pem"));
    assert_eq!(a.client_key.as_deref(), Some("edge.pem"));
    // The same origin without the cert is another upstream.
    assert_ne!(cfg.routes[0].upstream, cfg.routes[1].upstream);
    assert!(cfg.upstreams[&cfg.routes[1].upstream].client_cert.is_none());

    let routes = r#"
routes:
  - { prefix: /a, target: "http://10.0.0.1:8080/a", cert: { file: "edge.pem", password: "" } }
  - { prefix: /b, target: "https://10.0.0.1:8443/b", cert: { file: "edge.pem", password: "1234" } }
  - { prefix: /c, target: "https://10.0.0.1:8443/c", cert: { file: "certificat.pk12", password: "1234" } }
"#;
    let e = translate("config.json", &config(""), routes)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("routes.yml:routes[0].cert.file: a client certificate needs an https:// target"),
        "{e}"
    );
    assert!(
        e.contains("routes.yml:routes[1].cert.password: an encrypted key"),
        "{e}"
    );
    assert!(
        e.contains("routes.yml:routes[2].cert.file: PKCS#12 is not read by authedge; convert it once with `openssl pkcs12 -in certificat.pk12 -nodes -out certificat.pk12.pem`"),
        "{e}"
    );
}
