//! Stand-in for the images of the logging stack (Elasticsearch, Logstash,
//! Kibana, the letsencrypt companion, ...) in the local swarm sandbox
//! (`scripts/sandbox`), where no image can be pulled from a registry.
//!
//! It is its own cargo package (tests/standin/Cargo.toml, not a member of
//! the root package; std and rustls only), built as one static binary with
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
//!     --manifest-path tests/standin/Cargo.toml \
//!     --target x86_64-unknown-linux-gnu --target-dir target/standin
//! ```
//!
//! (the binary: target/standin/x86_64-unknown-linux-gnu/release/standin)
//! and put into a `FROM scratch` image that is tagged with every name in
//! `tests/standin/images.txt`.
//!
//! What it does:
//! - listens on every TCP port in `STANDIN_PORTS` (comma separated, default
//!   `5601,9000,9200,9300,9600,8080`), one thread per listener; a port that
//!   fails to bind is reported on stderr and skipped;
//! - answers any request on any port with `HTTP/1.1 200 OK` and a small JSON
//!   body, then closes the connection;
//! - stays up until it gets SIGTERM or SIGINT, then exits 0 at once. As PID 1
//!   of a container a signal without a handler is ignored, so without the
//!   handlers every `docker stop` / service removal would wait for the whole
//!   grace period (10 s) and then SIGKILL;
//! - accepts and ignores every command-line argument (services may pass
//!   some, e.g. `elasticsearch -E ...`), except as a client:
//!   `standin http [--cacert CA.pem | -k] METHOD URL [BODY]` sends one
//!   request (JSON body; `user:password@` in the URL is sent as Basic
//!   auth), prints the status line and the answer, and exits 0 on a 2xx
//!   answer, 1 on another answer or none, 2 on bad usage. An `https://` URL
//!   needs `--cacert` (trust that PEM bundle; the certificate and the host
//!   name are verified) or `-k` (nothing verified). Tests run it with
//!   `docker run --network <overlay>` to reach services by name where only
//!   the overlay routes (there is no curl in a FROM-scratch image);
//! - as Kibana (port 5601) and Logstash (port 9600), when their images'
//!   files are there (kibana.yml, the pipeline), it asks Elasticsearch who
//!   it is with the credentials they hold and says so (see `clients.rs`);
//! - run as the Elasticsearch image (its environment has `ES_JAVA_OPTS`,
//!   `discovery.*` or `cluster.initial_master_nodes`, or `STANDIN_ROLE=
//!   elasticsearch`), it simulates Elasticsearch on its HTTP and transport
//!   ports (see `es.rs`); the other ports answer as above.

mod clients;
mod es;
mod es_tls;
mod http_client;
mod json;
mod security;
mod tls;
mod x509;

use std::env;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::raw::c_int;
use std::path::Path;
use std::thread;
use std::time::Duration;

/// Ports listened on when `STANDIN_PORTS` is not set: Kibana, the
/// letsencrypt companion / misc, Elasticsearch HTTP and transport, the
/// Logstash API and a generic HTTP port.
const DEFAULT_PORTS: &str = "5601,9000,9200,9300,9600,8080";

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

// The two libc functions needed for signal handling, declared by hand to keep
// this program free of the `libc` crate. The handler is passed as a
// function pointer, which has the same ABI as C's `sighandler_t`; the
// previous handler that `signal` returns is not used, so it is declared as a
// plain pointer-sized integer.
extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn _exit(status: c_int) -> !;
}

/// Signal handler: leave at once with status 0. `_exit` is async-signal-safe
/// (unlike `std::process::exit`, which runs atexit handlers and flushes).
extern "C" fn on_stop_signal(_signum: c_int) {
    // SAFETY: `_exit` takes a plain integer, never returns and may be called
    // from a signal handler.
    unsafe { _exit(0) }
}

fn install_signal_handlers() {
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: `signal` is called with a valid signal number and a handler
        // that only calls the async-signal-safe `_exit`. This runs at start,
        // before any other thread exists.
        unsafe {
            signal(signum, on_stop_signal);
        }
    }
}

/// Parses the comma-separated port list; bad entries are reported and skipped.
fn parse_ports(spec: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.parse::<u16>() {
            Ok(port) if !ports.contains(&port) => ports.push(port),
            Ok(_) => {}
            Err(err) => eprintln!("standin: ignoring bad port {item:?} in STANDIN_PORTS: {err}"),
        }
    }
    ports
}

