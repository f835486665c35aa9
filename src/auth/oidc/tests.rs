//! Unit tests of the session cookies: chunking, and hostile cookies (tampered, truncated,
//! reordered and missing chunks, an 8 KB header, 500 cookies) treated as no session.

use http::{HeaderMap, HeaderValue, Method};

use super::session::{
    open_flow, open_session, seal_flow, seal_session, CookieJar, CookieSettings, Flow, Session,
    MAX_CHUNKS,
};
use super::*;
use crate::auth::RequestView;

fn sealer() -> Sealer {
    Sealer::new("oidc", b"main", &[("k1", &[7u8; 32])]).unwrap()
}

fn jar() -> CookieJar {
    CookieJar::new(&CookieSettings {
        name: "_authedge",
        secure: true,
        domain: None,
        path: "/",
        max_age: 3600,
    })
}

fn session(groups: usize) -> Session {
    Session {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        pu: Some("alice".into()),
        groups: (0..groups).map(|i| format!("group-{i:04}")).collect(),
        sub: "alice".into(),
        sid: None,
        iat: 1,
        exp: i64::MAX / 2,
        idt: None,
        at: None,
        rt: None,
        id: None,
    }
}

/// The `Cookie` header a browser would send back for these `Set-Cookie` values.
fn cookie_header(set: &[HeaderValue]) -> String {
    set.iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .filter(|p| !p.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

fn headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    h
}

fn read(jar: &CookieJar, cookie: &str) -> Option<Session> {
    let h = headers(cookie);
    let v = RequestView::new(&Method::GET, "/", &h);
    let text = jar.session_text(&v)?;
    open_session(&sealer(), &text, 100)
}

#[test]
fn small_session_is_one_host_prefixed_cookie() {
    let (j, s) = (jar(), session(2));
    assert_eq!(&*j.name, "__Host-_authedge");
    let sealed = seal_session(&sealer(), &s).unwrap();
    let h = HeaderMap::new();
    let set = j
        .set_session(&sealed, &RequestView::new(&Method::GET, "/", &h))
        .unwrap();
    assert_eq!(set.len(), 1);
    let v = set[0].to_str().unwrap();
    assert!(v.starts_with("__Host-_authedge="), "{v}");
    for attr in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=3600",
    ] {
        assert!(v.contains(attr), "{v} lacks {attr}");
    }
    assert_eq!(read(&j, &cookie_header(&set)), Some(s));
}

#[test]
fn large_session_is_chunked_and_every_damaged_chunk_set_is_no_session() {
    let (j, s) = (jar(), session(400));
    let sealed = seal_session(&sealer(), &s).unwrap();
    assert!(sealed.len() > 4000 && sealed.len() < 4000 * MAX_CHUNKS);
    let h = HeaderMap::new();
    let set = j
        .set_session(&sealed, &RequestView::new(&Method::GET, "/", &h))
        .unwrap();
    assert!(set.len() >= 2, "chunked");
    for v in &set {
        assert!(v.len() <= 4000 + 80, "{}", v.len());
    }
    let good = cookie_header(&set);
    assert_eq!(read(&j, &good), Some(s.clone()));
    let pairs: Vec<&str> = good.split("; ").collect();
    // Reordered in the header: still the same chunks by number, so still good.
    let mut rev = pairs.clone();
    rev.reverse();
    assert_eq!(read(&j, &rev.join("; ")), Some(s));
    // A missing chunk, swapped chunk values, a truncated chunk, a flipped byte: no session.
    let missing = pairs[1..].join("; ");
    assert_eq!(read(&j, &missing), None, "missing first chunk");
    let missing_last = pairs[..pairs.len() - 1].join("; ");
    assert_eq!(read(&j, &missing_last), None, "missing last chunk");
    let value = |p: &str| p.split_once('=').unwrap().1.to_string();
    let swapped = format!(
        "{}_0={}; {}_1={}",
        j.name,
        value(pairs[1]),
        j.name,
        value(pairs[0])
    );
    assert_eq!(read(&j, &swapped), None, "chunk values swapped");
    let mut truncated = pairs.clone();
    let short = &pairs[0][..pairs[0].len() - 10];
    truncated[0] = short;
    assert_eq!(read(&j, &truncated.join("; ")), None, "truncated chunk");
    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(read(&j, &String::from_utf8(flipped).unwrap()), None);
    // Writing a small session over a chunked one expires the chunks.
    let small = seal_session(&sealer(), &session(1)).unwrap();
    let h = headers(&good);
    let set = j
        .set_session(&small, &RequestView::new(&Method::GET, "/", &h))
        .unwrap();
    let expired = set
        .iter()
        .filter(|v| v.to_str().unwrap().contains("Max-Age=0"))
        .count();
    assert_eq!(expired, pairs.len());
}

