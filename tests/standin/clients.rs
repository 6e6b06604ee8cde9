//! Kibana and Logstash as Elasticsearch's clients, simulated from the files
//! their images read (the only way they learn where Elasticsearch is and
//! who they are):
//!
//! - Kibana: `/usr/share/kibana/config/kibana.yml` (`elasticsearch.hosts`,
//!   `elasticsearch.username`, `elasticsearch.password`,
//!   `elasticsearch.ssl.certificateAuthorities` (a path, a `[...]` list or a
//!   block list of paths), `elasticsearch.ssl.verificationMode` (`full`,
//!   the default, `certificate` or `none`); the variables
//!   `ELASTICSEARCH_HOSTS`, `ELASTICSEARCH_USERNAME`,
//!   `ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES` and
//!   `ELASTICSEARCH_SSL_VERIFICATIONMODE` override them, as Kibana's image
//!   maps them). On port 5601, `GET /api/status` asks Elasticsearch who it is
//!   (`GET /_security/_authenticate` with those credentials) and answers 200
//!   `available`, or 503 `unavailable` with Elasticsearch's answer, as
//!   Kibana's status API does when it cannot use Elasticsearch. With a
//!   username set (security on), any other page redirects to `/login`
//!   (Kibana's login page), which answers 200.
//! - Logstash: the pipeline `/usr/share/logstash/pipeline/logstash.conf`
//!   (the `hosts`, `user`, `password`, `ssl_enabled`,
//!   `ssl_certificate_authorities` (a path or a list; the older `cacert`
//!   too) and `ssl_verification_mode` (`full`, the default, or `none`) of
//!   its `elasticsearch` output; `ssl_enabled` that contradicts the hosts'
//!   scheme is refused, as Logstash refuses it). On
//!   port 9600, `GET /` (Logstash's node API) asks Elasticsearch the same and
//!   answers `status` `green` or `red`, with the answer in `standin_es`.
//!
//! An `https://` host is reached over TLS, trusting only the CA files
//! configured (none: nothing is trusted, as the operator's own CA is in no
//! system store) and, under `full`, checking the host name of the URL
//! against the certificate. A failed handshake is answered as Elasticsearch
//! out of reach: Kibana 503 `unavailable`, Logstash `red`, the reason in
//! the body.
//!
//! Each status request makes one call: a refused credential shows at once.

use std::path::Path;
use std::time::Duration;

use crate::http_client;
use crate::tls::{self, Verify};

pub const KIBANA_YML: &str = "/usr/share/kibana/config/kibana.yml";
pub const LOGSTASH_PIPELINE: &str = "/usr/share/logstash/pipeline/logstash.conf";

/// Where the simulated clients are, their images' places by default; the
/// plain-process tests (tests/es_simulator.rs) move them with
/// `STANDIN_KIBANA_PORT`, `STANDIN_KIBANA_YML`, `STANDIN_LOGSTASH_PORT` and
/// `STANDIN_LOGSTASH_PIPELINE`.
struct Places {
    kibana_port: u16,
    kibana_yml: String,
    logstash_port: u16,
    logstash_pipeline: String,
}

impl Places {
    fn from_env() -> Places {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let port = |k: &str, default: u16| get(k).and_then(|p| p.parse().ok()).unwrap_or(default);
        Places {
            kibana_port: port("STANDIN_KIBANA_PORT", 5601),
            kibana_yml: get("STANDIN_KIBANA_YML").unwrap_or_else(|| KIBANA_YML.to_string()),
            logstash_port: port("STANDIN_LOGSTASH_PORT", 9600),
            logstash_pipeline: get("STANDIN_LOGSTASH_PIPELINE").unwrap_or_else(|| LOGSTASH_PIPELINE.to_string()),
        }
    }
}

