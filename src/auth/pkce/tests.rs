//! Unit and property tests of the PKCE mode's sealed formats and parameter checks.

use proptest::prelude::*;

use super::sealed::{now_s, FlowCode, FlowState, Refused};
use super::token::verifier_matches;
use super::{pkce_string, unique_params};
use crate::tokens::seal::Sealer;

const K1: &[u8] = b"0123456789abcdef0123456789abcdef";
const K2: &[u8] = b"fedcba9876543210fedcba9876543210";

fn sealer(realm: &str, keys: &[(&str, &[u8])]) -> Sealer {
    Sealer::new("pkce", realm.as_bytes(), keys).unwrap()
}

fn state(exp: u64) -> FlowState {
    FlowState {
        expires_at: exp,
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        client_id: "cli".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        client_state: "xyz".into(),
    }
}

fn code(exp: u64) -> FlowCode {
    FlowCode {
        expires_at: exp,
        upstream_code: "upstream-code".into(),
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        client_id: "cli".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
    }
}

#[test]
fn rfc7636_appendix_b_vector() {
    assert!(verifier_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ));
    assert!(!verifier_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ));
    assert!(!verifier_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
    ));
}

#[test]
fn verifier_and_challenge_charset() {
    assert!(!pkce_string(&"a".repeat(42)));
    assert!(pkce_string(&"a".repeat(43)));
    assert!(pkce_string(&"a".repeat(128)));
    assert!(!pkce_string(&"a".repeat(129)));
    assert!(pkce_string(&format!("{}-._~", "A9".repeat(20))));
    assert!(!pkce_string(&format!("{}+", "a".repeat(43))));
    assert!(!pkce_string(&format!("{}=", "a".repeat(43))));
}

#[test]
fn repeated_parameters_are_refused() {
    assert!(unique_params("a=1&b=2").is_some());
    assert!(unique_params("a=1&a=2").is_none());
    assert!(unique_params("state=1&st%61te=2").is_none());
    assert!(unique_params("x=%ff").is_none());
    let many: Vec<String> = (0..65).map(|i| format!("p{i}=1")).collect();
    assert!(unique_params(&many.join("&")).is_none());
}

#[test]
fn state_and_code_open_only_as_themselves() {
    let s = sealer("mobile", &[("k1", K1)]);
    let now = now_s();
    let st = state(now + 60).seal(&s).unwrap();
    let cd = code(now + 60).seal(&s).unwrap();
    assert_eq!(FlowState::open(&s, &st, now).unwrap(), state(now + 60));
    assert_eq!(FlowCode::open(&s, &cd, now).unwrap(), code(now + 60));
    // A state never opens as a code, nor a code as a state.
    assert_eq!(FlowCode::open(&s, &st, now), Err(Refused::Sealed));
    assert_eq!(FlowState::open(&s, &cd, now), Err(Refused::Sealed));
    // Another realm's sealer (same key) opens neither.
    let other = sealer("desktop", &[("k1", K1)]);
    assert!(FlowState::open(&other, &st, now).is_err());
    assert!(FlowCode::open(&other, &cd, now).is_err());
    // Two seals of the same payload differ (random nonce).
    assert_ne!(cd, code(now + 60).seal(&s).unwrap());
}

#[test]
fn expiry_and_rotation() {
    let old = sealer("r", &[("k1", K1)]);
    let now = now_s();
    let cd = code(now + 1).seal(&old).unwrap();
    assert_eq!(FlowCode::open(&old, &cd, now + 1), Err(Refused::Expired));
    // Rotation: the new key seals, the old one still opens; once removed, it does not.
    let rotated = sealer("r", &[("k2", K2), ("k1", K1)]);
    assert!(FlowCode::open(&rotated, &cd, now).is_ok());
    let only_new = sealer("r", &[("k2", K2)]);
    assert_eq!(FlowCode::open(&only_new, &cd, now), Err(Refused::Sealed));
    let fresh = code(now + 60).seal(&rotated).unwrap();
    assert!(FlowCode::open(&only_new, &fresh, now).is_ok());
}

