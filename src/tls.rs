//! TLS listeners: certificates loaded from PEM files (paths relative to the config file's
//! directory), chosen per handshake by the client's SNI, and swapped without a restart.
//!
//! Each TLS listener gets a [`CertStore`]: a rustls `ResolvesServerCert` whose certificate set
//! sits behind an `ArcSwap`. A handshake loads the set once (no lock); SIGHUP re-reads every
//! file ([`Certificates::reload`]) and swaps the whole set, or keeps the old one when any file
//! is missing or bad (logged, counted as a reload error). Protocol versions are TLS 1.2 and 1.3
//! (Pingora's rustls listener offers nothing older); ALPN is the listener's `alpn` list.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ALPN;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use prometheus::IntCounterVec;

use crate::config::schema::{ListenerConfig, TlsConfig};
use crate::config::Problems;
use crate::metrics::Metrics;

/// Why a TLS listener cannot be set up. File problems are reported by [`check`] with their key
/// path at load; these are what remains at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{cert} holds no PEM certificate or {key} no PEM private key")]
    NoPem { cert: String, key: String },
    #[error("cannot read {cert} or {key}: {source}")]
    Read {
        cert: String,
        key: String,
        #[source]
        source: pingora::BError,
    },
    #[error("no TLS crypto provider")]
    NoProvider,
    #[error("{cert} and {key} do not make a usable certificate: {source}")]
    Unusable {
        cert: String,
        key: String,
        #[source]
        source: pingora::tls::RusTlsError,
    },
    #[error("{0:?}: give [h2, http/1.1] (the default), [h2] or [http/1.1]")]
    Alpn(Vec<String>),
    /// Files of TLS listeners, each problem as `listeners[i].tls.<key>: <message>`.
    #[error("{}", .0.join("; "))]
    Files(Vec<String>),
    #[error("TLS settings: {0}")]
    Settings(#[source] pingora::BError),
}

/// The certificates of one listener: a default and those chosen by SNI.
#[derive(Debug)]
struct CertSet {
    default: Arc<CertifiedKey>,
    /// Exact names, lower case.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` entries under `example.com`: one label below it.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    fn pick(&self, name: &str) -> &Arc<CertifiedKey> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let name = name.trim_end_matches('.');
        if let Some(c) = self.exact.get(name) {
            return c;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

/// One TLS listener's certificates, swapped as a whole.
#[derive(Debug)]
pub struct CertStore {
    /// The files as given at start (paths resolved); SIGHUP re-reads these.
    cfg: TlsConfig,
    current: ArcSwap<CertSet>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        Some(match hello.server_name() {
            Some(name) => set.pick(name).clone(),
            None => set.default.clone(),
        })
    }
}

impl CertStore {
    /// Load every file of `cfg`; `Err` lists each problem with its key path below the
    /// listener's `tls` (`cert`, `sni[1].key`, ...).
    pub fn load(cfg: &TlsConfig) -> Result<CertStore, Vec<(String, String)>> {
        let set = load_set(cfg)?;
        Ok(CertStore {
            cfg: cfg.clone(),
            current: ArcSwap::from_pointee(set),
        })
    }

    /// Re-read the files; on any problem keep the certificates in use.
    pub fn reload(&self) -> Result<(), Vec<(String, String)>> {
        let set = load_set(&self.cfg)?;
        self.current.store(Arc::new(set));
        Ok(())
    }
}

fn provider() -> Option<Arc<CryptoProvider>> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default().cloned()
}

/// A certificate chain and its key (`prefix` names them in problems: `cert`/`key` or
/// `sni[1].cert`/`sni[1].key`).
fn load_named(
    prefix: &str,
    cert: &str,
    key: &str,
) -> Result<Arc<CertifiedKey>, Vec<(String, String)>> {
    let name = |k: &str| match prefix {
        "" => k.to_string(),
        p => format!("{p}.{k}"),
    };
    let missing: Vec<(String, String)> = [("cert", cert), ("key", key)]
        .into_iter()
        .filter(|(_, f)| std::fs::metadata(f).is_err())
        .map(|(k, f)| (name(k), format!("cannot read {f}")))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    load_pair(cert, key).map_err(|e| vec![(name("cert"), e.to_string())])
}

