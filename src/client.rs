//! A tiny HTTP/1.1 client for the operator's own API (the image has no
//! curl): `swarmlog status`, `swarmlog healthcheck` and the tests use it.
//! Plain `http://host:port/path` only; the body is read to its end (the
//! server closes the connection), bounded, and de-chunked as bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: only http:// URLs are supported")]
    Url { url: String },
    #[error("cannot connect to the operator at {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{url}: {what}: {source}")]
    Io {
        url: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{url}: malformed HTTP answer ({what})")]
    Malformed { url: String, what: &'static str },
    #[error("no answer from {url} within {}", humantime::format_duration(*.timeout))]
    Timeout { url: String, timeout: Duration },
}

/// An answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub body: String,
}

/// `GET url` with an overall deadline.
pub async fn get(url: &str, timeout: Duration) -> Result<Answer, ClientError> {
    request("GET", url, &[], timeout).await
}

/// One request (`headers` as `Name: value` lines) with an overall deadline.
pub async fn request(method: &str, url: &str, headers: &[&str], timeout: Duration) -> Result<Answer, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url { url: url.to_string() })?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let io = |what: &'static str| {
        let url = url.to_string();
        move |source| ClientError::Io { url, what, source }
    };
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        if method != "GET" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(io("sending the request"))?;
        let mut buf = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut buf)
            .await
            .map_err(io("reading the answer"))?;
        parse(url, &buf)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ClientError::Timeout {
            url: url.to_string(),
            timeout,
        })?
}

/// Splits an HTTP/1.1 answer into code and body.
pub fn parse(url: &str, raw: &[u8]) -> Result<Answer, ClientError> {
    let malformed = |what| ClientError::Malformed {
        url: url.to_string(),
        what,
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| malformed("no status code"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body).ok_or_else(|| malformed("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(Answer {
        code,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The bytes of a chunked body; `None` when it is cut or malformed.
pub fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..eol]).ok()?;
        let size = size.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        body = &body[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        if body.len() < n {
            return None;
        }
        out.extend_from_slice(&body[..n]);
        body = body[n..].strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_bytes_across_multibyte_characters() {
        // "é" (2 bytes) split across two chunks.
        let body = b"1\r\n\xc3\r\n2\r\n\xa9!\r\n0\r\n\r\n";
        assert_eq!(dechunk(body).as_deref(), Some("é!".as_bytes()));
        let raw = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(),
            body,
        ]
        .concat();
        let a = parse("http://x/", &raw).expect("parses");
        assert_eq!(
            a,
            Answer {
                code: 200,
                body: "é!".to_string()
            }
        );
    }

    #[test]
    fn refuses_cut_or_bad_chunks() {
        assert_eq!(dechunk(b"5\r\nab"), None);
        assert_eq!(dechunk(b"zz\r\nab\r\n0\r\n\r\n"), None);
        assert!(parse("http://x/", b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse("http://x/", b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn plain_body() {
        let a = parse(
            "http://x/",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno",
        )
        .expect("parses");
        assert_eq!(a.code, 503);
        assert_eq!(a.body, "no");
    }
}
