//! TLS for tests: a CA and leaf certificates minted with rcgen, and an HTTPS server on a free
//! 127.0.0.1 port (rustls, HTTP/1.1 keep-alive) that answers each request with what a closure
//! makes of it and of the client's certificate.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::free_port;

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A self-signed CA named `name`.
pub fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf from `ca` for `names`, with `cn` as its common name when given.
pub fn leaf(ca: &Ca, cn: Option<&str>, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
    let issuer = Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some(cn) = cn {
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    }
    (p.signed_by(&key, &issuer).unwrap(), key)
}

/// The server side of a TLS config for 127.0.0.1 with a leaf from `ca`; `client_ca`: require a
/// client certificate from it.
pub fn server_config(ca: &Ca, client_ca: Option<&Ca>) -> rustls::ServerConfig {
    let (cert, key) = leaf(ca, None, &["127.0.0.1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(c.cert.der().clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap()
}

/// What the server answers: the body for a request, given the client's certificate (DER).
pub type Respond = fn(&http::request::Parts, Option<&[u8]>) -> String;

/// Serve HTTPS with `cfg` on a free 127.0.0.1 port until the test process ends.
pub fn serve(cfg: rustls::ServerConfig, respond: Respond) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            tx.send(()).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client: Option<Vec<u8>> = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (parts, _) = req.into_parts();
                            let body = respond(&parts, client.as_deref());
                            async move {
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(body)),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap();
    port
}