#[test]
fn hostile_cookie_headers_are_no_session_without_panic() {
    let j = jar();
    let sealed = seal_session(&sealer(), &session(1)).unwrap();
    // 500 cookies in an 8 KB+ header, the session among them at the end: still found.
    let mut big = String::new();
    for i in 0..499 {
        big.push_str(&format!("c{i}=v{i:010}; "));
    }
    assert!(big.len() > 8 * 1024);
    assert_eq!(read(&j, &format!("{big}__Host-_authedge=junk")), None);
    assert!(read(&j, &format!("{big}__Host-_authedge={sealed}")).is_some());
    // An 8 KB session value of garbage, chunk names out of range, empty values.
    let junk = "A".repeat(8 * 1024);
    for c in [
        format!("__Host-_authedge={junk}"),
        format!("__Host-_authedge_0={junk}; __Host-_authedge_1={junk}"),
        "__Host-_authedge_9=x; __Host-_authedge_00=y; __Host-_authedge_=z".to_string(),
        "__Host-_authedge=".to_string(),
        "__Host-_authedge_0=".to_string(),
        format!("__Host-_authedge={}", &sealed[..sealed.len() / 2]),
    ] {
        assert_eq!(read(&j, &c), None, "{}", &c[..c.len().min(60)]);
    }
    // An ended session is no session.
    let mut old = session(0);
    old.exp = 50;
    let sealed = seal_session(&sealer(), &old).unwrap();
    assert_eq!(read(&j, &format!("__Host-_authedge={sealed}")), None);
    // Another provider's key (or context) opens nothing.
    let other = Sealer::new("oidc", b"other", &[("k1", &[7u8; 32])]).unwrap();
    let theirs = seal_session(&other, &session(0)).unwrap();
    assert_eq!(read(&j, &format!("__Host-_authedge={theirs}")), None);
}

#[test]
fn flows_expire_and_are_not_sessions() {
    let s = sealer();
    let f = Flow {
        st: "s".into(),
        n: "n".into(),
        v: "v".into(),
        rd: "/".into(),
        ru: "http://x/oauth2/callback".into(),
        exp: 200,
    };
    let sealed = seal_flow(&s, &f).unwrap();
    assert_eq!(open_flow(&s, &sealed, 100), Some(f));
    assert_eq!(open_flow(&s, &sealed, 200), None, "expired");
    assert!(
        open_session(&s, &sealed, 100).is_none(),
        "a flow is no session"
    );
    let sess = seal_session(&s, &session(0)).unwrap();
    assert!(open_flow(&s, &sess, 100).is_none(), "a session is no flow");
}

#[test]
fn insecure_cookie_has_no_host_prefix() {
    let j = CookieJar::new(&CookieSettings {
        name: "sess",
        secure: false,
        domain: Some("example.com"),
        path: "/",
        max_age: 60,
    });
    assert_eq!(&*j.name, "sess");
    assert_eq!(&*j.flow, "sess_flow");
    let v = j.set_flow("abc", 60).unwrap();
    let v = v.to_str().unwrap();
    assert!(
        v.contains("Domain=example.com") && !v.contains("Secure"),
        "{v}"
    );
}

#[test]
fn page_loads_and_api_calls() {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("text/html,*/*"),
    );
    assert!(is_page_load(&RequestView::new(&Method::GET, "/", &h)));
    assert!(!is_page_load(&RequestView::new(&Method::POST, "/", &h)));
    h.insert(
        "x-requested-with",
        HeaderValue::from_static("XMLHttpRequest"),
    );
    assert!(!is_page_load(&RequestView::new(&Method::GET, "/", &h)));
    let mut h = HeaderMap::new();
    h.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    assert!(!is_page_load(&RequestView::new(&Method::GET, "/", &h)));
    assert!(!is_page_load(&RequestView::new(
        &Method::GET,
        "/",
        &HeaderMap::new()
    )));
}
