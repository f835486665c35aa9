//! Route matching and canonical-path tests.

use super::*;

#[test]
fn canonical_paths() {
    let ok = [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("//private", "/private"),
        ("/public/../private", "/private"),
        ("/%2e%2e/private", "/private"),
        ("/%2E%2e/%2e/private/", "/private/"),
        ("/a/./b/../c", "/a/c"),
        ("/../../x", "/x"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/%7euser", "/~user"),
        ("/a%20b", "/a%20b"),
        ("/a%3a", "/a%3A"),
    ];
    for (raw, want) in ok {
        assert_eq!(canonical_path(raw).unwrap(), *want, "{raw}");
    }
    assert_eq!(canonical_path("/caf\u{e9}/./x").unwrap(), "/caf\u{e9}/x");
    assert_eq!(canonical_path("/a;b/../c").unwrap(), "/c");
    for bad in [
        "/public/..;/admin",
        "/public/.;/admin",
        "/..;x",
        "/a/%2e%2e;/b",
    ] {
        assert!(canonical_path(bad).is_err(), "{bad} should be refused");
    }
    for bad in [
        "/private%2Fx",
        "/a%2fb",
        "/a%5cb",
        "/a%00",
        "/a\\b",
        "/a%zz",
        "/a%2",
        "x/y",
        "",
    ] {
        assert!(canonical_path(bad).is_err(), "{bad} should be refused");
    }
}

fn key(host: Option<&str>, prefix: &str, methods: &[Method]) -> RouteKey {
    RouteKey {
        host: host.map(str::to_string),
        prefix: normalize_prefix(prefix).unwrap(),
        methods: methods.to_vec(),
    }
}

#[test]
fn longest_prefix_on_boundaries() {
    let r = Router::build(&[
        key(None, "/", &[]),
        key(None, "/api", &[]),
        key(None, "/api/admin/", &[Method::GET]),
        key(Some("example.com"), "/api", &[]),
    ])
    .unwrap();
    assert_eq!(r.lookup(None, &Method::GET, "/api"), Match::Route(1));
    assert_eq!(r.lookup(None, &Method::GET, "/api/x"), Match::Route(1));
    assert_eq!(r.lookup(None, &Method::GET, "/apix"), Match::Route(0));
    assert_eq!(
        r.lookup(None, &Method::GET, "/api/admin/x/y/z"),
        Match::Route(2)
    );
    assert_eq!(
        r.lookup(None, &Method::POST, "/api/admin"),
        Match::MethodNotAllowed
    );
    assert_eq!(
        r.lookup(Some("Example.COM:8080"), &Method::GET, "/api/q"),
        Match::Route(3)
    );
    assert_eq!(
        r.lookup(Some("example.com"), &Method::GET, "/other"),
        Match::Route(0)
    );
}

#[test]
fn overlapping_routes_rejected() {
    let e = Router::build(&[
        key(None, "/api", &[Method::GET]),
        key(None, "/api/", &[Method::GET, Method::POST]),
    ])
    .unwrap_err();
    assert_eq!(e[0].0, 1);
    assert!(Router::build(&[
        key(None, "/api", &[Method::GET]),
        key(None, "/api", &[Method::POST])
    ])
    .is_ok());
}

#[test]
fn host_ports_are_stripped_safely() {
    for (h, want) in [
        ("a.b:80", "a.b"),
        ("a.b", "a.b"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[", "["),
        ("[:", "[:"),
        (":", ""),
        ("]:1", "]"),
    ] {
        assert_eq!(strip_port(h), want, "{h}");
    }
}

proptest::proptest! {
    #[test]
    fn canonical_is_idempotent_and_clean(raw in "/[a-zA-Z0-9./%_~-]{0,40}") {
        if let Ok(c) = canonical_path(&raw) {
            proptest::prop_assert!(c.starts_with('/'));
            proptest::prop_assert!(!c.contains("//"), "{}", c);
            for seg in c.split('/') {
                proptest::prop_assert!(seg != "." && seg != "..", "{}", c);
            }
            let again = canonical_path(&c).map(|x| x.into_owned());
            proptest::prop_assert_eq!(again, Ok(c.to_string()));
        }
    }

    #[test]
    fn lookup_never_panics(path in "/[a-z/]{0,30}", host in proptest::option::of("[A-Za-z.:0-9\\[\\]]{0,20}")) {
        let r = Router::build(&[key(None, "/a", &[]), key(Some("h"), "/a/b", &[Method::GET])]).unwrap();
        let _ = r.lookup(host.as_deref(), &Method::GET, &path);
    }
}

#[test]
fn not_found_without_root() {
    let r = Router::build(&[key(None, "/public", &[])]).unwrap();
    assert_eq!(r.lookup(None, &Method::GET, "/private"), Match::NotFound);
    assert_eq!(r.lookup(None, &Method::GET, "/"), Match::NotFound);
}

#[test]
fn case_insensitive_routing_is_opt_in() {
    let keys = [
        RouteKey {
            host: None,
            prefix: "/".into(),
            methods: vec![],
        },
        RouteKey {
            host: None,
            prefix: "/Admin".into(),
            methods: vec![],
        },
    ];
    let strict = Router::build(&keys).unwrap();
    assert_eq!(
        strict.lookup(None, &Method::GET, "/ADMIN/x"),
        Match::Route(0)
    );
    let ci = Router::build_with(&keys, true).unwrap();
    assert_eq!(ci.lookup(None, &Method::GET, "/ADMIN/x"), Match::Route(1));
    assert_eq!(ci.lookup(None, &Method::GET, "/admin"), Match::Route(1));
    assert_eq!(ci.lookup(None, &Method::GET, "/other"), Match::Route(0));
}
