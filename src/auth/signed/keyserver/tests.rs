//! The registry endpoint against the memory store, with the demo key of conf/signed/ (svc-a,
//! kid k1): publish → pending → approve → served; refusals record nothing; delete.

use std::sync::Arc;

use super::*;
use crate::state::MemoryStore;
use jsonwebtoken::{EncodingKey, Header};

const KEY: &str = include_str!("../../../../conf/signed/svc-a.key");
const JWK: &str = include_str!("../../../../conf/signed/svc-a.jwk.json");

fn registry(auto: &[&str]) -> (Arc<dyn Endpoint>, Store) {
    let store: Store = MemoryStore::new(None);
    let cfg: KeyRegistryConfig = serde_norway::from_str(&format!(
        "auto_approve: [{}]\nadmin_secret: {{ value: 0123456789abcdef }}\n",
        auto.join(",")
    ))
    .unwrap();
    let (at, ep) = build(&cfg, "key_registry", &store).unwrap();
    assert!(at.prefix);
    assert_eq!(&*at.path, "/services/");
    (ep, store)
}

fn token(iss: &str, kid: &str, aud: &str, jti: &str) -> String {
    let now = unix_now();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let claims = json!({"iss": iss, "aud": aud, "iat": now, "nbf": now - 60, "exp": now + 300,
                        "jti": jti});
    let k = EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
    format!("Bearer {}", jsonwebtoken::encode(&h, &claims, &k).unwrap())
}

struct Req {
    method: Method,
    path: String,
    query: Option<String>,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn new(method: Method, path: &str) -> Req {
        Req {
            method,
            path: path.into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: Vec::new(),
        }
    }
    fn auth(mut self, v: &str) -> Req {
        self.headers
            .insert(http::header::AUTHORIZATION, v.parse().unwrap());
        self
    }
    fn admin(mut self) -> Req {
        self.headers
            .insert("x-keyregistry-admin", "0123456789abcdef".parse().unwrap());
        self
    }
    async fn send(&self, ep: &Arc<dyn Endpoint>) -> (u16, String) {
        let mut v = RequestView::new(&self.method, &self.path, &self.headers);
        v.host = Some("keys.test:8080");
        v.query = self.query.as_deref();
        v.body = Some(&self.body);
        match ep.handle(&v).await {
            Answer::Respond(r) => (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            ),
            Answer::Deny(d) => (d.status.as_u16(), d.reason.as_str().to_string()),
        }
    }
}

fn put(kid: &str, auth: &str) -> Req {
    let mut r = Req::new(Method::PUT, &format!("/services/svc-a/keys/{kid}")).auth(auth);
    r.body = JWK.as_bytes().to_vec();
    r
}

const AUD: &str = "http://keys.test:8080";

