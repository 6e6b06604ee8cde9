//! One HTTP/1.1 request, over plain TCP or TLS: what `standin http`, the
//! Kibana and Logstash simulators (tests/standin/clients.rs) send to
//! Elasticsearch. URLs are `http[s]://[user:password@]host[:port][/path]`;
//! credentials in the URL become `Authorization: Basic`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::tls;

/// A parsed URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub https: bool,
    /// The host as written (a name, an IPv4 address, `[v6]`).
    pub host: String,
    pub port: u16,
    /// From `/`, with the query.
    pub path: String,
    /// `user:password@`, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl Url {
    /// `host:port` as the `Host` header and the socket address want it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(url: &str) -> Result<Url, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("not an http:// or https:// URL: {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((percent_decode(u), percent_decode(p))), hp)
        }
        None => (None, authority),
    };
    let default_port = if https { 443 } else { 80 };
    let (host, port) = match hostport.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((h, p)) if !p.contains(']') => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| format!("bad port {p:?} in {url}"))?,
        ),
        _ => (hostport.to_string(), default_port),
    };
    if host.is_empty() {
        return Err(format!("no host in {url}"));
    }
    Ok(Url {
        https,
        host,
        port,
        path: path.to_string(),
        credentials,
    })
}

/// Standard base64, as the Basic scheme uses it.
pub fn base64_encode(data: &[u8]) -> String {
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

/// An answer: the status line, its code, the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status_line: String,
    pub status: u16,
    pub body: String,
}

/// Sends `method url` with a JSON `body` and reads the whole answer.
/// `credentials` (else the URL's) go as Basic auth; an `https` URL needs
/// `tls` (what to trust), an `http` one ignores it.
pub fn request(
    url: &Url,
    method: &str,
    body: &str,
    credentials: Option<(&str, &str)>,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Answer, String> {
    let authority = url.authority();
    // Every address the name resolves to, in turn (as TcpStream::connect).
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| format!("resolve {authority}: {e}"))?
        .collect();
    let mut last = format!("resolve {authority}: no address");
    let mut connected = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                connected = Some(tcp);
                break;
            }
            Err(e) => last = format!("connect {authority} ({addr}): {e}"),
        }
    }
    let tcp = connected.ok_or(last)?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|_| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let mut stream = match (url.https, tls) {
        (false, _) => tls::Conn::Plain(tcp),
        (true, Some(config)) => {
            tls::connect(tcp, config, &url.host).map_err(|e| format!("TLS handshake with {authority}: {e}"))?
        }
        (true, None) => return Err(format!("{authority}: an https URL, but nothing to trust is configured")),
    };
    let credentials = credentials.or(url.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())));
    let auth = match credentials {
        Some((u, p)) => format!(
            "Authorization: Basic {}\r\n",
            base64_encode(format!("{u}:{p}").as_bytes())
        ),
        None => String::new(),
    };
    let request = format!(
        "{method} {} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| format!("send to {authority}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read from {authority}: {e}"))?;
    if answer.is_empty() {
        return Err(format!("{authority} closed the connection without an answer"));
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status_line = text.lines().next().unwrap_or_default().to_string();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok(Answer {
        status_line,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_scheme_credentials_and_ports() {
        let u = parse("https://elastic:p%40ss:w@es-1:9200/_cluster/health?x=1").expect("parses");
        assert!(u.https);
        assert_eq!((u.host.as_str(), u.port), ("es-1", 9200));
        assert_eq!(u.path, "/_cluster/health?x=1");
        assert_eq!(u.credentials, Some(("elastic".into(), "p@ss:w".into())));
        let u = parse("http://localhost").expect("parses");
        assert_eq!(
            (u.https, u.port, u.path.as_str(), u.credentials),
            (false, 80, "/", None)
        );
        assert_eq!(parse("https://[::1]").expect("parses").port, 443);
        assert!(parse("ftp://x/").is_err());
        assert!(parse("http://h:99999/").is_err());
        assert_eq!(base64_encode(b"elastic:pw"), "ZWxhc3RpYzpwdw==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(percent_decode("a%2Fb%"), "a/b%");
    }
}