/// A certificate chain and its key, checked to belong together.
fn load_pair(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let names = || (cert.to_string(), key.to_string());
    let (certs, key_der) = match pingora::tls::load_certs_and_key_files(cert, key) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            let (cert, key) = names();
            return Err(TlsError::NoPem { cert, key });
        }
        Err(source) => {
            let (cert, key) = names();
            return Err(TlsError::Read { cert, key, source });
        }
    };
    let provider = provider().ok_or(TlsError::NoProvider)?;
    CertifiedKey::from_der(certs, key_der, &provider)
        .map(Arc::new)
        .map_err(|source| {
            let (cert, key) = names();
            TlsError::Unusable { cert, key, source }
        })
}

fn load_set(cfg: &TlsConfig) -> Result<CertSet, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let default = load_named("", &cfg.cert, &cfg.key).map_err(|e| errs.extend(e));
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for (i, s) in cfg.sni.iter().enumerate() {
        let ck = match load_named(&format!("sni[{i}]"), &s.cert, &s.key) {
            Ok(ck) => ck,
            Err(e) => {
                errs.extend(e);
                continue;
            }
        };
        if s.names.is_empty() {
            errs.push((
                format!("sni[{i}].names"),
                "at least one name is needed".into(),
            ));
        }
        for (j, n) in s.names.iter().enumerate() {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            let (table, key) = match n.strip_prefix("*.") {
                Some(parent) => (&mut wildcard, parent.to_string()),
                None => (&mut exact, n.clone()),
            };
            let bad = key.is_empty()
                || key.contains('*')
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if bad {
                errs.push((
                    format!("sni[{i}].names[{j}]"),
                    format!("{n:?} is not a DNS name or *.name"),
                ));
            } else if table.insert(key, ck.clone()).is_some() {
                errs.push((
                    format!("sni[{i}].names[{j}]"),
                    format!("{n:?} is given twice"),
                ));
            }
        }
    }
    match default {
        Ok(default) if errs.is_empty() => Ok(CertSet {
            default,
            exact,
            wildcard,
        }),
        _ => Err(errs),
    }
}

/// The ALPN setting for a listener's `alpn` list.
pub fn alpn(list: &[String]) -> Result<ALPN, TlsError> {
    let names: Vec<&str> = list.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["h2", "http/1.1"] => Ok(ALPN::H2H1),
        ["h2"] => Ok(ALPN::H2),
        ["http/1.1"] => Ok(ALPN::H1),
        _ => Err(TlsError::Alpn(list.to_vec())),
    }
}

/// Resolve a TLS block's file names against the config file's directory.
pub fn resolve_paths(tls: &mut TlsConfig, resolve: impl Fn(&str) -> String) {
    tls.cert = resolve(&tls.cert);
    tls.key = resolve(&tls.key);
    for s in &mut tls.sni {
        s.cert = resolve(&s.cert);
        s.key = resolve(&s.key);
    }
}

/// `check` and every load: the TLS block of the listener at `p` loads (files, key matches
/// certificate, names, ALPN).
pub fn check(tls: &TlsConfig, p: &str, problems: &mut Problems) {
    if let Err(e) = alpn(&tls.alpn) {
        problems.push(format!("{p}.tls.alpn"), e);
    }
    if let Err(errs) = load_set(tls) {
        for (k, m) in errs {
            problems.push(format!("{p}.tls.{k}"), m);
        }
    }
}

/// Every TLS listener's store, built at start; SIGHUP reloads them all.
pub struct Certificates {
    /// Indexed like the listeners; `None` for plain ones.
    stores: Vec<Option<Arc<CertStore>>>,
    reloads: Option<IntCounterVec>,
    config_errors: IntCounterVec,
}