fn field() -> impl Strategy<Value = String> {
    proptest::string::string_regex(".{0,80}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any payload round-trips through its bytes; any truncation or extension is refused.
    #[test]
    fn payload_round_trip(exp in any::<u64>(), a in field(), b in field(), c in field(), d in field(), cut in 0usize..400) {
        let st = FlowState { expires_at: exp, challenge: a.clone(), client_id: b.clone(), redirect_uri: c.clone(), client_state: d.clone() };
        let bytes = st.to_bytes();
        prop_assert_eq!(FlowState::from_bytes(&bytes), Some(st));
        let cd = FlowCode { expires_at: exp, upstream_code: a, challenge: b, client_id: c, redirect_uri: d };
        let cb = cd.to_bytes();
        prop_assert_eq!(FlowCode::from_bytes(&cb), Some(cd));
        if cut < cb.len() {
            prop_assert_eq!(FlowCode::from_bytes(&cb[..cut]), None);
        }
        let mut longer = cb.clone();
        longer.push(0);
        prop_assert_eq!(FlowCode::from_bytes(&longer), None);
    }

    /// Arbitrary bytes never panic the decoders.
    #[test]
    fn arbitrary_payload_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = FlowState::from_bytes(&bytes);
        let _ = FlowCode::from_bytes(&bytes);
    }

    /// Any change to a sealed state or code (one character replaced, one removed, one added)
    /// is refused, never a panic, never another payload.
    #[test]
    fn tampered_blobs_are_refused(pos in any::<prop::sample::Index>(), ch in proptest::char::range('-', 'z'), kind in 0u8..3) {
        let s = sealer("r", &[("k1", K1)]);
        let now = now_s();
        for text in [state(now + 60).seal(&s).unwrap(), code(now + 60).seal(&s).unwrap()] {
            let i = pos.index(text.len());
            let mut t: Vec<char> = text.chars().collect();
            match kind {
                0 => { if t[i] == ch { continue; } t[i] = ch; }
                1 => { t.remove(i); }
                _ => { t.insert(i, ch); }
            }
            let t: String = t.into_iter().collect();
            prop_assert!(FlowState::open(&s, &t, now).is_err());
            prop_assert!(FlowCode::open(&s, &t, now).is_err());
        }
    }

    /// Arbitrary text offered as a state or a code is refused, never a panic.
    #[test]
    fn arbitrary_text_is_refused(t in ".{0,600}") {
        let s = sealer("r", &[("k1", K1)]);
        prop_assert!(FlowState::open(&s, &t, 0).is_err());
        prop_assert!(FlowCode::open(&s, &t, 0).is_err());
    }
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

const PEER_ENV: &[(&str, &str)] = &[
    ("PORT", "9000"),
    ("OAUTH_CLIENT_ID", "edge"),
    ("OAUTH_CLIENT_SECRET", "s"),
    ("OAUTH_AUTH_URL", "https://idp.example/authorize"),
    ("OAUTH_TOKEN_URL", "https://idp.example/token"),
    ("OAUTH_REDIRECT_URL", "https://edge.example/callback"),
    ("JWT_SIGNING_KEY", "a-jwt-signing-key"),
    ("ENCRYPTION_KEY", "0123456789abcdef"),
    (
        "PKCE_CLIENTS",
        "app=com.example.app:/cb|http://127.0.0.1:7/cb, cli=http://127.0.0.1:8/cb",
    ),
];

#[test]
fn dropin_builds_a_config_the_schema_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let y = super::dropin::yaml_from_env(&env_of(PEER_ENV), dir.path()).unwrap();
    let cfg = crate::config::parse(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
    assert_eq!(cfg.listeners[0].address.as_deref(), Some("0.0.0.0:9000"));
    assert!(cfg.routes.is_empty());
    let r = &cfg.pkce["proxy"];
    assert_eq!(r.callback_url, "https://edge.example/callback");
    assert_eq!(r.clients.len(), 2);
    assert_eq!(
        r.clients[0].redirect_uris,
        vec!["com.example.app:/cb", "http://127.0.0.1:7/cb"]
    );
    // The key file holds both peer secrets, private to the owner.
    let key = std::fs::read(dir.path().join("pkce-key")).unwrap();
    assert_eq!(key, b"a-jwt-signing-key0123456789abcdef");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("pkce-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

#[test]
fn dropin_errors_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let without: Vec<(&str, &str)> = PEER_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "PKCE_CLIENTS")
        .collect();
    let env = move |k: &str| {
        without
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let e = super::dropin::yaml_from_env(&env, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PKCE_CLIENTS") && e.contains("open redirect"),
        "{e}"
    );
    for bad in ["app", "=http://x/cb", "app=", ","] {
        assert!(super::dropin::parse_clients(bad).is_err(), "{bad}");
    }
    let e = super::dropin::yaml_from_env(
        &env_of(&[
            ("PKCE_CLIENTS", "a=http://x/cb"),
            ("OAUTH_CLIENT_ID", "edge"),
        ]),
        dir.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("OAUTH_CLIENT_SECRET"), "{e}");
}