#[tokio::test]
async fn publish_pending_approve_serve_delete() {
    let (ep, _) = registry(&[]);
    let get = Req::new(Method::GET, "/services/svc-a/keys/k1");
    assert_eq!(get.send(&ep).await.0, 404);
    // Refused publishes: no token, wrong issuer, wrong audience, a kid the JWK does not have.
    assert_eq!(put("k1", "Bearer x").send(&ep).await.0, 403);
    let wrong_iss = token("svc-b", "k1", AUD, "nonce-wrong-issuer-000001");
    assert_eq!(put("k1", &wrong_iss).send(&ep).await.0, 403);
    let wrong_aud = token(
        "svc-a",
        "k1",
        "http://other.test",
        "nonce-wrong-aud-0000001",
    );
    assert_eq!(put("k1", &wrong_aud).send(&ep).await.0, 403);
    let other_kid = token("svc-a", "k2", AUD, "nonce-other-kid-0000001");
    assert_eq!(put("k2", &other_kid).send(&ep).await.0, 400);
    assert_eq!(get.send(&ep).await.0, 404);

    // Self-signed: pending (202), then 409 until approved.
    let good = token("svc-a", "k1", AUD, "nonce-publish-0000000001");
    assert_eq!(put("k1", &good).send(&ep).await.0, 202);
    assert_eq!(
        put("k1", &good).send(&ep).await.0,
        403,
        "a replayed publish"
    );
    assert_eq!(get.send(&ep).await.0, 409);
    let list = Req::new(Method::GET, "/services/svc-a/keys");
    assert_eq!(list.send(&ep).await, (200, r#"{"keys":[]}"#.to_string()));
    let pending = Req::new(Method::GET, "/services/svc-a/pending");
    assert_eq!(pending.send(&ep).await.0, 401);
    let (s, body) = pending.admin().send(&ep).await;
    assert_eq!(s, 200);
    assert!(body.contains(r#""kid":"k1""#), "{body}");
    let approve = Req::new(Method::POST, "/services/svc-a/keys/k1/approve");
    assert_eq!(approve.send(&ep).await.0, 401);
    assert_eq!(approve.admin().send(&ep).await.0, 200);
    let (s, body) = get.send(&ep).await;
    assert_eq!(s, 200);
    let served: Value = serde_json::from_str(&body).unwrap();
    let mine: Value = serde_json::from_str(JWK).unwrap();
    assert_eq!(served, mine);
    assert!(list.send(&ep).await.1.contains("k1"));

    // Delete: signed by the key itself.
    let del = Req::new(Method::DELETE, "/services/svc-a/keys/k1");
    assert_eq!(del.send(&ep).await.0, 403);
    let d = token("svc-a", "k1", AUD, "nonce-delete-00000000001");
    assert_eq!(del.auth(&d).send(&ep).await.0, 204);
    assert_eq!(get.send(&ep).await.0, 404);
    assert_eq!(
        Req::new(Method::PATCH, "/services/svc-a/keys/k1")
            .send(&ep)
            .await
            .0,
        405
    );
    assert_eq!(
        Req::new(Method::GET, "/services/a/b/c/d").send(&ep).await.0,
        404
    );
}

#[tokio::test]
async fn auto_approved_service_is_served_at_once_and_expiry_is_403() {
    let (ep, store) = registry(&["svc-a"]);
    let good = token("svc-a", "k1", AUD, "nonce-auto-000000000001");
    let mut p = put("k1", &good);
    p.query = Some(format!("expiration={}&rotation=3600", unix_now() + 100));
    assert_eq!(p.send(&ep).await.0, 200);
    let get = Req::new(Method::GET, "/services/svc-a/keys/k1");
    assert_eq!(get.send(&ep).await.0, 200);
    // jwtproxy escapes the kid in the path (%3D for '='); the same kid is found.
    let mut r: Record = Record::from_bytes(
        &store.map_get("keyreg|svc-a", "k1").await.unwrap().unwrap(),
        unix_now(),
    )
    .unwrap();
    assert_eq!(r.rotation, Some(3600));
    r.expires = Some(unix_now() - 1);
    store
        .map_put(
            "keyreg|svc-a",
            "k1=",
            &r.to_bytes(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        Req::new(Method::GET, "/services/svc-a/keys/k1%3D")
            .send(&ep)
            .await
            .0,
        403
    );
}

#[test]
fn path_segments() {
    assert_eq!(segment("abc%3D").as_deref(), Some("abc="));
    assert_eq!(segment("a%2Fb"), None);
    assert_eq!(segment(".."), None);
    assert_eq!(segment("%zz"), None);
    assert!(matches!(call("svc/keys"), Some(Call::List(s)) if s == "svc"));
    assert!(matches!(call("svc/keys/k"), Some(Call::Key(s, k)) if s == "svc" && k == "k"));
    assert!(call("svc").is_none());
    assert!(call("svc/keys/k/x").is_none());
}

#[test]
fn bad_config_names_the_key() {
    let store: Store = MemoryStore::new(None);
    let cfg: KeyRegistryConfig = serde_norway::from_str(
        "path: /keys/\nauto_approve: ['a/b']\nadmin_secret: { value: short }\nmax_keys_per_service: 0\n",
    )
    .unwrap();
    let Err(p) = build(&cfg, "key_registry", &store) else {
        panic!("accepted")
    };
    let text = format!("{p:?}");
    for key in [
        "key_registry.path",
        "key_registry.auto_approve[0]",
        "key_registry.admin_secret",
        "key_registry.max_keys_per_service",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
}
