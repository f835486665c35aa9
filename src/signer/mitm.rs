//! The MITM CA of `CONNECT` (`signer.ca_cert`, `signer.ca_key`): leaf certificates for the
//! requested host minted on the fly (rcgen, one P-256 leaf key per load, SAN = the host as DNS
//! name or IP, valid from an hour ago for a day) and signed by the CA, cached per host in a
//! bounded LRU as ready rustls server configurations; and the TLS client configuration toward
//! the targets (`trusted_certificates`, default the system roots; `insecure_skip_verify`).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::config::SignerConfig;
use crate::config::Problems;

/// Hosts whose leaf is kept.
const CACHE_ENTRIES: usize = 1024;
/// A cached leaf is minted again after this (it is valid for a day).
const LEAF_REUSE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    #[error("cannot mint a certificate for {host}: {reason}")]
    Mint { host: String, reason: String },
}

/// The CA, the leaf key and cache, and the client side.
pub struct Mitm {
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<lru::LruCache<String, (Instant, Arc<ServerConfig>)>>,
    /// TLS toward `CONNECT` targets.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Mitm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mitm").finish_non_exhaustive()
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CA certificate, checked: a CA that may sign certificates and is valid now.
fn read_ca_cert(path: &str) -> Result<CertificateDer<'static>, String> {
    let cert = crate::upstream::tls::certs(path)?.swap_remove(0);
    let (_, x509) = x509_parser::parse_x509_certificate(&cert)
        .map_err(|e| format!("{path}: not an X.509 certificate: {e}"))?;
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(format!(
            "{path}: not a CA certificate (basicConstraints CA:TRUE is missing)"
        ));
    }
    if let Ok(Some(ku)) = x509.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(format!(
                "{path}: its keyUsage does not allow signing certificates (keyCertSign)"
            ));
        }
    }
    if !x509.validity().is_valid() {
        return Err(format!(
            "{path}: not valid now (see its notBefore/notAfter)"
        ));
    }
    Ok(cert)
}

/// The CA key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM), checked against the certificate.
fn read_ca_key(path: &str, cert: Option<&CertificateDer<'_>>) -> Result<KeyPair, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{path}: not a PEM private key: {e}"))?;
    let key = KeyPair::try_from(&der)
        .map_err(|e| format!("{path}: unusable private key (RSA, P-256/P-384 or Ed25519): {e}"))?;
    if let Some(cert) = cert {
        let (_, x509) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| format!("cannot parse the CA certificate: {e}"))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(format!("{path}: does not match the certificate of ca_cert"));
        }
    }
    Ok(key)
}

/// Check the CA keys of `signer:` and build the MITM side; `None` without a CA.
pub fn build(
    cfg: &SignerConfig,
    path: &str,
    resolve: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<Arc<Mitm>> {
    let provider = provider();
    // The trust store, checked whenever it is given.
    let mut roots = RootCertStore::empty();
    if let Some(list) = &cfg.trusted_certificates {
        if list.is_empty() {
            problems.push(
                format!("{path}.trusted_certificates"),
                "an empty list trusts nothing; leave it out for the system roots",
            );
        }
        for (i, f) in list.iter().enumerate() {
            match crate::upstream::tls::certs(&resolve(f)) {
                Ok(certs) => {
                    for c in certs {
                        if let Err(e) = roots.add(c) {
                            problems.push(
                                format!("{path}.trusted_certificates[{i}]"),
                                format!("unusable certificate: {e}"),
                            );
                        }
                    }
                }
                Err(e) => problems.push(format!("{path}.trusted_certificates[{i}]"), e),
            }
        }
    }
    let (cert_file, key_file) = match (&cfg.ca_cert, &cfg.ca_key) {
        (None, None) => return None,
        (Some(c), Some(k)) => (resolve(c), resolve(k)),
        (Some(_), None) => {
            problems.push(format!("{path}.ca_key"), "ca_cert needs ca_key");
            return None;
        }
        (None, Some(_)) => {
            problems.push(format!("{path}.ca_cert"), "ca_key needs ca_cert");
            return None;
        }
    };
    let cert = read_ca_cert(&cert_file)
        .map_err(|e| problems.push(format!("{path}.ca_cert"), e))
        .ok();
    let key = read_ca_key(&key_file, cert.as_ref())
        .map_err(|e| problems.push(format!("{path}.ca_key"), e))
        .ok();
    if cfg.trusted_certificates.is_none() && !cfg.insecure_skip_verify {
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            problems.push(
                format!("{path}.trusted_certificates"),
                "no system root certificates were found: list the CAs of the targets",
            );
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return None;
    };
    let issuer = match Issuer::from_ca_cert_der(&cert, key) {
        Ok(i) => i,
        Err(e) => {
            problems.push(format!("{path}.ca_cert"), format!("unusable CA: {e}"));
            return None;
        }
    };
    let leaf_key = match KeyPair::generate() {
        Ok(k) => k,
        Err(e) => {
            problems.push(path, format!("cannot generate the leaf key: {e}"));
            return None;
        }
    };
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            if cfg.insecure_skip_verify {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
                    .with_no_client_auth()
            } else {
                b.with_root_certificates(roots).with_no_client_auth()
            }
        });
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            problems.push(path, format!("TLS client: {e}"));
            return None;
        }
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !problems.is_empty() {
        return None;
    }
    Some(Arc::new(Mitm {
        issuer,
        leaf_key,
        provider,
        leaves: Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
        )),
        client: Arc::new(client),
    }))
}

impl Mitm {
    /// The TLS server configuration presenting a certificate for `host` (a name or an IP
    /// literal, brackets allowed), from the cache or minted now.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, MitmError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let key = host.to_ascii_lowercase();
        if let Ok(mut cache) = self.leaves.lock() {
            if let Some((at, cfg)) = cache.get(&key) {
                if at.elapsed() < LEAF_REUSE {
                    return Ok(cfg.clone());
                }
            }
        }
        let cfg = Arc::new(self.mint(&key)?);
        if let Ok(mut cache) = self.leaves.lock() {
            cache.put(key, (Instant::now(), cfg.clone()));
        }
        Ok(cfg)
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, MitmError> {
        let fail = |reason: String| MitmError::Mint {
            host: host.to_string(),
            reason,
        };
        let mut params = CertificateParams::default();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e| fail(format!("{e}")))?,
            ),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        let mut serial = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut serial[..]);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| fail(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(self.leaf_key.serialize_der().into());
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .map_err(|e| fail(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// `insecure_skip_verify: true`: any certificate, handshake signatures still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
