//! The `oidc` mode's config: named providers (with their session) at the top level under
//! `oidc:`, and the `type: oidc` filter of a route naming one. Serde only, unknown keys rejected;
//! cross-field checks happen in `build`, which reports every problem with its key path.
//!
//! ```yaml
//! oidc:
//!   main:
//!     issuer: https://op.example             # discovery at <issuer>/.well-known/openid-configuration
//!     # or, without discovery: endpoints: {authorization: .., token: .., userinfo: .., jwks: ..}
//!     client_id: web
//!     client_secret: {env: OIDC_CLIENT_SECRET}  # absent: a public client (PKCE only)
//!     cookie_secrets: [{id: k1, secret: {env: COOKIE_SECRET}}]   # the first seals, all open
//!     email_domains: [example.com]            # "*" for any
//! routes:
//!   - path: /app
//!     upstream: app
//!     auth: [{type: oidc, provider: main}]
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::config::secret::SecretSource;

/// One OpenID provider, its client registration and the session kept for it. Several routes
/// may name it: they share the login, the endpoints and the session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The issuer; discovery reads `<issuer>/.well-known/openid-configuration`. Optional only
    /// with `endpoints` and no `endpoints.jwks` (then nothing is signed by it to check).
    #[serde(default)]
    pub issuer: Option<String>,
    /// A provider without discovery: its endpoints named here instead (oauth2-proxy's
    /// `LOGIN_URL`, `REDEEM_URL`, `PROFILE_URL`/`VALIDATE_URL`, `OIDC_JWKS_URL`).
    #[serde(default)]
    pub endpoints: Option<Endpoints>,
    pub client_id: String,
    /// Absent: a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: Option<SecretSource>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Default `<scheme>://<host><prefix>/callback` of the request that started the login.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Where the endpoints are served (`start`, `callback`, `sign_out`, `userinfo`, `auth`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Serve the endpoints on this host only (default: every host).
    #[serde(default)]
    pub host: Option<String>,
    /// `cookie` (the sealed session in the cookie) or `shared` (a session id in the cookie, the
    /// session in the shared state; back-channel logout needs it).
    #[serde(default)]
    pub store: super::store::StoreKind,
    /// Session sealing keys; the first seals, all open (rotation). Each secret is 16, 24 or at
    /// least 32 bytes (oauth2-proxy's `COOKIE_SECRET` sizes).
    pub cookie_secrets: Vec<CookieKey>,
    /// The session cookie's name; `__Host-` is put in front when the cookie is `Secure`, has no
    /// domain and path `/`.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    #[serde(default = "yes")]
    pub cookie_secure: bool,
    #[serde(default)]
    pub cookie_domain: Option<String>,
    #[serde(default = "default_cookie_path")]
    pub cookie_path: String,
    /// Session lifetime.
    #[serde(default = "default_expire", with = "humantime_serde")]
    pub cookie_expire: Duration,
    /// Refresh a session older than this with its refresh token at the next request (keeps
    /// the refresh token in the session; ask for the `offline_access` scope). Absent: never.
    #[serde(default, with = "humantime_serde")]
    pub cookie_refresh: Option<Duration>,
    /// How long a login (the flow cookie with state, nonce and PKCE verifier) may take.
    #[serde(default = "default_flow_ttl", with = "humantime_serde")]
    pub flow_ttl: Duration,
    /// Redirect to the provider at once (true) or show a page with one sign-in button.
    #[serde(default = "yes")]
    pub skip_provider_button: bool,
    /// Accept ID tokens with `email_verified: false`.
    #[serde(default)]
    pub allow_unverified_email: bool,
    /// Absolute redirect targets (`rd`) allowed besides relative paths: exact origins.
    #[serde(default)]
    pub allowed_redirect_origins: Vec<String>,
    /// On sign-out, also end the session at the provider (`end_session_endpoint`) when it has one.
    #[serde(default = "yes")]
    pub sign_out_at_provider: bool,
    /// `post_logout_redirect_uri` sent to the provider's end-session endpoint.
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
    /// Who may log in, on every route of this provider (a filter may narrow it further): the
    /// e-mail's domain after the last `@`, exact (`*`: any). Required.
    #[serde(default)]
    pub email_domains: Option<Vec<String>>,
    /// Exact e-mail addresses allowed besides the domains.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// At least one of these groups (empty: no group needed).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The ID token claim holding the groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim sent as the user (`X-Forwarded-User`, the subject).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default)]
    pub headers: HeaderNames,
    /// Send the access token upstream (`X-Forwarded-Access-Token`).
    #[serde(default)]
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <id_token>` upstream.
    #[serde(default)]
    pub pass_authorization_header: bool,
    /// Deadline of each call to the provider (discovery, token, keys).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The endpoints of a provider used without discovery. With `jwks`, the ID token is verified
/// against those keys (and `issuer` is required); without it, who logged in is what the
/// `userinfo` endpoint says when called with the access token (both answers come straight from
/// the provider over the edge's own connection, OpenID Connect Core §3.1.3.7), so `userinfo` is
/// then required. Each must be `https`, or `http` to a loopback address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    #[serde(default)]
    pub userinfo: Option<String>,
    #[serde(default)]
    pub jwks: Option<String>,
    #[serde(default)]
    pub end_session: Option<String>,
}

/// A session sealing key with its id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieKey {
    pub id: String,
    pub secret: SecretSource,
}

/// Upstream header names (`""` disables one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderNames {
    #[serde(default = "h_user")]
    pub user: String,
    #[serde(default = "h_email")]
    pub email: String,
    #[serde(default = "h_groups")]
    pub groups: String,
    #[serde(default = "h_pu")]
    pub preferred_username: String,
    #[serde(default = "h_at")]
    pub access_token: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            user: h_user(),
            email: h_email(),
            groups: h_groups(),
            preferred_username: h_pu(),
            access_token: h_at(),
        }
    }
}

/// A route's `type: oidc` filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRouteConfig {
    /// The name of a provider under `oidc:`.
    pub provider: String,
    /// An API route: a request without a session gets 401, never a login redirect.
    #[serde(default)]
    pub api: bool,
    /// Narrows the provider's policy on this route.
    #[serde(default)]
    pub email_domains: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_prefix() -> String {
    "/oauth2".into()
}
fn default_cookie_name() -> String {
    "_authedge".into()
}
fn default_cookie_path() -> String {
    "/".into()
}
fn default_expire() -> Duration {
    Duration::from_secs(168 * 3600)
}
fn default_flow_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn h_user() -> String {
    "X-Forwarded-User".into()
}
fn h_email() -> String {
    "X-Forwarded-Email".into()
}
fn h_groups() -> String {
    "X-Forwarded-Groups".into()
}
fn h_pu() -> String {
    "X-Forwarded-Preferred-Username".into()
}
fn h_at() -> String {
    "X-Forwarded-Access-Token".into()
}
