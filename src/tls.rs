//! Elasticsearch's certificates: swarmlog is the stack's own small CA.
//!
//! Every private key is derived from the root key (HMAC-SHA256 over
//! `swarmlog/v1/<stack>/tls/<role>/<issued>`, a P-256 scalar), so a
//! restarted operator or a new leader holds the CA's key without it being
//! stored anywhere, and a key's secret has the same content (the same
//! content-hashed name) on every render. A certificate is public: it lives in
//! a config, whose data and labels the operator reads back, and is reused
//! while it is valid, signed by the current CA, for the same names, and not
//! yet due for renewal. A certificate's labels say when it was issued (the
//! key's derivation input), when it expires, and which keys it binds.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};

use crate::security::RootKey;

/// On a config or secret: the certificate's role (`ca`, `http`), or on a
/// secret its key's (`http-key`).
pub const LABEL_TLS: &str = "io.swarmlog.tls";
/// Unix seconds when the certificate was issued: its key is derived from it.
pub const LABEL_ISSUED: &str = "io.swarmlog.tls.issued";
/// RFC 3339: the end of the certificate's validity.
pub const LABEL_NOT_AFTER: &str = "io.swarmlog.tls.not-after";
/// The first 16 hex digits of SHA-256 over the certificate's public key.
pub const LABEL_KEY_ID: &str = "io.swarmlog.tls.key-id";
/// The key id of the CA that signed it.
pub const LABEL_ISSUER: &str = "io.swarmlog.tls.issuer";
/// The first 16 hex digits of SHA-256 over its subject alternative names.
pub const LABEL_NAMES: &str = "io.swarmlog.tls.names";
/// On the CA's config: the CA it took over from (`<issued>:<not-after>`,
/// Unix seconds), still trusted beside it until that one ends.
pub const LABEL_PREVIOUS: &str = "io.swarmlog.tls.previous";
/// Prefix of the path the render asks its reader for a certificate or a key
/// (`swarmlog-tls:<role>`): never a file name a chart uses.
pub const TLS_PATH: &str = "swarmlog-tls:";

/// The roles a chart may give a config (certificates) or a secret (keys).
pub const CA: &str = "ca";
pub const HTTP: &str = "http";
pub const HTTP_KEY: &str = "http-key";
/// A cluster node's own certificate (it serves HTTPS with it and presents
/// it to its peers over transport TLS) and its key: in a chart,
/// placeholders the plan replaces with each node's own (role `node:<name>`,
/// see [`node_roles`]).
pub const NODE: &str = "node";
pub const NODE_KEY: &str = "node-key";

/// The roles of the certificate of the cluster node `node` (its service
/// name) and of its key.
pub fn node_roles(node: &str) -> (String, String) {
    (format!("{NODE}:{node}"), format!("{NODE_KEY}:{node}"))
}

/// The names a cluster node's certificate is for: its service name (also
/// its `node.name` and publish host, what the operator asks) and its tasks'
/// name, then the names the whole cluster answers to over HTTPS (Kibana and
/// Logstash ask `elasticsearch`; see [`http_names`]).
pub fn node_names(stack: &str, service_key: &str, node: &str) -> Vec<String> {
    let mut names = vec![node.to_string(), format!("tasks.{node}")];
    names.extend(http_names(stack, service_key));
    names
}

/// Certificates are dated this much before their issue, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// How long certificates live and when they are renewed (the values'
/// `elasticsearch.tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub cert_validity: Duration,
    pub cert_rotate_before: Duration,
    pub ca_validity: Duration,
    pub ca_rotate_before: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        const DAY: u64 = 24 * 3600;
        Policy {
            cert_validity: Duration::from_secs(365 * DAY),
            cert_rotate_before: Duration::from_secs(30 * DAY),
            ca_validity: Duration::from_secs(5 * 365 * DAY),
            ca_rotate_before: Duration::from_secs(30 * DAY),
        }
    }
}

impl Policy {
    /// A policy whose renewal comes before the end of validity, or why not.
    pub fn checked(self) -> Result<Policy, String> {
        if self.cert_rotate_before >= self.cert_validity {
            return Err(format!(
                "certRotateBefore ({}) must be shorter than certValidity ({})",
                humantime::format_duration(self.cert_rotate_before),
                humantime::format_duration(self.cert_validity)
            ));
        }
        if self.ca_renewal_lead().saturating_mul(3) >= self.ca_validity {
            return Err(format!(
                "caRotateBefore and certRotateBefore ({} and {}) must both be shorter than a third of caValidity ({}): a certificate never outlives its CA, so the CA is renewed once it has less than either left, its successor is trusted twice that long before, and the successor must not be due itself before the old CA ends",
                humantime::format_duration(self.ca_rotate_before),
                humantime::format_duration(self.cert_rotate_before),
                humantime::format_duration(self.ca_validity)
            ));
        }
        Ok(self)
    }

    /// How long before its end the CA is renewed: a certificate it signs
    /// ends with it at the latest, so a CA with less than a certificate's
    /// `cert_rotate_before` left would sign certificates due at once.
    pub fn ca_renewal_lead(&self) -> Duration {
        self.ca_rotate_before.max(self.cert_rotate_before)
    }

    /// How long before its end a CA's successor is issued and trusted beside
    /// it (it signs from [`Policy::ca_renewal_lead`] before the end on):
    /// every client trusts the next CA before any certificate it signed is
    /// in use.
    pub fn ca_publish_lead(&self) -> Duration {
        self.ca_renewal_lead().saturating_mul(2)
    }

