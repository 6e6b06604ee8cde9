//! What a secured Elasticsearch cluster's certificates cost one reconcile.
//!
//! Every reconcile renders the stack's certificates and, for a cluster,
//! each node's own: it derives the keys from the root key, and reuses the
//! certificates it finds in the swarm after checking each (its key, its
//! chain to the CA, its names, its dates). This measures that work with
//! the operator's own code (`swarmlog::tls`), for clusters of 3 to 200
//! nodes: (a) cold, a first install issuing the CA, the HTTP certificate
//! and every node's; (b) warm, a converged reconcile reusing them all, the
//! median and the worst of ROUNDS (the cost every reconcile pays; the
//! worst is the process's first, which checks every certificate it finds:
//! later ones check only what is new, as passed checks are remembered).
//!
//! `cargo bench --bench certificates` prints the figures. Run by `cargo
//! test --all-targets` (no `--bench` argument), it checks one 3-node round
//! and prints nothing else: a benchmark's figures are never a test's
//! pass or fail.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use swarmlog::security::RootKey;
use swarmlog::tls::{self, Existing, Pem};

const ROUNDS: usize = 9;

fn existing(name: &str, pem: &Pem) -> Existing {
    let labels: HashMap<String, String> = pem.labels.clone();
    Existing::from_config(name, &labels, pem.data.as_bytes()).expect("a certificate's labels are complete")
}

/// One reconcile's certificates: the bundle and each node's; what they
/// would leave in the swarm's configs, and how many were issued now.
fn reconcile(root: &RootKey, nodes: &[String], found: &[Existing], now: SystemTime) -> (Vec<Existing>, usize) {
    let policy = tls::Policy::default();
    let names = tls::http_names("logging", "elasticsearch");
    let b = tls::bundle(root, "logging", &names, found, now, &policy).expect("a bundle");
    let mut out = vec![existing("logging_es_ca", &b.ca), existing("logging_es_http", &b.http)];
    let mut issued = b.issued_now.len();
    for n in nodes {
        let (role, key_role) = tls::node_roles(n);
        let leaf = b
            .issuer
            .leaf(&role, &key_role, &tls::node_names("logging", "elasticsearch", n), n)
            .expect("a node's certificate");
        issued += usize::from(leaf.issued_now);
        out.push(existing(&format!("{n}_cert"), &leaf.cert));
    }
    (out, issued)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let root = RootKey::from_bytes(b"a bench root key, 32 bytes long.").expect("a root key");
    let now = SystemTime::now();
    let sizes: &[usize] = if bench { &[3, 10, 50, 200] } else { &[3] };
    if bench {
        println!("Method: swarmlog::tls as the render and the cluster's expansion call it, release build, one thread; warm: the median and the worst of {ROUNDS} reconciles");
    }
    for &n in sizes {
        let nodes: Vec<String> = (1..=n).map(|i| format!("logging_es_logger-{i}")).collect();
        let t = Instant::now();
        let (found, issued) = reconcile(&root, &nodes, &[], now);
        let cold = t.elapsed();
        assert_eq!(
            issued,
            n + 2,
            "a first install issues the CA, the HTTP and every node's certificate"
        );
        let mut warm = Vec::new();
        for _ in 0..if bench { ROUNDS } else { 1 } {
            let t = Instant::now();
            let (again, issued) = reconcile(&root, &nodes, &found, now + Duration::from_secs(7200));
            warm.push(t.elapsed());
            assert_eq!(issued, 0, "a converged reconcile reuses every certificate");
            assert_eq!(again.len(), found.len());
        }
        warm.sort();
        if bench {
            println!(
                "{n:>4} nodes: (a) cold {:>8.1} ms ({:.2} ms a certificate); (b) warm p50 {:>7.1} ms, max {:>7.1} ms ({:.2} ms a node)",
                ms(cold),
                ms(cold) / (n + 2) as f64,
                ms(warm[warm.len() / 2]),
                ms(warm[warm.len() - 1]),
                ms(warm[warm.len() / 2]) / n as f64,
            );
        }
    }
}