/// Where a client finds Elasticsearch, as whom, and whom it trusts.
#[derive(Clone, Debug)]
pub struct EsClient {
    pub host: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The CA files trusted for an `https://` host (the setting's name
    /// first, for errors).
    pub cas: (&'static str, Vec<String>),
    /// As the setting is written (`full` when not set).
    pub verification: String,
    /// Logstash's `ssl_enabled`, when set.
    pub ssl_enabled: Option<bool>,
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// The items of a `["a", "b"]` list (or of a bare value).
fn items(v: &str) -> Vec<String> {
    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(',').map(unquote).filter(|s| !s.is_empty()).collect()
}

/// The first URL of a `["http://a:9200", ...]` list (or a bare value).
fn first_host(v: &str) -> String {
    items(v).into_iter().next().unwrap_or_default()
}

/// kibana.yml's `key: value` settings; a key with no value followed by
/// `- item` lines (a YAML block list) reads as `[item, ...]`.
fn yaml_settings(yml: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut list: Option<Vec<String>> = None;
    for line in yml.lines() {
        let line = line.split(" #").next().unwrap_or_default().trim_end();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let (Some(items), Some(item)) = (list.as_mut(), trimmed.strip_prefix('-')) {
            items.push(unquote(item));
            continue;
        }
        if let (Some(items), Some(last)) = (list.take(), out.last_mut()) {
            last.1 = format!("[{}]", items.join(","));
        }
        let Some((k, v)) = trimmed.split_once(':') else {
            continue;
        };
        if v.trim().is_empty() {
            list = Some(Vec::new());
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    if let (Some(items), Some(last)) = (list, out.last_mut()) {
        last.1 = format!("[{}]", items.join(","));
    }
    out
}

/// The image's variables that override kibana.yml (Kibana's image maps
/// `ELASTICSEARCH_HOSTS` to `elasticsearch.hosts`, and so on).
#[derive(Debug, Default, Clone)]
pub struct KibanaEnv {
    pub hosts: Option<String>,
    pub username: Option<String>,
    pub certificate_authorities: Option<String>,
    pub verification_mode: Option<String>,
}

impl KibanaEnv {
    pub fn from_env() -> KibanaEnv {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        KibanaEnv {
            hosts: get("ELASTICSEARCH_HOSTS"),
            username: get("ELASTICSEARCH_USERNAME"),
            certificate_authorities: get("ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES"),
            verification_mode: get("ELASTICSEARCH_SSL_VERIFICATIONMODE"),
        }
    }
}

/// Kibana's settings, from kibana.yml; the image's variables override them.
pub fn kibana(yml: &str, env: &KibanaEnv) -> EsClient {
    const CAS: &str = "elasticsearch.ssl.certificateAuthorities";
    let mut c = EsClient {
        host: "http://elasticsearch:9200".to_string(),
        user: None,
        password: None,
        cas: (CAS, Vec::new()),
        verification: "full".to_string(),
        ssl_enabled: None,
    };
    for (k, v) in yaml_settings(yml) {
        match k.as_str() {
            "elasticsearch.hosts" => c.host = first_host(&v),
            "elasticsearch.username" => c.user = Some(unquote(&v)),
            "elasticsearch.password" => c.password = Some(unquote(&v)),
            CAS => c.cas.1 = items(&v),
            "elasticsearch.ssl.verificationMode" => c.verification = unquote(&v),
            _ => {}
        }
    }
    if let Some(h) = &env.hosts {
        c.host = first_host(h);
    }
    if let Some(u) = &env.username {
        c.user = Some(u.clone());
    }
    if let Some(cas) = &env.certificate_authorities {
        c.cas.1 = items(cas);
    }
    if let Some(m) = &env.verification_mode {
        c.verification = unquote(m);
    }
    c
}

/// Logstash's `${VAR}` and `${VAR:default}` in a setting, from `env`.
fn substitute(v: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..j];
        let (name, default) = match inner.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        out.push_str(&env(name).or_else(|| default.map(str::to_string)).unwrap_or_default());
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Logstash's output, from the pipeline's `key => value` lines (with
/// `${VAR}` from the environment, as Logstash substitutes them).
pub fn logstash(conf: &str, env: &dyn Fn(&str) -> Option<String>) -> EsClient {
    let mut c = EsClient {
        host: "http://localhost:9200".to_string(),
        user: None,
        password: None,
        cas: ("ssl_certificate_authorities", Vec::new()),
        verification: "full".to_string(),
        ssl_enabled: None,
    };
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once("=>") else { continue };
        let v = substitute(v, env);
        match k.trim() {
            "hosts" => c.host = first_host(&v),
            "user" => c.user = Some(unquote(&v)),
            "password" => c.password = Some(unquote(&v)),
            "ssl_certificate_authorities" | "cacert" => c.cas.1 = items(&v),
            "ssl_verification_mode" => c.verification = unquote(&v),
            "ssl_enabled" | "ssl" => c.ssl_enabled = Some(unquote(&v) == "true"),
            _ => {}
        }
    }
    c
}

/// What to trust for the client's host: none for `http://`, the CA
/// files as the verification mode says for `https://`.
fn trust(c: &EsClient) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    let https = c.host.starts_with("https://");
    match (c.ssl_enabled, https) {
        (Some(true), false) => return Err(format!("ssl_enabled is true, but the host {} is not https://", c.host)),
        (Some(false), true) => return Err(format!("ssl_enabled is false, but the host {} is https://", c.host)),
        _ => {}
    }
    if !https {
        return Ok(None);
    }
    let verify = Verify::parse(&c.verification)?;
    let (setting, files) = &c.cas;
    if files.is_empty() && verify != Verify::None {
        return Err(format!(
            "{}: TLS to Elasticsearch, but {setting} names no CA: its certificate cannot be trusted",
            c.host
        ));
    }
    let mut cas = Vec::new();
    for f in files {
        cas.extend(tls::read_certs(Path::new(f)).map_err(|e| format!("{setting}: {e}"))?);
    }
    tls::client_config(&cas, verify, None).map(Some)
}

/// `GET /_security/_authenticate` as the client: (HTTP status, body), or
/// why there is no answer (a failed TLS handshake among the reasons).
pub fn authenticate(c: &EsClient) -> Result<(u16, String), String> {
    let url = http_client::parse(&c.host)?;
    let tls = trust(c)?;
    let url = http_client::Url {
        path: "/_security/_authenticate".to_string(),
        ..url
    };
    let credentials = match (&c.user, &c.password) {
        (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
        _ => None,
    };
    let answer = http_client::request(&url, "GET", "", credentials, tls.as_ref(), Duration::from_secs(5))?;
    Ok((answer.status, answer.body.trim().to_string()))
}

/// The answer (status, extra headers, body) a simulated client gives to
/// `method path` on its port, or `None`: not a client port.
pub fn answer(port: u16, path: &str) -> Option<(u16, String, String)> {
    let path = path.split('?').next().unwrap_or("/");
    let places = Places::from_env();
    match port {
        p if p == places.kibana_port => {
            let yml = std::fs::read_to_string(&places.kibana_yml).ok();
            let c = kibana(yml.as_deref().unwrap_or_default(), &KibanaEnv::from_env());
            if path == "/api/status" {
                return Some(match authenticate(&c) {
                    Ok((200, body)) => (
                        200,
                        String::new(),
                        format!("{{\"status\":{{\"overall\":{{\"level\":\"available\"}}}},\"standin_es\":{body}}}"),
                    ),
                    Ok((code, body)) => (
                        503,
                        String::new(),
                        format!(
                            "{{\"status\":{{\"overall\":{{\"level\":\"unavailable\",\"summary\":\"Elasticsearch answered {code}\"}}}},\"standin_es\":{}}}",
                            if body.is_empty() { "null".to_string() } else { body }
                        ),
                    ),
                    Err(e) => (
                        503,
                        String::new(),
                        format!(
                            "{{\"status\":{{\"overall\":{{\"level\":\"unavailable\",\"summary\":{}}}}}}}",
                            crate::json::quote(&e)
                        ),
                    ),
                });
            }
            if c.user.is_some() && !path.starts_with("/login") {
                return Some((
                    302,
                    format!("Location: /login?next={}\r\n", path.replace('/', "%2F")),
                    String::new(),
                ));
            }
            if path.starts_with("/login") {
                return Some((200, String::new(), "{\"page\":\"login\"}".to_string()));
            }
            None
        }
        p if p == places.logstash_port => {
            let conf = std::fs::read_to_string(&places.logstash_pipeline).ok()?;
            let c = logstash(&conf, &|n| std::env::var(n).ok());
            if path != "/" {
                return None;
            }
            let (status, es) = match authenticate(&c) {
                Ok((200, body)) => ("green", body),
                Ok((code, body)) => (
                    "red",
                    format!(
                        "{{\"status\":{code},\"answer\":{}}}",
                        if body.is_empty() { "null".to_string() } else { body }
                    ),
                ),
                Err(e) => ("red", crate::json::quote(&e)),
            };
            Some((
                200,
                String::new(),
                format!("{{\"host\":\"standin\",\"status\":\"{status}\",\"standin_es\":{es}}}"),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kibana_and_logstash_settings_are_read_from_their_files() {
        let k = kibana(
            "# c\nserver.host: \"0.0.0.0\"\nelasticsearch.hosts: [\"http://es:9200\"]\nelasticsearch.username: \"kibana_system\"\nelasticsearch.password: \"p-w_1\"\n",
            &KibanaEnv::default(),
        );
        assert_eq!(k.host, "http://es:9200");
        assert_eq!(k.user.as_deref(), Some("kibana_system"));
        assert_eq!(k.password.as_deref(), Some("p-w_1"));
        assert_eq!(k.verification, "full");
        let l = logstash(
            "output {\n  elasticsearch {\n    hosts => [\"http://elasticsearch:9200\"]\n    user => \"${SWARMLOG_ES_USER}\"\n    password => \"x_y\"\n  }\n}\n",
            &|n| (n == "SWARMLOG_ES_USER").then(|| "swarmlog_logstash_2".to_string()),
        );
        assert_eq!(l.host, "http://elasticsearch:9200");
        assert_eq!(l.user.as_deref(), Some("swarmlog_logstash_2"));
        let k = kibana(
            "elasticsearch.username: \"a\"\n",
            &KibanaEnv {
                username: Some("swarmlog_kibana_3".into()),
                ..KibanaEnv::default()
            },
        );
        assert_eq!(k.user.as_deref(), Some("swarmlog_kibana_3"));
        assert_eq!(
            substitute("${A:5044}-${B}", &|n| (n == "B").then(|| "b".into())),
            "5044-b"
        );
        assert_eq!(l.password.as_deref(), Some("x_y"));
    }

    #[test]
    fn tls_settings_of_kibana_and_logstash() {
        // A block list, a flow list, a single string; the variables win.
        let k = kibana(
            "elasticsearch.hosts: [\"https://es:9200\"]\nelasticsearch.ssl.certificateAuthorities:\n  - /a/ca.crt\n  - \"/b/ca.crt\"\nelasticsearch.ssl.verificationMode: certificate\n",
            &KibanaEnv::default(),
        );
        assert_eq!(k.cas.1, vec!["/a/ca.crt", "/b/ca.crt"]);
        assert_eq!(k.verification, "certificate");
        let k = kibana(
            "elasticsearch.ssl.certificateAuthorities: [ \"/a/ca.crt\" ]\n",
            &KibanaEnv::default(),
        );
        assert_eq!(k.cas.1, vec!["/a/ca.crt"]);
        let k = kibana(
            "elasticsearch.ssl.certificateAuthorities: /a/ca.crt\n",
            &KibanaEnv {
                certificate_authorities: Some("/env/ca.crt".into()),
                hosts: Some("https://es-2:9200".into()),
                ..KibanaEnv::default()
            },
        );
        assert_eq!(
            (k.cas.1, k.host.as_str()),
            (vec!["/env/ca.crt".to_string()], "https://es-2:9200")
        );

        let l = logstash(
            "hosts => [\"https://es:9200\"]\nssl_enabled => true\nssl_certificate_authorities => [\"/ca.crt\"]\n",
            &|_| None,
        );
        assert_eq!(
            (l.ssl_enabled, l.cas.1.clone()),
            (Some(true), vec!["/ca.crt".to_string()])
        );
        let l = logstash(
            "hosts => \"https://es:9200\"\nssl_certificate_authorities => \"/ca.crt\"\n",
            &|_| None,
        );
        assert_eq!(l.cas.1, vec!["/ca.crt"]);

        // What cannot work is refused before any connection.
        let refused = |c: &EsClient| trust(c).err().unwrap_or_default();
        let mut l = logstash("hosts => [\"http://es:9200\"]\nssl_enabled => true\n", &|_| None);
        assert!(refused(&l).contains("not https://"), "{}", refused(&l));
        l.ssl_enabled = None;
        assert!(trust(&l).is_ok_and(|t| t.is_none()), "plain http needs no TLS");
        let k = kibana("elasticsearch.hosts: https://es:9200\n", &KibanaEnv::default());
        assert!(refused(&k).contains("elasticsearch.ssl.certificateAuthorities names no CA"));
        let k = kibana(
            "elasticsearch.hosts: https://es:9200\nelasticsearch.ssl.certificateAuthorities: /nowhere/ca.crt\n",
            &KibanaEnv::default(),
        );
        assert!(refused(&k).contains("/nowhere/ca.crt"), "{}", refused(&k));
    }
}