    /// How long before its end the certificate of `role` is renewed.
    pub fn lead(&self, role: &str) -> Duration {
        if role == CA {
            self.ca_renewal_lead()
        } else {
            self.cert_rotate_before
        }
    }
}

/// A certificate swarmlog issued earlier, as its config holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// The config's name.
    pub name: String,
    pub role: String,
    pub issued: u64,
    pub not_after: SystemTime,
    pub key_id: String,
    pub issuer: String,
    pub names: String,
    pub pem: String,
    /// The CA's predecessor (issued, not after), from [`LABEL_PREVIOUS`].
    pub previous: Option<(u64, u64)>,
}

impl Existing {
    /// A certificate from a config's labels and data; `None` for a config
    /// that is not one (or whose labels are not all there: never reused).
    pub fn from_config(name: &str, labels: &HashMap<String, String>, data: &[u8]) -> Option<Existing> {
        let get = |k: &str| labels.get(k).cloned();
        Some(Existing {
            name: name.to_string(),
            role: get(LABEL_TLS)?,
            issued: get(LABEL_ISSUED)?.parse().ok()?,
            not_after: humantime::parse_rfc3339(&get(LABEL_NOT_AFTER)?).ok()?,
            key_id: get(LABEL_KEY_ID)?,
            issuer: get(LABEL_ISSUER)?,
            names: get(LABEL_NAMES)?,
            pem: String::from_utf8(data.to_vec()).ok()?,
            previous: get(LABEL_PREVIOUS).and_then(|p| {
                let (a, b) = p.split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            }),
        })
    }

    /// Every certificate among the engine's configs.
    pub fn from_configs(configs: &[bollard::models::Config]) -> Vec<Existing> {
        use base64::Engine as _;
        configs
            .iter()
            .filter_map(|c| {
                let spec = c.spec.as_ref()?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(spec.data.as_deref()?)
                    .ok()?;
                Existing::from_config(spec.name.as_deref()?, spec.labels.as_ref()?, &data)
            })
            .collect()
    }
}

/// A certificate (or key) to mount: its PEM and the labels of its object.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub data: String,
    pub labels: HashMap<String, String>,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key's PEM is never printed.
        f.debug_struct("Pem")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// What Elasticsearch mounts: the CA's certificate (the trust of every
/// client), its HTTP certificate and that certificate's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca: Pem,
    pub http: Pem,
    pub http_key: Pem,
    /// Whether each was issued now (`false`: reused from the swarm).
    pub issued_now: Vec<&'static str>,
    /// Issues the transport certificates of a cluster's nodes.
    pub issuer: Issuer,
}

impl Bundle {
    /// The object a chart's role names.
    pub fn get(&self, role: &str) -> Option<&Pem> {
        match role {
            CA => Some(&self.ca),
            HTTP => Some(&self.http),
            HTTP_KEY => Some(&self.http_key),
            _ => None,
        }
    }
}

