//! An `https://` upstream's own TLS material: the CA certificates that verify it instead of the
//! system's roots (`ca_file`), and the client certificate the edge presents when it asks for one
//! (`client_cert` + `client_key`, mutual TLS). Read and checked at every load, so a SIGHUP
//! picks up rotated files; nothing here is read per request.

use std::sync::Arc;

use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::schema::UpstreamConfig;

/// Set `p`'s CA list and client certificate from `cfg`; each problem as (key, message).
pub(super) fn apply(p: &mut HttpPeer, cfg: &UpstreamConfig, errs: &mut Vec<(String, String)>) {
    let tls = p.is_tls();
    let mut push = |k: &str, m: String| errs.push((k.to_string(), m));
    if let Some(path) = &cfg.ca_file {
        if !tls {
            push("ca_file", "needs an https:// url".into());
        } else if !cfg.tls_verify {
            push(
                "ca_file",
                "has no effect with tls_verify: false; remove one of them".into(),
            );
        } else {
            match certs(path) {
                Ok(list) => {
                    // Pingora's pool key leaves the CA out: without this, a connection verified
                    // with this CA would be reused for an upstream at the same address without
                    // it (and the other way round).
                    p.group_key = pool_group(&list);
                    p.options.ca = Some(
                        list.into_iter()
                            .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
                            .collect(),
                    );
                }
                Err(e) => push("ca_file", e),
            }
        }
    }
    match (&cfg.client_cert, &cfg.client_key) {
        (None, None) => {}
        (Some(_), None) => push("client_key", "missing: client_cert needs its key".into()),
        (None, Some(_)) => push(
            "client_cert",
            "missing: client_key needs its certificate".into(),
        ),
        (Some(_), Some(_)) if !tls => push("client_cert", "needs an https:// url".into()),
        (Some(cert), Some(key)) => match client(cert, key) {
            Ok(ck) => p.client_cert_key = Some(ck),
            Err((k, e)) => push(k, e),
        },
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Every certificate of a PEM file, each checked to be X.509 (Pingora parses them again and
/// would stop on one that is not). The signer's CA reads its file with it too.
pub(crate) fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("{path}: not a PEM certificate file: {e}"))?;
        x509_parser::parse_x509_certificate(&c)
            .map_err(|e| format!("{path}: not an X.509 certificate: {e}"))?;
        out.push(c);
    }
    if out.is_empty() {
        return Err(format!("{path}: no CERTIFICATE in it"));
    }
    Ok(out)
}

/// A pool group of its own for the connections verified with `ca` (never 0, the group of
/// upstreams that use the system's roots).
fn pool_group(ca: &[CertificateDer<'_>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ca.hash(&mut h);
    h.finish().max(1)
}

/// The client certificate chain and its key, checked to belong together.
fn client(cert: &str, key: &str) -> Result<Arc<CertKey>, (&'static str, String)> {
    let chain = certs(cert).map_err(|e| ("client_cert", e))?;
    let pem = read(key).map_err(|e| ("client_key", e))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| ("client_key", format!("{key}: not a PEM private key: {e}")))?;
    let raw = der.secret_der().to_vec();
    // Pingora turns the key's bytes back into a rustls key by their shape; make sure it can.
    if PrivateKeyDer::try_from(raw.clone()).is_err() {
        return Err(("client_key", format!("{key}: unrecognised key encoding")));
    }
    pingora::tls::install_default_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .ok_or(("client_key", "no TLS crypto provider".to_string()))?;
    let raw_chain = chain.iter().map(|c| c.to_vec()).collect();
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| ("client_key", format!("{key}: does not fit {cert}: {e}")))?;
    Ok(Arc::new(CertKey::new(raw_chain, raw)))
}
