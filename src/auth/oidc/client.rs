//! The provider side of a login, on the `openidconnect` crate: discovery (kept, refreshed in the
//! background and on an unknown signing key), the authorization URL with PKCE S256, state and
//! nonce, the code exchange, and ID token validation (issuer, audience, nonce, expiry,
//! signature against the provider's JWKS). Its HTTP goes through [`Outbound`]: deadline per
//! call, bounded bodies, no redirects, no second HTTP stack.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreTokenResponse,
};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse,
};

use crate::outbound::{Body, Call, Outbound};

mod fixed;
pub use fixed::Fixed;

/// The client type `from_provider_metadata` gives.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Largest provider response read (discovery, JWKS, token).
const MAX_BODY: usize = 256 * 1024;
/// At most one forced re-discovery (unknown signing key, failed fetch) per this many seconds.
const COOLDOWN_SECS: i64 = 5;

/// An HTTP failure as `openidconnect` sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// [`Outbound`] as `openidconnect`'s async HTTP client.
pub struct Http<'a> {
    out: &'a Outbound,
    deadline: Duration,
}

impl<'c> AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let form = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| {
                    v.as_bytes()
                        .starts_with(b"application/x-www-form-urlencoded")
                });
            let body = if body.is_empty() {
                Body::Empty
            } else if form {
                Body::Form(url::form_urlencoded::parse(&body).into_owned().collect())
            } else {
                let v = serde_json::from_slice(&body).map_err(|e| HttpError(e.to_string()))?;
                Body::Json(v)
            };
            let mut call = Call::new(parts.method, parts.uri.to_string())
                .body(body)
                .deadline(self.deadline)
                .max_body(MAX_BODY);
            for (k, v) in &parts.headers {
                if k != http::header::CONTENT_TYPE {
                    call = call.header(k.clone(), v.clone());
                }
            }
            let reply = self
                .out
                .send(call)
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            let mut resp = http::Response::new(reply.body.to_vec());
            *resp.status_mut() = reply.status;
            *resp.headers_mut() = reply.headers;
            Ok(resp)
        })
    }
}

/// Why a login did not produce a session.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The provider (discovery, token endpoint) did not answer: 503.
    Unavailable,
    /// The provider refused the code (already used, wrong verifier, expired): 401.
    CodeRefused,
    /// The ID token is missing or invalid (issuer, audience, nonce, expiry, signature): 401.
    BadIdToken(String),
}

/// What a valid ID token told us.
#[derive(Debug)]
pub struct LoggedIn {
    /// The verified ID token's claims, as JSON (for the user, groups and `sid` claims).
    pub claims: serde_json::Value,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
}