/// The names Elasticsearch's HTTP certificate is valid for: the service's
/// key on the stack's network and its full name (with `tasks.` for each),
/// and loopback.
pub fn http_names(stack: &str, service_key: &str) -> Vec<String> {
    let full = format!("{stack}_{service_key}");
    vec![
        service_key.to_string(),
        full.clone(),
        format!("tasks.{service_key}"),
        format!("tasks.{full}"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
}

/// The CA and the HTTP certificate for `names`: those in `existing` while
/// they are good, new ones otherwise.
pub fn bundle(
    root: &RootKey,
    stack: &str,
    names: &[String],
    existing: &[Existing],
    now: SystemTime,
    policy: &Policy,
) -> Result<Bundle, String> {
    let now_s = issue_time(now, policy);
    let mut issued_now = Vec::new();
    // The signing CA: the newest good one; when it is due, the successor
    // published ahead of time; without any (a first install, another root
    // key, a CA already ended), a new one.
    let known = |e: &Existing| {
        e.names == names_id(&[])
            && e.issuer == e.key_id
            && remembered(
                root,
                &[
                    stack.as_bytes(),
                    CA.as_bytes(),
                    &e.issued.to_le_bytes(),
                    e.key_id.as_bytes(),
                    e.pem.as_bytes(),
                ],
                || {
                    derived_key_id(root, stack, CA, e.issued).as_deref() == Ok(e.key_id.as_str())
                        && holds_key(&e.pem, root, stack, CA, e.issued)
                },
            )
    };
    let good_ca = newest(existing, CA, |e| known(e) && !due(e, now, policy.lead(CA)));
    let (signing, previous) = match good_ca {
        Some(e) => {
            let first = first_cert_pem(&e.pem).ok_or("the CA's config holds no certificate")?;
            (
                Ca {
                    issued: e.issued,
                    not_after: e.not_after,
                    pem: first,
                },
                e.previous,
            )
        }
        None => match newest(existing, CA, known).filter(|old| now < old.not_after) {
            Some(old) => {
                let next = successor_of(root, stack, old.not_after, policy)?;
                // Trusted everywhere: every CA config in the swarm holds it.
                // A config is removed once no service mounts it, so an older
                // one left means a service (a cluster node the roll has not
                // reached) does not trust the successor yet.
                let holds = |e: &Existing| e.pem.contains(next.pem.trim());
                let cas: Vec<&Existing> = existing.iter().filter(|e| e.role == CA && known(e)).collect();
                let published = cas.iter().any(|e| holds(e)) && cas.iter().all(|e| holds(e));
                let first = first_cert_pem(&old.pem).ok_or("the CA's config holds no certificate")?;
                let old_ca = Ca {
                    issued: old.issued,
                    not_after: old.not_after,
                    pem: first,
                };
                if !published {
                    // Not trusted everywhere yet (its publish time passed
                    // unseen, the operator down or the policy changed, or
                    // its roll-out is under way): the old CA signs on.
                    (old_ca, old.previous)
                } else if now < renew_at(next.not_after, policy.lead(CA)) {
                    issued_now.push(CA);
                    (next, Some((old.issued, unix(old.not_after))))
                } else {
                    issued_now.push(CA);
                    (
                        ca_cert(root, stack, now_s, later(at(now_s), policy.ca_validity)?)?,
                        None,
                    )
                }
            }
            None => {
                issued_now.push(CA);
                (
                    ca_cert(root, stack, now_s, later(at(now_s), policy.ca_validity)?)?,
                    None,
                )
            }
        },
    };
    let (ca_issued, ca_not_after) = (signing.issued, signing.not_after);
    // What clients trust: the signing CA, its successor from its publish
    // time on, and its predecessor until that one ends.
    let mut trust = signing.pem.clone();
    if now >= renew_at(ca_not_after, policy.ca_publish_lead()) {
        trust.push_str(&successor_of(root, stack, ca_not_after, policy)?.pem);
    }
    let previous = previous.filter(|(_, end)| unix(now) < *end);
    if let Some((issued, end)) = previous {
        trust.push_str(&ca_cert(root, stack, issued, at(end))?.pem);
    }
    let ca_id = derived_key_id(root, stack, CA, ca_issued)?;
    let mut ca_labels = labels(CA, ca_issued, ca_not_after, &ca_id, &ca_id, &names_id(&[]));
    if let Some((issued, end)) = previous {
        ca_labels.insert(LABEL_PREVIOUS.to_string(), format!("{issued}:{end}"));
    }
    let ca = Pem {
        data: trust,
        labels: ca_labels,
    };
    let issuer = Issuer {
        root: root.clone(),
        stack: stack.to_string(),
        ca_pem: signing.pem,
        ca_id: ca_id.clone(),
        ca_issued,
        ca_not_after,
        existing: existing.to_vec(),
        now,
        policy: policy.clone(),
    };
    let http = issuer.leaf(HTTP, HTTP_KEY, names, &format!("{stack} elasticsearch"))?;
    if http.issued_now {
        issued_now.push(HTTP);
    }
    Ok(Bundle {
        ca,
        http: http.cert,
        http_key: http.key,
        issued_now,
        issuer,
    })
}

/// A leaf certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub cert: Pem,
    pub key: Pem,
    /// Issued by this render (`false`: reused from the swarm).
    pub issued_now: bool,
}

/// Issues leaf certificates under a bundle's CA: the HTTP certificate, and
/// the transport certificate of each node of a cluster (whose names only
/// the plan knows). Holds the root key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Issuer {
    root: RootKey,
    stack: String,
    /// The signing CA's certificate (alone).
    ca_pem: String,
    ca_issued: u64,
    /// The signing CA's key id.
    ca_id: String,
    ca_not_after: SystemTime,
    existing: Vec<Existing>,
    now: SystemTime,
    policy: Policy,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("stack", &self.stack)
            .field("ca_issued", &self.ca_issued)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The certificate of `role` (its key's secret labelled `key_role`) for
    /// `names`, with `common_name`: the newest good one in the swarm, or a
    /// new one signed by the CA. Good: signed by this CA for these names,
    /// holding the key derived for it, valid now, not due, and not valid
    /// beyond the CA.
    pub fn leaf(&self, role: &str, key_role: &str, names: &[String], common_name: &str) -> Result<Leaf, String> {
        let (root, stack, now, policy) = (&self.root, self.stack.as_str(), self.now, &self.policy);
        let ca_id = &self.ca_id;
        let wanted_names = names_id(names);
        let good = newest(&self.existing, role, |e| {
            e.issuer == *ca_id
                && e.names == wanted_names
                // Due; but one that ends with its CA is renewed by the CA's
                // switch (issued again under the same CA, it would end at
                // the same time: only a restart for nothing).
                && (!due(e, now, policy.lead(role)) || (e.not_after == self.ca_not_after && now < e.not_after))
                && e.not_after <= self.ca_not_after
                && remembered(
                    root,
                    &[
                        stack.as_bytes(),
                        role.as_bytes(),
                        &e.issued.to_le_bytes(),
                        &unix(e.not_after).to_le_bytes(),
                        e.key_id.as_bytes(),
                        e.pem.as_bytes(),
                        self.ca_pem.as_bytes(),
                        names.join("\n").as_bytes(),
                    ],
                    || {
                        // Valid now and still a second before the end its label
                        // says: so at every time between (validity is one
                        // interval), and the answer holds for later renders.
                        let last = e.not_after.checked_sub(Duration::from_secs(1)).unwrap_or(UNIX_EPOCH);
                        derived_key_id(root, stack, role, e.issued).as_deref() == Ok(e.key_id.as_str())
                            && holds_key(&e.pem, root, stack, role, e.issued)
                            && verifies(&e.pem, &self.ca_pem, names, now)
                            && verifies(&e.pem, &self.ca_pem, names, last)
                    },
                )
        });
        let (issued, pem, not_after, issued_now) = match good {
            Some(e) => (e.issued, e.pem.clone(), e.not_after, false),
            None => {
                let ca_key = key_pair(root, stack, CA, self.ca_issued)?;
                let now_s = issue_time(now, policy);
                let issuer = ca_params(stack, self.ca_issued, policy.ca_validity)?
                    .self_signed(&ca_key)
                    .map_err(|e| format!("the CA certificate: {e}"))?;
                let key = key_pair(root, stack, role, now_s)?;
                let not_after = later(at(now_s), policy.cert_validity)?.min(self.ca_not_after);
                let cert = leaf_params(stack, role, common_name, names, now_s, not_after)?
                    .signed_by(&key, &issuer, &ca_key)
                    .map_err(|e| format!("issuing the {role} certificate: {e}"))?;
                (now_s, cert.pem(), not_after, true)
            }
        };
        let id = match good {
            // Checked: the derived key's.
            Some(e) => e.key_id.clone(),
            None => derived_key_id(root, stack, role, issued)?,
        };
        Ok(Leaf {
            cert: Pem {
                data: pem,
                labels: labels(role, issued, not_after, &id, ca_id, &wanted_names),
            },
            key: Pem {
                data: key_pem(root, stack, role, issued)?,
                labels: labels(key_role, issued, not_after, &id, ca_id, &wanted_names),
            },
            issued_now,
        })
    }
}

/// Checks passed before, by a digest of everything they read (a value
/// derived from the root key, and the parts): a certificate's content never
/// changes, so each reconcile checks only what is new to it. Bounded: the
/// set is emptied past 10,000 entries.
static CHECKED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> = std::sync::OnceLock::new();

/// `check()`, or `true` at once when it passed before for the same parts.
fn remembered(root: &RootKey, parts: &[&[u8]], check: impl FnOnce() -> bool) -> bool {
    let mut h = Sha256::new();
    h.update(root.derive("swarmlog/v1/tls/checked"));
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest: [u8; 32] = h.finalize().into();
    let set = CHECKED.get_or_init(Default::default);
    // A poisoned lock only costs the check.
    if set.lock().is_ok_and(|s| s.contains(&digest)) {
        return true;
    }
    let ok = check();
    if ok {
        if let Ok(mut s) = set.lock() {
            if s.len() >= 10_000 {
                s.clear();
            }
            s.insert(digest);
        }
    }
    ok
}

/// One CA certificate: when it was issued (its key's derivation input),
/// when it ends, and its PEM.
struct Ca {
    issued: u64,
    not_after: SystemTime,
    pem: String,
}

/// The CA certificate issued at `issued`, ending at `not_after`: the same
/// bytes whenever it is made again (derived key, deterministic signature).
fn ca_cert(root: &RootKey, stack: &str, issued: u64, not_after: SystemTime) -> Result<Ca, String> {
    let validity = not_after
        .duration_since(at(issued))
        .map_err(|_| "a CA that ends before it is issued".to_string())?;
    let key = key_pair(root, stack, CA, issued)?;
    let cert = ca_params(stack, issued, validity)?
        .self_signed(&key)
        .map_err(|e| format!("issuing the CA certificate: {e}"))?;
    Ok(Ca {
        issued,
        not_after,
        pem: cert.pem(),
    })
}

/// The successor of the CA that ends at `not_after`: issued at the start of
/// the issue period of its publish time, so every render, before or after
/// it takes over, makes the same one.
fn successor_of(root: &RootKey, stack: &str, not_after: SystemTime, policy: &Policy) -> Result<Ca, String> {
    let issued = issue_time(renew_at(not_after, policy.ca_publish_lead()), policy);
    ca_cert(root, stack, issued, later(at(issued), policy.ca_validity)?)
}

/// The first certificate in `pem`, as PEM (a CA's config holds the CAs
/// trusted beside it after it).
fn first_cert_pem(pem: &str) -> Option<String> {
    let end = "-----END CERTIFICATE-----";
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let stop = pem[start..].find(end)? + start + end.len();
    Some(format!("{}\n", &pem[start..stop]))
}

/// `t + d`, or why not (a validity beyond what a date holds).
fn later(t: SystemTime, d: Duration) -> Result<SystemTime, String> {
    t.checked_add(d)
        .ok_or_else(|| format!("a validity of {} ends beyond any date", humantime::format_duration(d)))
}

/// The single certificate in `pem`, as DER.
fn cert_der(pem: &str) -> Option<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut all = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes());
    match (all.next(), all.next()) {
        (Some(Ok(der)), None) => Some(der),
        _ => None,
    }
}