/// Reads what the client sends (up to the end of the request head, a size cap
/// or a short timeout, whichever comes first), then answers 200 with JSON.
fn answer(mut stream: TcpStream, port: u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let path = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default();
    let (status, headers, body) = match clients::answer(port, &path) {
        Some(a) => a,
        None => (
            200,
            String::new(),
            format!("{{\"standin\":true,\"port\":{port},\"status\":\"green\"}}\n"),
        ),
    };
    let reason = match status {
        200 => "OK",
        302 => "Found",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    // Dropping the stream closes the connection.
}

fn serve(listener: TcpListener, port: u16) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => answer(stream, port),
            Err(err) => {
                eprintln!("standin: accept on port {port} failed: {err}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

const CLIENT_USAGE: &str =
    "usage: standin http [--cacert CA.pem | -k] METHOD http[s]://[USER:PASSWORD@]HOST[:PORT]/PATH [BODY]";

/// `standin http [--cacert PATH | -k] METHOD URL [BODY]`: one request, the
/// answer on stdout (the status line, then the body).
fn client(args: &[String]) -> i32 {
    let mut args = args;
    let mut cacert = None;
    let mut insecure = false;
    loop {
        match args.first().map(String::as_str) {
            Some("--cacert") => {
                let Some(path) = args.get(1) else {
                    eprintln!("standin: --cacert needs a file\n{CLIENT_USAGE}");
                    return 2;
                };
                cacert = Some(path.clone());
                args = &args[2..];
            }
            Some("-k" | "--insecure") => {
                insecure = true;
                args = &args[1..];
            }
            _ => break,
        }
    }
    let (Some(method), Some(url)) = (args.first(), args.get(1)) else {
        eprintln!("{CLIENT_USAGE}");
        return 2;
    };
    let body = args.get(2).cloned().unwrap_or_default();
    let url = match http_client::parse(url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("standin: {e}\n{CLIENT_USAGE}");
            return 2;
        }
    };
    let tls = match (url.https, cacert, insecure) {
        (false, _, _) => None,
        (true, Some(path), _) => {
            match tls::read_certs(Path::new(&path)).and_then(|cas| tls::client_config(&cas, tls::Verify::Full, None)) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("standin: --cacert: {e}");
                    return 2;
                }
            }
        }
        (true, None, true) => match tls::client_config(&[], tls::Verify::None, None) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("standin: {e}");
                return 2;
            }
        },
        (true, None, false) => {
            eprintln!(
                "standin: {} is https: say what to trust with --cacert CA.pem (its certificate is verified, with the host name), or -k to verify nothing\n{CLIENT_USAGE}",
                url.authority()
            );
            return 2;
        }
    };
    match http_client::request(&url, method, &body, None, tls.as_ref(), Duration::from_secs(10)) {
        Ok(answer) => {
            println!("{}", answer.status_line);
            println!("{}", answer.body);
            i32::from(!(200..300).contains(&answer.status))
        }
        Err(e) => {
            eprintln!("standin: {e}");
            1
        }
    }
}

fn main() {
    install_signal_handlers();
    let all: Vec<String> = env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("http") {
        std::process::exit(client(&all[1..]));
    }

    // Arguments are accepted and ignored on purpose.
    let args: Vec<String> = env::args().skip(1).collect();
    if !args.is_empty() {
        eprintln!("standin: ignoring arguments {args:?}");
    }

    let simulated = if es::wanted() {
        match es::start() {
            Ok(ports) => ports,
            Err(e) => {
                // As Elasticsearch refuses to start on a bad setting.
                eprintln!("standin-es: cannot start: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Vec::new()
    };
    let spec = env::var("STANDIN_PORTS").unwrap_or_else(|_| DEFAULT_PORTS.to_string());
    let mut listening = simulated.clone();
    for port in parse_ports(&spec).into_iter().filter(|p| !simulated.contains(p)) {
        match TcpListener::bind(("0.0.0.0", port)) {
            Ok(listener) => {
                listening.push(port);
                thread::spawn(move || serve(listener, port));
            }
            Err(err) => eprintln!("standin: not listening on port {port}: {err}"),
        }
    }
    eprintln!("standin: up, listening on {listening:?}");

    // Stay up until a signal ends the process.
    loop {
        thread::park();
    }
}