/// One provider's registration, with its discovered metadata.
pub struct ProviderClient {
    issuer: IssuerUrl,
    /// Endpoints from the config instead of discovery.
    fixed: Option<Fixed>,
    client_id: ClientId,
    secret: Option<ClientSecret>,
    scopes: Vec<Scope>,
    /// `offline_access` asked for (a refresh token): the authorize request adds
    /// `prompt=consent`.
    offline: bool,
    deadline: Duration,
    out: Outbound,
    meta: ArcSwapOption<ProviderMetadataWithLogout>,
    /// Unix seconds of the last discovery attempt (for the cooldown).
    last_try: AtomicI64,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .field("discovered", &self.meta.load().is_some())
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    pub fn new(
        issuer: IssuerUrl,
        client_id: &str,
        secret: Option<String>,
        scopes: &[String],
        deadline: Duration,
        out: Outbound,
        fixed: Option<Fixed>,
    ) -> ProviderClient {
        ProviderClient {
            issuer,
            fixed,
            client_id: ClientId::new(client_id.to_string()),
            secret: secret.map(ClientSecret::new),
            scopes: scopes
                .iter()
                .filter(|s| *s != "openid")
                .map(|s| Scope::new(s.clone()))
                .collect(),
            offline: scopes.iter().any(|s| s == "offline_access"),
            deadline,
            out,
            meta: ArcSwapOption::empty(),
            last_try: AtomicI64::new(0),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether discovery has succeeded at least once.
    pub fn ready(&self) -> bool {
        self.meta.load().is_some()
    }

    /// The end-session endpoint (RP-initiated logout), when the provider has one.
    pub fn end_session(&self) -> Option<String> {
        let m = self.meta.load_full()?;
        m.additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.as_str().to_string())
    }

    /// Fetch discovery (and the JWKS) now; keeps the old metadata on failure. Single-flight:
    /// a caller that waited for another's fetch, finished less than `min_age` seconds ago,
    /// takes its result instead of fetching again.
    pub async fn discover(&self, min_age: i64) -> bool {
        let _g = self.fetching.lock().await;
        let now = crate::auth::unix_now();
        if now - self.last_try.load(Ordering::Relaxed) < min_age {
            return self.meta.load().is_some();
        }
        self.last_try.store(now, Ordering::Relaxed);
        let http = Http {
            out: &self.out,
            deadline: self.deadline,
        };
        let found = match &self.fixed {
            None => ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &http)
                .await
                .map_err(|e| e.to_string()),
            Some(f) => self.fixed_metadata(f, &http).await,
        };
        match found {
            Ok(m) => {
                self.meta.store(Some(Arc::new(m)));
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer.as_str(), error = %e, "oidc discovery failed");
                false
            }
        }
    }

    /// The metadata, discovering now if there is none yet or `force` (at most once per
    /// cooldown; concurrent callers share one fetch).
    async fn metadata(&self, force: bool) -> Option<Arc<ProviderMetadataWithLogout>> {
        let current = self.meta.load_full();
        if current.is_some() && !force {
            return current;
        }
        let min_age = if current.is_none() { 1 } else { COOLDOWN_SECS };
        let since = crate::auth::unix_now() - self.last_try.load(Ordering::Relaxed);
        if since >= min_age {
            self.discover(min_age).await;
        }
        self.meta.load_full()
    }

    fn client(&self, meta: &ProviderMetadataWithLogout, redirect: &str) -> Option<Client> {
        let redirect = RedirectUrl::new(redirect.to_string()).ok()?;
        Some(
            CoreClient::from_provider_metadata(
                meta.clone(),
                self.client_id.clone(),
                self.secret.clone(),
            )
            .set_redirect_uri(redirect),
        )
    }

    /// The provider's authorization URL for a new login: PKCE S256 always, with `state` and
    /// `nonce`. Returns the URL and the PKCE verifier. `None`: provider unavailable.
    pub async fn authorize_url(
        &self,
        redirect: &str,
        state: &str,
        nonce: &str,
    ) -> Option<(String, String)> {
        let meta = self.metadata(false).await?;
        let client = self.client(&meta, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (st, n) = (state.to_string(), nonce.to_string());
        let url = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(st),
                move || Nonce::new(n),
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge);
        // A refresh token (`offline_access`) is only granted with explicit consent.
        let (url, _, _) = if self.offline {
            url.add_prompt(CoreAuthPrompt::Consent).url()
        } else {
            url.url()
        };
        Some((url.to_string(), verifier.secret().clone()))
    }

    /// Exchange `code` (with the PKCE verifier and the same redirect URL) and validate the ID
    /// token against `nonce`.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        redirect: &str,
        nonce: &str,
    ) -> Result<LoggedIn, LoginError> {
        let meta = self.metadata(false).await.ok_or(LoginError::Unavailable)?;
        let client = self
            .client(&meta, redirect)
            .ok_or(LoginError::Unavailable)?;
        let http = Http {
            out: &self.out,
            deadline: self.deadline,
        };
        let tokens: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| LoginError::Unavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r)
                    if !matches!(r.error(), CoreErrorResponseType::Extension(_)) =>
                {
                    LoginError::CodeRefused
                }
                RequestTokenError::Request(_) => LoginError::Unavailable,
                _ => LoginError::CodeRefused,
            })?;
        let access_token = tokens.access_token().secret().clone();
        if !self.checks_id_tokens() {
            let url = meta
                .userinfo_endpoint()
                .ok_or_else(|| LoginError::BadIdToken("no userinfo endpoint".into()))?;
            return Ok(LoggedIn {
                claims: self.userinfo(url, &access_token).await?,
                id_token: tokens.id_token().map(|t| t.to_string()).unwrap_or_default(),
                access_token,
                refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            });
        }
        let id_token = tokens
            .id_token()
            .ok_or_else(|| LoginError::BadIdToken("no id_token".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let verified = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(first) = verified {
            // A key the cached JWKS lacks (rotation): one re-discovery, then decide.
            let meta = self
                .metadata(true)
                .await
                .ok_or(LoginError::BadIdToken(first.clone()))?;
            let client = self
                .client(&meta, redirect)
                .ok_or(LoginError::Unavailable)?;
            id_token
                .claims(&client.id_token_verifier(), &nonce)
                .map_err(|e| LoginError::BadIdToken(e.to_string()))?;
        }
        let raw = id_token.to_string();
        let claims = payload(&raw).ok_or_else(|| LoginError::BadIdToken("payload".into()))?;
        Ok(LoggedIn {
            claims: self.completed(claims, &access_token).await?,
            id_token: raw,
            access_token,
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Use a refresh token. `Ok(None)`: the provider refused it (`invalid_grant` and the
    /// like): the session ends. A new ID token, when the answer has one, is validated (no
    /// nonce on a refresh).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Option<LoggedIn>, LoginError> {
        let meta = self.metadata(false).await.ok_or(LoginError::Unavailable)?;
        let client = self
            .client(&meta, "http://localhost/")
            .ok_or(LoginError::Unavailable)?;
        let http = Http {
            out: &self.out,
            deadline: self.deadline,
        };
        let rt = RefreshToken::new(refresh_token.to_string());
        let answer: Result<CoreTokenResponse, _> = match client.exchange_refresh_token(&rt) {
            Ok(req) => req.request_async(&http).await,
            Err(_) => return Err(LoginError::Unavailable),
        };
        let tokens = match answer {
            Ok(t) => t,
            Err(RequestTokenError::ServerResponse(_)) => return Ok(None),
            Err(RequestTokenError::Parse(..)) => return Ok(None),
            Err(_) => return Err(LoginError::Unavailable),
        };
        let (claims, id_token) = match tokens.id_token() {
            // Nothing to check a new ID token with: the session keeps who it was.
            Some(_) if !self.checks_id_tokens() => (serde_json::Value::Null, String::new()),
            Some(t) => {
                let verifier = client.id_token_verifier();
                let no_nonce = |_: Option<&Nonce>| Ok::<(), String>(());
                t.claims(&verifier, no_nonce)
                    .map_err(|e| LoginError::BadIdToken(e.to_string()))?;
                let raw = t.to_string();
                (payload(&raw).unwrap_or(serde_json::Value::Null), raw)
            }
            None => (serde_json::Value::Null, String::new()),
        };
        Ok(Some(LoggedIn {
            claims,
            id_token,
            access_token: tokens.access_token().secret().clone(),
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        }))
    }

    /// Verify a back-channel logout token's signature (the provider's JWKS, asymmetric
    /// algorithms only), issuer, audience (this client), `iat` and `exp` (when present); its
    /// claims. `Err(None)`: the provider's keys are not available.
    pub async fn verify_logout_token(
        &self,
        token: &str,
    ) -> Result<serde_json::Value, Option<String>> {
        use jsonwebtoken::{jwk::Jwk, Algorithm, DecodingKey, Validation};
        if token.len() > 8192 {
            return Err(Some("too long".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| Some(e.to_string()))?;
        let asymmetric = !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        if !asymmetric {
            return Err(Some("HMAC logout tokens are refused".into()));
        }
        let meta = self.metadata(false).await.ok_or(None)?;
        let find = |meta: &ProviderMetadataWithLogout| -> Option<Jwk> {
            meta.jwks()
                .keys()
                .iter()
                .filter_map(|k| serde_json::to_value(k).ok())
                .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
                .find(|k| header.kid.is_some() && k.common.key_id == header.kid)
        };
        let jwk = match find(&meta) {
            Some(k) => k,
            None => {
                let meta = self.metadata(true).await.ok_or(None)?;
                find(&meta).ok_or_else(|| Some("unknown key".to_string()))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| Some(e.to_string()))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_audience(&[self.client_id.as_str()]);
        v.set_required_spec_claims(&["iat", "iss", "aud"]);
        v.leeway = 60;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| Some(e.to_string()))
    }

    /// Check an ID token obtained elsewhere (tests: tokens for another audience, a past `exp`).
    pub async fn verify_id_token(&self, raw: &str, nonce: &str) -> Result<(), LoginError> {
        let meta = self.metadata(false).await.ok_or(LoginError::Unavailable)?;
        let client = self
            .client(&meta, "http://localhost/")
            .ok_or(LoginError::Unavailable)?;
        let token: openidconnect::core::CoreIdToken = raw
            .parse()
            .map_err(|_| LoginError::BadIdToken("malformed".into()))?;
        let verifier = client.id_token_verifier();
        let checked = token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map(|_| ())
            .map_err(|e| LoginError::BadIdToken(e.to_string()));
        checked
    }
}

/// The JSON payload of a JWT already verified.
fn payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A random URL-safe token of 32 bytes (state, nonce, session ids).
pub fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// A redirect URL as `Cow` for callers that may or may not build one.
pub fn redirect_for<'a>(
    configured: Option<&'a str>,
    scheme: &str,
    host: &str,
    prefix: &str,
) -> Cow<'a, str> {
    match configured {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(format!("{scheme}://{host}{prefix}/callback")),
    }
}