/// Whether the certificate in `pem` holds the public key derived for
/// `role` at `issued` (its SubjectPublicKeyInfo is in the certificate as is).
fn holds_key(pem: &str, root: &RootKey, stack: &str, role: &str, issued: u64) -> bool {
    let first = first_cert_pem(pem).unwrap_or_default();
    let (Some(der), Ok(key)) = (cert_der(&first), key_pair(root, stack, role, issued)) else {
        return false;
    };
    let spki = key.public_key_der();
    !spki.is_empty() && der.windows(spki.len()).any(|w| w == spki.as_slice())
}

/// Whether the certificate in `pem` chains to the CA in `ca_pem` and is
/// valid for each of `names` at `now`.
pub(crate) fn verifies(pem: &str, ca_pem: &str, names: &[String], now: SystemTime) -> bool {
    use rustls::client::danger::ServerCertVerifier;
    let (Some(leaf), Some(ca)) = (cert_der(pem), cert_der(ca_pem)) else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca).is_err() {
        return false;
    }
    let Ok(verifier) =
        rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider()).build()
    else {
        return false;
    };
    let when = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(unix(now)));
    names.iter().all(|n| {
        rustls::pki_types::ServerName::try_from(n.clone())
            .is_ok_and(|server| verifier.verify_server_cert(&leaf, &[], &server, &[], when).is_ok())
    })
}