impl Certificates {
    pub fn build(
        listeners: &[ListenerConfig],
        metrics: &Metrics,
    ) -> Result<Certificates, TlsError> {
        let mut stores = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.iter().enumerate() {
            let store = match &l.tls {
                Some(t) => Some(Arc::new(CertStore::load(t).map_err(|errs| {
                    TlsError::Files(
                        errs.into_iter()
                            .map(|(k, m)| format!("listeners[{i}].tls.{k}: {m}"))
                            .collect(),
                    )
                })?)),
                None => None,
            };
            stores.push(store);
        }
        let reloads = IntCounterVec::new(
            prometheus::Opts::new(
                "authedge_certificate_reload_total",
                "Certificate re-reads on SIGHUP, per TLS listener set (result: success or error)",
            ),
            &["result"],
        )
        .ok()
        .filter(|c| metrics.registry.register(Box::new(c.clone())).is_ok());
        Ok(Certificates {
            stores,
            reloads,
            config_errors: metrics.reloads.clone(),
        })
    }

    /// The store of listener `i`, when it is a TLS listener.
    pub fn store(&self, i: usize) -> Option<Arc<CertStore>> {
        self.stores.get(i).cloned().flatten()
    }

    /// Re-read every listener's files. A listener whose files fail keeps its certificates;
    /// the failure is logged and counted in `authedge_certificate_reload_total{result="error"}`
    /// and `authedge_config_reload_total{result="error"}`.
    pub fn reload(&self) -> bool {
        if self.stores.iter().all(Option::is_none) {
            return true;
        }
        let mut ok = true;
        for (i, s) in self.stores.iter().enumerate() {
            let Some(s) = s else { continue };
            if let Err(errs) = s.reload() {
                ok = false;
                for (k, m) in errs {
                    tracing::error!(problem = %format!("listeners[{i}].tls.{k}: {m}"), "certificate reload failed; keeping the certificates in use");
                }
            }
        }
        let result = if ok { "success" } else { "error" };
        if let Some(c) = &self.reloads {
            c.with_label_values(&[result]).inc();
        }
        if ok {
            tracing::info!("certificates reloaded");
        } else {
            self.config_errors.with_label_values(&["error"]).inc();
        }
        ok
    }
}

/// Pingora settings for a TLS listener: its store as the certificate resolver, its ALPN.
pub fn settings(store: Arc<CertStore>, alpn_list: &[String]) -> Result<TlsSettings, TlsError> {
    let mut s = TlsSettings::intermediate("", "").map_err(TlsError::Settings)?;
    s.set_cert_resolver(store);
    s.set_alpn(alpn(alpn_list)?);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_lists() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(alpn(&l(&["h2", "http/1.1"])), Ok(ALPN::H2H1)));
        assert!(matches!(alpn(&l(&["h2"])), Ok(ALPN::H2)));
        assert!(matches!(alpn(&l(&["http/1.1"])), Ok(ALPN::H1)));
        assert!(alpn(&l(&["http/1.1", "h2"])).is_err());
        assert!(alpn(&l(&["h3"])).is_err());
        assert!(alpn(&[]).is_err());
    }

    #[test]
    fn missing_files_name_the_key() {
        let cfg = TlsConfig {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
            alpn: vec!["h2".into()],
            sni: vec![crate::config::schema::SniCertConfig {
                names: vec!["a b".into()],
                cert: "/nonexistent/s.pem".into(),
                key: "/nonexistent/s.key".into(),
            }],
        };
        let mut p = Problems::default();
        check(&cfg, "listeners[0]", &mut p);
        let text = p.to_string();
        assert!(
            text.contains("listeners[0].tls.cert: cannot read /nonexistent/c.pem"),
            "{text}"
        );
        assert!(text.contains("listeners[0].tls.sni[0].cert"), "{text}");
    }
}
