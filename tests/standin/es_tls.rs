//! The Elasticsearch simulator's TLS settings, read once at start as
//! Elasticsearch reads them (I/O: the PEM files), and what
//! `GET /_ssl/certificates` shows of them.
//!
//! Per context (`xpack.security.http.ssl` on the HTTP port,
//! `xpack.security.transport.ssl` on the transport port), on only with
//! `xpack.security.enabled: true` and `<context>.enabled: true`:
//! - `<context>.certificate`: PEM, the node's certificate chain;
//! - `<context>.key`: PEM, its private key (PKCS#8 `PRIVATE KEY`; SEC1 and
//!   PKCS#1 are read too);
//! - `<context>.certificate_authorities`: PEM files (a comma-separated
//!   list), each may hold several CA certificates; not set: the
//!   certificate file's own certificates are trusted (Elasticsearch trusts
//!   the JDK's store and those);
//! - `<context>.verification_mode` (transport: of the peer it connects to;
//!   `full`, the default, also checks the host name named in
//!   `discovery.seed_hosts`; `certificate` only the chain; `none`).
//!
//! Relative paths resolve against the config directory, `ES_PATH_CONF`
//! (default `/usr/share/elasticsearch/config`). A context that is on but
//! lacks its key or certificate, or names a file that cannot be read or
//! holds no PEM certificate or key, stops the node at start with the
//! setting and the path, as Elasticsearch refuses to start. Nothing is
//! read again later (Elasticsearch reloads changed files; on the swarm a
//! new secret means a new task anyway).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};

use crate::json;
use crate::tls::{self, Verify};
use crate::x509;

pub const DEFAULT_CONFIG_DIR: &str = "/usr/share/elasticsearch/config";
pub const HTTP: &str = "xpack.security.http.ssl";
pub const TRANSPORT: &str = "xpack.security.transport.ssl";

/// One line of `GET /_ssl/certificates`.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateInfo {
    /// The path as configured (relative ones stay relative).
    pub path: String,
    pub has_private_key: bool,
    pub summary: x509::Summary,
}

/// The transport's TLS: both ends of node-to-node connections.
pub struct Transport {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub verify: Verify,
}

/// The node's TLS, as its settings ask.
#[derive(Default)]
pub struct EsTls {
    /// HTTPS on the HTTP port.
    pub http: Option<Arc<ServerConfig>>,
    /// Mutual TLS on the transport port and to the peers.
    pub transport: Option<Transport>,
    /// Every certificate configured, sorted as Elasticsearch sorts them
    /// (path, then serial number).
    pub certificates: Vec<CertificateInfo>,
}

/// One context's files, read.
struct Context {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    verify: Verify,
    certificates: Vec<CertificateInfo>,
}

fn list(v: &str) -> Vec<String> {
    v.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn infos(path: &str, certs: &[CertificateDer<'static>], with_key: bool) -> Vec<CertificateInfo> {
    certs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            x509::summary(c).ok().map(|summary| CertificateInfo {
                path: path.to_string(),
                has_private_key: with_key && i == 0,
                summary,
            })
        })
        .collect()
}

/// Reads one context; `None` when it is off.
fn context(prefix: &str, get: &dyn Fn(&str) -> Option<String>, dir: &Path) -> Result<Option<Context>, String> {
    let enabled = get(&format!("{prefix}.enabled"));
    match enabled.as_deref() {
        None | Some("false") => return Ok(None),
        Some("true") => {}
        Some(other) => return Err(format!("[{prefix}.enabled] must be true or false, not [{other}]")),
    }
    let setting = |name: &str| (format!("{prefix}.{name}"), get(&format!("{prefix}.{name}")));
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let (cert_key, cert) = setting("certificate");
    let (key_key, key) = setting("key");
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(format!(
            "invalid SSL configuration for {prefix} - server ssl configuration requires a key and certificate, but these have not been configured; you must set both [{key_key}] and [{cert_key}]"
        ));
    };
    let chain = tls::read_certs(&resolve(&cert)).map_err(|e| format!("[{cert_key}] = [{cert}]: {e}"))?;
    let private = tls::read_key(&resolve(&key)).map_err(|e| format!("[{key_key}] = [{key}]: {e}"))?;
    let mut certificates = infos(&cert, &chain, true);
    let (cas_key, cas_value) = setting("certificate_authorities");
    let cas = match cas_value {
        Some(v) => {
            let mut cas = Vec::new();
            for f in list(&v) {
                let certs = tls::read_certs(&resolve(&f)).map_err(|e| format!("[{cas_key}] = [{f}]: {e}"))?;
                certificates.extend(infos(&f, &certs, false));
                cas.extend(certs);
            }
            cas
        }
        None => chain.clone(),
    };
    let (mode_key, mode) = setting("verification_mode");
    let verify = match mode {
        Some(m) => Verify::parse(&m).map_err(|e| format!("[{mode_key}]: {e}"))?,
        None => Verify::Full,
    };
    Ok(Some(Context {
        chain,
        key: private,
        cas,
        verify,
        certificates,
    }))
}