/// When a certificate is renewed: `rotate_before` ahead of its end.
pub fn renew_at(not_after: SystemTime, rotate_before: Duration) -> SystemTime {
    not_after.checked_sub(rotate_before).unwrap_or(UNIX_EPOCH)
}

fn due(e: &Existing, now: SystemTime, rotate_before: Duration) -> bool {
    now >= renew_at(e.not_after, rotate_before)
}

fn newest<'a>(existing: &'a [Existing], role: &str, good: impl Fn(&Existing) -> bool) -> Option<&'a Existing> {
    existing
        .iter()
        .filter(|e| e.role == role && good(e))
        .max_by(|a, b| a.issued.cmp(&b.issued).then_with(|| a.name.cmp(&b.name)))
}

fn labels(
    role: &str,
    issued: u64,
    not_after: SystemTime,
    key_id: &str,
    issuer: &str,
    names: &str,
) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_TLS.to_string(), role.to_string()),
        (LABEL_ISSUED.to_string(), issued.to_string()),
        (
            LABEL_NOT_AFTER.to_string(),
            humantime::format_rfc3339_seconds(not_after).to_string(),
        ),
        (LABEL_KEY_ID.to_string(), key_id.to_string()),
        (LABEL_ISSUER.to_string(), issuer.to_string()),
        (LABEL_NAMES.to_string(), names.to_string()),
    ])
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn at(unix_s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_s)
}

fn offset(t: SystemTime) -> Result<time::OffsetDateTime, String> {
    let s = i64::try_from(unix(t)).map_err(|_| "a date beyond the year 292 billion".to_string())?;
    time::OffsetDateTime::from_unix_timestamp(s).map_err(|e| format!("a certificate date: {e}"))
}

/// The first 16 hex digits of SHA-256 over `data`.
fn short_hash(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn names_id(names: &[String]) -> String {
    short_hash(names.join("\n").as_bytes())
}

fn key_id(key: &KeyPair) -> String {
    short_hash(&key.public_key_der())
}

fn derived_key_id(root: &RootKey, stack: &str, role: &str, issued: u64) -> Result<String, String> {
    key_pair(root, stack, role, issued).map(|k| key_id(&k))
}

/// The P-256 key of `role` issued at `issued`: HMAC output taken as the
/// scalar (out of range, about once in 2^32: the next counter).
fn secret_key(root: &RootKey, stack: &str, role: &str, issued: u64) -> Result<p256::SecretKey, String> {
    for counter in 0..16u32 {
        let bytes = root.derive(&format!("swarmlog/v1/{stack}/tls/{role}/{issued}/{counter}"));
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return Ok(k);
        }
    }
    Err(format!(
        "no P-256 key could be derived for {role} (16 candidates out of range)"
    ))
}

/// A derived key that signs deterministically (RFC 6979): the same issue
/// makes the same certificate, byte for byte, in every render (two writers
/// at once, a standby, the CLI) of the same issue period.
struct Deterministic {
    public: Vec<u8>,
    key: p256::ecdsa::SigningKey,
}

impl rcgen::RemoteKeyPair for Deterministic {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::DerSignature = self.key.try_sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(sig.as_bytes().to_vec())
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn key_pair(root: &RootKey, stack: &str, role: &str, issued: u64) -> Result<KeyPair, String> {
    let secret = secret_key(root, stack, role, issued)?;
    let public = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false)
        .as_bytes()
        .to_vec();
    let key = p256::ecdsa::SigningKey::from(&secret);
    KeyPair::from_remote(Box::new(Deterministic { public, key })).map_err(|e| format!("loading the {role} key: {e}"))
}

/// The issue time of a certificate made at `now`: the start of its issue
/// period (an hour, or a quarter of the shortest lead for short-lived
/// policies), so every render in the period makes the same certificate.
fn issue_time(now: SystemTime, policy: &Policy) -> u64 {
    let lead = policy.cert_rotate_before.min(policy.ca_rotate_before).as_secs();
    let period = (lead / 4).clamp(1, 3600);
    let now = unix(now);
    now - now % period
}

/// The key's PKCS#8 PEM (`BEGIN PRIVATE KEY`), as Elasticsearch reads it.
fn key_pem(root: &RootKey, stack: &str, role: &str, issued: u64) -> Result<String, String> {
    secret_key(root, stack, role, issued)?
        .to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| format!("encoding the {role} key: {e}"))
}

fn serial(stack: &str, role: &str, issued: u64) -> SerialNumber {
    // Positive and unique per (stack, role, issue): a hash, top bit clear.
    // One issue is one certificate (signatures are deterministic), so two
    // renders of it never make two certificates with one serial.
    let mut bytes: Vec<u8> = Sha256::digest(format!("{stack}/{role}/{issued}").as_bytes())[..16].to_vec();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(stack: &str, issued: u64, validity: Duration) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "swarmlog");
    dn.push(DnType::CommonName, format!("swarmlog {stack} CA"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = offset(at(issued).checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH))?;
    p.not_after = offset(later(at(issued), validity)?)?;
    p.serial_number = Some(serial(stack, CA, issued));
    Ok(p)
}

