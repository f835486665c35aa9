//! A provider used without discovery: its configured endpoints as metadata (the keys fetched
//! from `jwks` when named), and the userinfo endpoint that completes, or without keys replaces,
//! the ID token's claims.

use openidconnect::core::{CoreJwsSigningAlgorithm, CoreResponseType, CoreSubjectIdentifierType};
use openidconnect::{
    AuthUrl, EmptyAdditionalProviderMetadata, EndSessionUrl, JsonWebKeySet, JsonWebKeySetUrl,
    LogoutProviderMetadata, ProviderMetadataWithLogout, ResponseTypes, TokenUrl, UserInfoUrl,
};

use super::{Http, LoginError, ProviderClient, MAX_BODY};
use crate::outbound::Call;

/// A provider's endpoints named in the config (no discovery).
#[derive(Debug, Clone)]
pub struct Fixed {
    pub authorization: AuthUrl,
    pub token: TokenUrl,
    pub userinfo: Option<UserInfoUrl>,
    /// Absent: the ID token is not checked (nothing to check it with); who logged in is what
    /// `userinfo` answers for the access token.
    pub jwks: Option<JsonWebKeySetUrl>,
    pub end_session: Option<EndSessionUrl>,
}

impl ProviderClient {
    /// Metadata from configured endpoints, with the keys fetched from `jwks` (when named).
    /// Asymmetric ID token algorithms only. Without `jwks` the key set stays empty, so nothing
    /// can verify against it, and the placeholder key URL is never fetched.
    pub(super) async fn fixed_metadata(
        &self,
        f: &Fixed,
        http: &Http<'_>,
    ) -> Result<ProviderMetadataWithLogout, String> {
        use CoreJwsSigningAlgorithm as A;
        let keys_url = f
            .jwks
            .clone()
            .unwrap_or_else(|| JsonWebKeySetUrl::from_url(f.token.url().clone()));
        let meta = ProviderMetadataWithLogout::new(
            self.issuer.clone(),
            f.authorization.clone(),
            keys_url,
            vec![ResponseTypes::new(vec![CoreResponseType::Code])],
            vec![CoreSubjectIdentifierType::Public],
            vec![
                A::RsaSsaPkcs1V15Sha256,
                A::RsaSsaPkcs1V15Sha384,
                A::RsaSsaPkcs1V15Sha512,
                A::RsaSsaPssSha256,
                A::EcdsaP256Sha256,
                A::EcdsaP384Sha384,
                A::EdDsa,
            ],
            LogoutProviderMetadata {
                end_session_endpoint: f.end_session.clone(),
                additional_metadata: EmptyAdditionalProviderMetadata {},
            },
        )
        .set_token_endpoint(Some(f.token.clone()))
        .set_userinfo_endpoint(f.userinfo.clone());
        match &f.jwks {
            Some(url) => {
                let keys = JsonWebKeySet::fetch_async(url, http)
                    .await
                    .map_err(|e| format!("keys from {}: {e}", url.as_str()))?;
                Ok(meta.set_jwks(keys))
            }
            None => Ok(meta),
        }
    }

    /// Whether ID tokens are verified (discovery, or configured keys); otherwise identity comes
    /// from the userinfo endpoint alone.
    pub(super) fn checks_id_tokens(&self) -> bool {
        self.fixed.as_ref().is_none_or(|f| f.jwks.is_some())
    }

    /// The userinfo endpoint's claims for `access_token` (a JSON object with `sub`).
    pub(super) async fn userinfo(
        &self,
        url: &UserInfoUrl,
        access_token: &str,
    ) -> Result<serde_json::Value, LoginError> {
        let bearer = http::HeaderValue::try_from(format!("Bearer {access_token}"))
            .map_err(|_| LoginError::BadIdToken("access token not a header value".into()))?;
        let call = Call::get(url.as_str())
            .header(http::header::AUTHORIZATION, bearer)
            .header(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            )
            .deadline(self.deadline)
            .max_body(MAX_BODY);
        let reply = self
            .out
            .send(call)
            .await
            .map_err(|_| LoginError::Unavailable)?;
        match reply.status.as_u16() {
            200..=299 => {}
            400..=499 => return Err(LoginError::CodeRefused),
            _ => return Err(LoginError::Unavailable),
        }
        let v = reply
            .json()
            .map_err(|_| LoginError::BadIdToken("userinfo is not JSON".into()))?;
        match v.get("sub").and_then(|s| s.as_str()) {
            Some(s) if !s.is_empty() && v.is_object() => Ok(v),
            _ => Err(LoginError::BadIdToken("userinfo has no sub".into())),
        }
    }

    /// Claims from a verified ID token completed with the userinfo endpoint's (configured
    /// endpoints only), which must name the same subject (Core §5.3.2).
    pub(super) async fn completed(
        &self,
        mut claims: serde_json::Value,
        access_token: &str,
    ) -> Result<serde_json::Value, LoginError> {
        let Some(url) = self.fixed.as_ref().and_then(|f| f.userinfo.as_ref()) else {
            return Ok(claims);
        };
        let info = self.userinfo(url, access_token).await?;
        if info.get("sub") != claims.get("sub") {
            return Err(LoginError::BadIdToken(
                "userinfo names another subject".into(),
            ));
        }
        if let (Some(c), serde_json::Value::Object(i)) = (claims.as_object_mut(), info) {
            for (k, v) in i {
                c.entry(k).or_insert(v);
            }
        }
        Ok(claims)
    }
}
