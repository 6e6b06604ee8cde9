//! Kibana and Logstash as Elasticsearch's clients, simulated from the files
//! their images read (the only way they learn where Elasticsearch is and
//! who they are):
//!
//! - Kibana: `/usr/share/kibana/config/kibana.yml` (`elasticsearch.hosts`,
//!   `elasticsearch.username`, `elasticsearch.password`; the
//!   `ELASTICSEARCH_HOSTS` variable overrides the hosts, as in Kibana's
//!   image). On port 5601, `GET /api/status` asks Elasticsearch who it is
//!   (`GET /_security/_authenticate` with those credentials) and answers 200
//!   `available`, or 503 `unavailable` with Elasticsearch's answer, as
//!   Kibana's status API does when it cannot use Elasticsearch. With a
//!   username set (security on), any other page redirects to `/login`
//!   (Kibana's login page), which answers 200.
//! - Logstash: the pipeline `/usr/share/logstash/pipeline/logstash.conf`
//!   (the `hosts`, `user` and `password` of its `elasticsearch` output). On
//!   port 9600, `GET /` (Logstash's node API) asks Elasticsearch the same and
//!   answers `status` `green` or `red`, with the answer in `standin_es`.
//!
//! Each status request makes one call: a refused credential shows at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const KIBANA_YML: &str = "/usr/share/kibana/config/kibana.yml";
pub const LOGSTASH_PIPELINE: &str = "/usr/share/logstash/pipeline/logstash.conf";

/// Where a client finds Elasticsearch, and as whom.
#[derive(Clone, Debug)]
pub struct EsClient {
    pub host: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// The first URL of a `["http://a:9200", ...]` list (or a bare value).
fn first_host(v: &str) -> String {
    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
    unquote(inner.split(',').next().unwrap_or_default())
}

/// Kibana's settings, from kibana.yml's `key: value` lines; the image's
/// variables `ELASTICSEARCH_HOSTS` and `ELASTICSEARCH_USERNAME` override them.
pub fn kibana(yml: &str, env_hosts: Option<String>, env_user: Option<String>) -> EsClient {
    let mut c = EsClient {
        host: "http://elasticsearch:9200".to_string(),
        user: None,
        password: None,
    };
    for line in yml.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "elasticsearch.hosts" => c.host = first_host(v),
            "elasticsearch.username" => c.user = Some(unquote(v)),
            "elasticsearch.password" => c.password = Some(unquote(v)),
            _ => {}
        }
    }
    if let Some(h) = env_hosts {
        c.host = first_host(&h);
    }
    if let Some(u) = env_user {
        c.user = Some(u);
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
            _ => {}
        }
    }
    c
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /_security/_authenticate` as the client: (HTTP status, body), or
/// why there is no answer.
pub fn authenticate(c: &EsClient) -> Result<(u16, String), String> {
    let rest = c
        .host
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// hosts: {}", c.host))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let mut stream = TcpStream::connect(authority).map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let auth = match (&c.user, &c.password) {
        (Some(u), Some(p)) => format!(
            "Authorization: Basic {}\r\n",
            base64_encode(format!("{u}:{p}").as_bytes())
        ),
        _ => String::new(),
    };
    let request =
        format!("GET /_security/_authenticate HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {authority}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read from {authority}: {e}"))?;
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim().to_string();
    Ok((code, body))
}

/// The answer (status, extra headers, body) a simulated client gives to
/// `method path` on its port, or `None`: not a client port.
pub fn answer(port: u16, path: &str) -> Option<(u16, String, String)> {
    let path = path.split('?').next().unwrap_or("/");
    match port {
        5601 => {
            let yml = std::fs::read_to_string(KIBANA_YML).ok();
            let env_hosts = std::env::var("ELASTICSEARCH_HOSTS").ok();
            let env_user = std::env::var("ELASTICSEARCH_USERNAME").ok();
            let c = kibana(yml.as_deref().unwrap_or_default(), env_hosts, env_user);
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
        9600 => {
            let conf = std::fs::read_to_string(LOGSTASH_PIPELINE).ok()?;
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
            None,
            None,
        );
        assert_eq!(k.host, "http://es:9200");
        assert_eq!(k.user.as_deref(), Some("kibana_system"));
        assert_eq!(k.password.as_deref(), Some("p-w_1"));
        let l = logstash(
            "output {\n  elasticsearch {\n    hosts => [\"http://elasticsearch:9200\"]\n    user => \"${SWARMLOG_ES_USER}\"\n    password => \"x_y\"\n  }\n}\n",
            &|n| (n == "SWARMLOG_ES_USER").then(|| "swarmlog_logstash_2".to_string()),
        );
        assert_eq!(l.host, "http://elasticsearch:9200");
        assert_eq!(l.user.as_deref(), Some("swarmlog_logstash_2"));
        let k = kibana(
            "elasticsearch.username: \"a\"\n",
            None,
            Some("swarmlog_kibana_3".into()),
        );
        assert_eq!(k.user.as_deref(), Some("swarmlog_kibana_3"));
        assert_eq!(
            substitute("${A:5044}-${B}", &|n| (n == "B").then(|| "b".into())),
            "5044-b"
        );
        assert_eq!(l.password.as_deref(), Some("x_y"));
        assert_eq!(base64_encode(b"elastic:pw"), "ZWxhc3RpYzpwdw==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }
}