fn leaf_params(
    stack: &str,
    role: &str,
    common_name: &str,
    names: &[String],
    issued: u64,
    not_after: SystemTime,
) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "swarmlog");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("{n:?} cannot be a certificate's name: {e}")),
        })
        .collect::<Result<_, _>>()?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = offset(at(issued).checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH))?;
    p.not_after = offset(not_after)?;
    p.serial_number = Some(serial(stack, role, issued));
    Ok(p)
}

/// rustls' crypto: ring (aws-lc, rustls' default, needs cmake to build).
#[allow(deprecated)] // ring's provider has no post-quantum key exchange.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client's settings that trust the CA certificates in `ca_pem` only
/// (none: nothing is trusted, so every HTTPS call fails), and why a bundle
/// could not be trusted (then nothing is).
pub fn client_config(ca_pem: Option<&str>) -> (rustls::ClientConfig, Option<String>) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let mut broken = None;
    if let Some(pem) = ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            broken = Some("the CA bundle holds no certificate".to_string());
        }
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let added = cert
                .map_err(|e| format!("the CA certificate is not PEM: {e}"))
                .and_then(|c| {
                    roots
                        .add(c)
                        .map_err(|e| format!("the CA certificate cannot be trusted: {e}"))
                });
            if let Err(e) = added {
                roots = rustls::RootCertStore::empty();
                broken = Some(e);
                break;
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // ring's provider has suites for every default version.
        .expect("ring's provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (config, broken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn root() -> RootKey {
        RootKey::from_bytes(b"0123456789abcdef0123456789abcdef").expect("a 32-byte key")
    }

    const DAY: u64 = 24 * 3600;

    fn t(days: u64) -> SystemTime {
        // 2026-01-01 plus `days`.
        UNIX_EPOCH + Duration::from_secs(1_767_225_600 + days * DAY)
    }

    fn names() -> Vec<String> {
        http_names("logging", "elasticsearch")
    }

    /// The configs a first bundle would have made (what the engine keeps).
    fn as_configs(b: &Bundle) -> Vec<Existing> {
        [("logging_es_ca_1", &b.ca), ("logging_es_http_1", &b.http)]
            .iter()
            .map(|(n, p)| Existing::from_config(n, &p.labels, p.data.as_bytes()).expect("labels complete"))
            .collect()
    }

    fn parse(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificates")
    }

    #[test]
    fn a_first_bundle_is_a_ca_and_a_certificate_it_signed_for_the_names() {
        let b = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        assert_eq!(b.issued_now, vec![CA, HTTP]);
        assert!(b.http_key.data.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(b.http.labels[LABEL_ISSUER], b.ca.labels[LABEL_KEY_ID]);
        assert_eq!(b.http.labels[LABEL_KEY_ID], b.http_key.labels[LABEL_KEY_ID]);
        assert_eq!(b.http.labels[LABEL_NOT_AFTER], "2027-01-01T00:00:00Z");
        assert_eq!(b.ca.labels[LABEL_NOT_AFTER], "2030-12-31T00:00:00Z");
        // A TLS client that trusts the CA accepts the certificate for each
        // name, and not for another.
        let mut roots = rustls::RootCertStore::empty();
        for c in parse(&b.ca.data) {
            roots.add(c).expect("the CA is a trust anchor");
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider())
                .build()
                .expect("a verifier");
        let leaf = parse(&b.http.data).remove(0);
        let when = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(unix(t(1))));
        for name in names() {
            let server = rustls::pki_types::ServerName::try_from(name.clone()).expect("a server name");
            verifier
                .verify_server_cert(&leaf, &[], &server, &[], when)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("kibana").expect("a server name");
        assert!(verifier.verify_server_cert(&leaf, &[], &other, &[], when).is_err());
        // The key in the secret is the certificate's.
        let key = KeyPair::from_pem(&b.http_key.data).expect("the key parses");
        assert_eq!(key_id(&key), b.http.labels[LABEL_KEY_ID]);
    }

    /// What a bundle mounts (its issuer holds the time and inputs it was made with).
    fn material(b: &Bundle) -> (&Pem, &Pem, &Pem) {
        (&b.ca, &b.http, &b.http_key)
    }

    #[test]
    fn two_renders_in_one_issue_period_make_the_same_certificates() {
        // Two writers at once, or a standby before the leader wrote: the
        // same bytes, so the same content-hashed names.
        let a = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        let b = bundle(
            &root(),
            "logging",
            &names(),
            &[],
            t(0) + Duration::from_secs(1800),
            &Policy::default(),
        )
        .expect("issued");
        assert_eq!(material(&a), material(&b));
        let c = bundle(
            &root(),
            "logging",
            &names(),
            &[],
            t(0) + Duration::from_secs(3600),
            &Policy::default(),
        )
        .expect("issued");
        assert_ne!(a.http.data, c.http.data, "the next period issues anew");
    }

    #[test]
    fn a_good_bundle_is_reused_with_the_same_key_content() {
        let first = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        let again = bundle(
            &root(),
            "logging",
            &names(),
            &as_configs(&first),
            t(300),
            &Policy::default(),
        )
        .expect("reused");
        assert!(again.issued_now.is_empty(), "{:?}", again.issued_now);
        assert_eq!(material(&again), material(&first));
    }

    #[test]
    fn a_certificate_due_for_renewal_is_issued_again_by_the_same_ca() {
        let first = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        // 30 days before the end of the year's validity.
        let renewed = bundle(
            &root(),
            "logging",
            &names(),
            &as_configs(&first),
            t(336),
            &Policy::default(),
        )
        .expect("renewed");
        assert_eq!(renewed.issued_now, vec![HTTP]);
        assert_eq!(renewed.ca, first.ca);
        assert_ne!(renewed.http_key.data, first.http_key.data, "a renewal has a new key");
        assert_eq!(renewed.http.labels[LABEL_ISSUER], first.ca.labels[LABEL_KEY_ID]);
        // One day earlier it is kept.
        let kept = bundle(
            &root(),
            "logging",
            &names(),
            &as_configs(&first),
            t(334),
            &Policy::default(),
        )
        .expect("kept");
        assert!(kept.issued_now.is_empty());
    }

    #[test]
    fn new_names_another_root_key_or_a_due_ca_issue_anew() {
        let first = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        let existing = as_configs(&first);
        let more: Vec<String> = names().into_iter().chain(["es.example".to_string()]).collect();
        let b = bundle(&root(), "logging", &more, &existing, t(1), &Policy::default()).expect("issued");
        assert_eq!(b.issued_now, vec![HTTP]);
        let other = RootKey::from_bytes(b"another key, 32 bytes long ......").expect("a key");
        let b = bundle(&other, "logging", &names(), &existing, t(1), &Policy::default()).expect("issued");
        assert_eq!(b.issued_now, vec![CA, HTTP]);
        // A due CA: its successor (published first, as its publish time
        // passed unseen) takes over.
        let published = bundle(
            &root(),
            "logging",
            &names(),
            &existing,
            t(5 * 365 - 30),
            &Policy::default(),
        )
        .expect("issued");
        assert_eq!(published.issued_now, vec![HTTP]);
        let b = bundle(
            &root(),
            "logging",
            &names(),
            &as_configs(&published),
            t(5 * 365 - 30),
            &Policy::default(),
        )
        .expect("issued");
        assert_eq!(b.issued_now, vec![CA, HTTP]);
    }

    #[test]
    fn the_newest_good_certificate_wins_whatever_the_order() {
        let p = Policy::default();
        let first = bundle(&root(), "logging", &names(), &[], t(0), &p).expect("issued");
        let second = bundle(&root(), "logging", &names(), &as_configs(&first)[..1], t(2), &p).expect("issued");
        let mut all = as_configs(&first);
        all.push(
            Existing::from_config("logging_es_http_2", &second.http.labels, second.http.data.as_bytes())
                .expect("labels"),
        );
        let a = bundle(&root(), "logging", &names(), &all, t(3), &p).expect("chosen");
        all.reverse();
        let b = bundle(&root(), "logging", &names(), &all, t(3), &p).expect("chosen");
        assert_eq!(a.http, second.http);
        assert_eq!(b.http, second.http);
    }

    #[test]
    fn a_certificate_whose_pem_is_not_what_its_labels_say_is_issued_again() {
        let first = bundle(&root(), "logging", &names(), &[], t(0), &Policy::default()).expect("issued");
        let other = bundle(&root(), "logging", &names(), &[], t(1), &Policy::default()).expect("issued");
        // The HTTP certificate's config holds another certificate than its
        // labels describe (another key, another CA).
        let mut existing = as_configs(&first);
        existing[1].pem = other.http.data.clone();
        let b = bundle(&root(), "logging", &names(), &existing, t(2), &Policy::default()).expect("issued");
        assert_eq!(b.issued_now, vec![HTTP]);
        // The CA's config holds no certificate at all.
        let mut existing = as_configs(&first);
        existing[0].pem = "not a certificate".into();
        let b = bundle(&root(), "logging", &names(), &existing, t(2), &Policy::default()).expect("issued");
        assert_eq!(b.issued_now, vec![CA, HTTP]);
    }

    #[test]
    fn a_ca_with_less_than_a_certificates_lead_left_is_renewed_first() {
        // Certificates renewed 90 days ahead, the CA 30: at 80 days before
        // the CA's end, a certificate capped at it would be due at once.
        let p = Policy {
            cert_rotate_before: Duration::from_secs(90 * DAY),
            ..Policy::default()
        }
        .checked()
        .expect("a good policy");
        let first = bundle(&root(), "logging", &names(), &[], t(0), &p).expect("issued");
        let late = t(5 * 365 - 80);
        let published = bundle(&root(), "logging", &names(), &as_configs(&first), late, &p).expect("issued");
        let b = bundle(&root(), "logging", &names(), &as_configs(&published), late, &p).expect("issued");
        assert_eq!(b.issued_now, vec![CA, HTTP]);
        // And once renewed, the next render keeps both.
        let again = bundle(&root(), "logging", &names(), &as_configs(&b), late, &p).expect("kept");
        assert!(again.issued_now.is_empty(), "{:?}", again.issued_now);
    }

    #[test]
    fn a_cas_successor_is_trusted_ahead_then_signs_and_the_old_one_stays_trusted_until_it_ends() {
        let p = Policy::default();
        let year5 = 5 * 365;
        // Each step renders with what the step before left in the swarm.
        let step = |prev: &Bundle, day: u64| {
            bundle(&root(), "logging", &names(), &as_configs(prev), t(day), &p).expect("a bundle")
        };
        let first = bundle(&root(), "logging", &names(), &[], t(0), &p).expect("issued");
        let ca1 = parse(&first.ca.data);
        assert_eq!(ca1.len(), 1);
        // Just before the publish time (60 days before the end): unchanged.
        let before = step(&first, year5 - 61);
        assert_eq!(material(&before).0, material(&first).0);
        // From it on: the successor is trusted beside the CA, which still
        // signs; the HTTP certificate is not touched.
        let published = step(&before, year5 - 59);
        let trust = parse(&published.ca.data);
        assert_eq!(trust.len(), 2);
        assert_eq!(trust[0], ca1[0]);
        assert_eq!(published.http, before.http);
        assert_eq!(published.ca.labels[LABEL_KEY_ID], first.ca.labels[LABEL_KEY_ID]);
        // Every render in the window makes the same successor.
        assert_eq!(step(&published, year5 - 40).ca.data, published.ca.data);
        // From the switch (30 days before the end): the successor signs; it
        // is byte for byte the one trusted since the publish time, and the
        // old CA is trusted beside it.
        let switched = step(&published, year5 - 29);
        assert_eq!(switched.issued_now, vec![CA, HTTP]);
        let trust2 = parse(&switched.ca.data);
        assert_eq!(trust2, vec![trust[1].clone(), ca1[0].clone()]);
        assert_ne!(switched.ca.labels[LABEL_KEY_ID], first.ca.labels[LABEL_KEY_ID]);
        assert!(switched.ca.labels.contains_key(LABEL_PREVIOUS));
        let new_ca = first_cert_pem(&switched.ca.data).expect("the signing CA");
        assert!(verifies(&switched.http.data, &new_ca, &names(), t(year5 - 29)));
        // A client that took the bundle at the publish time trusts it.
        let old_bundle_trusts_new = parse(&published.ca.data).contains(&parse(&new_ca)[0]);
        assert!(old_bundle_trusts_new);
        // Kept as it is on the next renders...
        let again = step(&switched, year5 - 20);
        assert_eq!(material(&again), material(&switched));
        assert!(again.issued_now.is_empty(), "{:?}", again.issued_now);
        // ...until the old CA ends: then the new one alone.
        let ended = step(&again, year5 + 1);
        assert_eq!(parse(&ended.ca.data), vec![trust[1].clone()]);
        assert!(!ended.ca.labels.contains_key(LABEL_PREVIOUS));
        assert_eq!(ended.http, again.http);
    }

    #[test]
    fn a_successor_whose_publish_time_passed_unseen_is_trusted_before_it_signs() {
        let p = Policy::default();
        let first = bundle(&root(), "logging", &names(), &[], t(0), &p).expect("issued");
        // First seen after the switch time: published, the old CA signs on.
        let late = t(5 * 365 - 20);
        let published = bundle(&root(), "logging", &names(), &as_configs(&first), late, &p).expect("a bundle");
        assert_eq!(parse(&published.ca.data).len(), 2);
        assert_eq!(published.ca.labels[LABEL_KEY_ID], first.ca.labels[LABEL_KEY_ID]);
        assert!(!published.issued_now.contains(&CA), "{:?}", published.issued_now);
        // While a service still mounts the earlier trust (its config is
        // still there): the old CA signs on.
        let mut both = as_configs(&first);
        both.extend(as_configs(&published).into_iter().map(|mut e| {
            e.name = format!("{}_next", e.name);
            e
        }));
        let rolling = bundle(&root(), "logging", &names(), &both, late, &p).expect("a bundle");
        assert_eq!(rolling.ca, published.ca);
        // Meanwhile the HTTP certificate, due but ending with its CA, is not
        // issued again hour after hour under the same CA.
        assert!(
            published.issued_now.contains(&HTTP),
            "the one from a year ago had ended"
        );
        let hours_later = bundle(
            &root(),
            "logging",
            &names(),
            &both,
            late + Duration::from_secs(5 * 3600),
            &p,
        )
        .expect("a bundle");
        assert_eq!(hours_later.http, published.http);
        assert!(hours_later.issued_now.is_empty(), "{:?}", hours_later.issued_now);
        // Once every CA config holds it: the successor signs.
        let switched = bundle(&root(), "logging", &names(), &as_configs(&published), late, &p).expect("a bundle");
        assert_eq!(switched.issued_now, vec![CA, HTTP]);
        assert_ne!(switched.ca.labels[LABEL_KEY_ID], first.ca.labels[LABEL_KEY_ID]);
        assert_eq!(parse(&switched.ca.data)[0], parse(&published.ca.data)[1]);
    }

    #[test]
    fn a_validity_beyond_any_date_is_an_error_not_a_panic() {
        let p = Policy {
            ca_validity: Duration::from_secs(u64::MAX / 2),
            ..Policy::default()
        };
        let e = bundle(&root(), "logging", &names(), &[], t(0), &p).expect_err("refused");
        assert!(e.contains("beyond"), "{e}");
    }

    #[test]
    fn a_policy_renewing_after_the_end_is_refused() {
        let p = Policy {
            cert_rotate_before: Duration::from_secs(400 * DAY),
            ..Policy::default()
        };
        assert!(p.checked().unwrap_err().contains("certRotateBefore"));
        let p = Policy {
            ca_validity: Duration::from_secs(60 * DAY),
            cert_validity: Duration::from_secs(90 * DAY),
            cert_rotate_before: Duration::from_secs(60 * DAY),
            ..Policy::default()
        };
        assert!(p.checked().unwrap_err().contains("caValidity"));
    }
}