impl EsTls {
    /// Reads the settings (`get` looks one up, as the image's environment
    /// holds them) and the files they name; an error names the setting.
    pub fn load(get: &dyn Fn(&str) -> Option<String>) -> Result<EsTls, String> {
        if get("xpack.security.enabled").as_deref() != Some("true") {
            for prefix in [HTTP, TRANSPORT] {
                if get(&format!("{prefix}.enabled")).as_deref() == Some("true") {
                    eprintln!(
                        "standin-es: [{prefix}.enabled] is true but xpack.security.enabled is not: TLS is off, as in Elasticsearch with security disabled"
                    );
                }
            }
            return Ok(EsTls::default());
        }
        let dir = PathBuf::from(get("ES_PATH_CONF").unwrap_or_else(|| DEFAULT_CONFIG_DIR.to_string()));
        let fail = |prefix: &str, e: String| format!("failed to load SSL configuration [{prefix}]: {e}");
        let mut out = EsTls::default();
        if let Some(c) = context(HTTP, get, &dir).map_err(|e| fail(HTTP, e))? {
            out.certificates.extend(c.certificates);
            out.http = Some(tls::server_config(c.chain, c.key, None).map_err(|e| fail(HTTP, e))?);
        }
        if let Some(c) = context(TRANSPORT, get, &dir).map_err(|e| fail(TRANSPORT, e))? {
            out.certificates.extend(c.certificates);
            let client = tls::client_config(&c.cas, c.verify, Some((c.chain.clone(), c.key.clone_key())))
                .map_err(|e| fail(TRANSPORT, e))?;
            let server = tls::server_config(c.chain, c.key, Some(&c.cas)).map_err(|e| fail(TRANSPORT, e))?;
            out.transport = Some(Transport {
                server,
                client,
                verify: c.verify,
            });
        }
        out.certificates
            .sort_by(|a, b| (&a.path, &a.summary.serial_number).cmp(&(&b.path, &b.summary.serial_number)));
        out.certificates.dedup();
        Ok(out)
    }
}

/// `GET /_ssl/certificates`: Elasticsearch's answer shape.
pub fn certificates_json(certs: &[CertificateInfo]) -> String {
    let items: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{\"path\":{},\"format\":\"PEM\",\"alias\":null,\"subject_dn\":{},\"serial_number\":{},\"has_private_key\":{},\"expiry\":{},\"issuer\":{}}}",
                json::quote(&c.path),
                json::quote(&c.summary.subject_dn),
                json::quote(&c.summary.serial_number),
                c.has_private_key,
                json::quote(&c.summary.expiry),
                json::quote(&c.summary.issuer_dn)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_on_without_its_files_is_refused_with_the_setting() {
        let settings = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let off = EsTls::load(&settings(&[("xpack.security.http.ssl.enabled", "true")])).expect("loads");
        assert!(off.http.is_none(), "security off: no TLS");
        let e = EsTls::load(&settings(&[
            ("xpack.security.enabled", "true"),
            ("xpack.security.http.ssl.enabled", "true"),
        ]))
        .err()
        .unwrap_or_default();
        assert!(e.contains("[xpack.security.http.ssl.key]"), "{e}");
        let e = EsTls::load(&settings(&[
            ("xpack.security.enabled", "true"),
            ("ES_PATH_CONF", "/nonexistent-config"),
            ("xpack.security.transport.ssl.enabled", "true"),
            ("xpack.security.transport.ssl.certificate", "certs/node.crt"),
            ("xpack.security.transport.ssl.key", "certs/node.key"),
        ]))
        .err()
        .unwrap_or_default();
        assert!(
            e.contains("[xpack.security.transport.ssl.certificate] = [certs/node.crt]")
                && e.contains("/nonexistent-config/certs/node.crt"),
            "{e}"
        );
        assert_eq!(list("[a.crt, \"b.crt\"]"), vec!["a.crt", "b.crt"]);
    }
}
