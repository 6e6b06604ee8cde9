//! Credentials (pure but for reading the root key): every password swarmlog
//! gives Elasticsearch's users is derived from one root key, so a restarted
//! operator, or a new leader, has the same passwords without reading a swarm
//! secret back (the engine never returns a secret's data).
//!
//! The root key is a swarm secret made once at install (`swarmlog
//! credentials init`) and mounted into the operator only
//! (manifests/operator.yml). A password is
//! `base64url(HMAC-SHA256(root key, "swarmlog/v1/<stack>/<user>/<generation>"))`:
//! 256 bits, no character that needs quoting in YAML, a shell or a URL.
//! The passwords reach the services as swarm secrets named by the hash of
//! their content (`<stack>_<key>_<hash8>`), like configs.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Label on a secret of the chart: the Elasticsearch user whose password
/// swarmlog derives and puts in it (the secret has no `file:`).
pub const LABEL_CREDENTIAL: &str = "io.swarmlog.credential";
/// Label on such a secret: the generation its password was derived for.
pub const LABEL_GENERATION: &str = "io.swarmlog.generation";
/// Where manifests/operator.yml mounts the root key.
pub const DEFAULT_ROOT_KEY_FILE: &str = "/run/secrets/swarmlog_root_key";
/// The root key's swarm secret, as manifests/operator.yml names it.
pub const ROOT_KEY_SECRET: &str = "swarmlog_root_key";
/// Label on the root key's secret (what made it).
pub const LABEL_ROOT_KEY: &str = "io.swarmlog.root-key";
/// The ownership label (`render::desired::LABEL_STACK`, written here so
/// this module does not depend on the render: the render depends on it).
const LABEL_STACK: &str = "io.swarmlog.stack";
/// The fewest bytes a root key may have (after trimming whitespace).
const MIN_ROOT_KEY: usize = 32;

/// Label a rotation request puts on a credential's secret: the generation
/// asked for (`swarmlog credentials rotate`).
pub const LABEL_ROTATE: &str = "io.swarmlog.rotate";

/// The credentials a chart may ask for (the value of `io.swarmlog.credential`).
pub const CREDENTIALS: [&str; 3] = [ELASTIC, KIBANA, LOGSTASH];
/// The superuser: the operator's own calls, and the first login.
pub const ELASTIC: &str = "elastic";
/// Kibana's user: `swarmlog_kibana_<generation>`, with the built-in role
/// `kibana_system` (as ECK makes one per Kibana), one per generation so a
/// rotation never refuses the Kibana still running.
pub const KIBANA: &str = "kibana";
/// Logstash's user: `swarmlog_logstash_<generation>`, with the role below only.
pub const LOGSTASH: &str = "logstash";
/// Kibana's users' role (built into Elasticsearch).
pub const KIBANA_ROLE: &str = "kibana_system";
/// Logstash's role: write to the logs data streams, nothing else.
pub const LOGSTASH_ROLE: &str = "swarmlog_logstash_writer";

/// The Elasticsearch user of credential `logical` at `generation`.
pub fn username(logical: &str, generation: u32) -> Option<String> {
    match logical {
        ELASTIC => Some(ELASTIC.to_string()),
        KIBANA => Some(format!("swarmlog_kibana_{generation}")),
        LOGSTASH => Some(format!("swarmlog_logstash_{generation}")),
        _ => None,
    }
}

/// The credential and generation of a user swarmlog makes (`swarmlog_kibana_3`).
pub fn parse_username(name: &str) -> Option<(&'static str, u32)> {
    for logical in [KIBANA, LOGSTASH] {
        if let Some(g) = name.strip_prefix(&format!("swarmlog_{logical}_")) {
            return g.parse().ok().filter(|g| *g > 0).map(|g| (logical, g));
        }
    }
    None
}

/// One user as the operator keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    pub generation: u32,
}

/// What the operator needs of the credentials: derived from the root key
/// on each render, never stored. `Debug` shows names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `elastic`'s password by generation, from 1 (Elasticsearch's
    /// bootstrap password, in its secret) to the one asked for (last).
    pub elastic: Vec<String>,
    pub kibana: User,
    pub logstash: User,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials(elastic generation {}, {}, {})",
            self.elastic.len(),
            self.kibana.name,
            self.logstash.name
        )
    }
}

impl Credentials {
    /// Every password of `stack` at the generations given (1 when not given).
    pub fn derive(key: &RootKey, stack: &str, generations: &BTreeMap<String, u32>) -> Credentials {
        let gen = |l: &str| generations.get(l).copied().unwrap_or(1).max(1);
        let user = |l: &str| {
            let g = gen(l);
            User {
                name: username(l, g).unwrap_or_default(),
                password: key.password(stack, l, g),
                generation: g,
            }
        };
        Credentials {
            elastic: (1..=gen(ELASTIC)).map(|g| key.password(stack, ELASTIC, g)).collect(),
            kibana: user(KIBANA),
            logstash: user(LOGSTASH),
        }
    }

    /// `elastic`'s password asked for (the last generation).
    pub fn elastic(&self) -> &str {
        self.elastic.last().map(String::as_str).unwrap_or_default()
    }

    /// The user of a credential.
    pub fn user(&self, logical: &str) -> Option<&User> {
        match logical {
            KIBANA => Some(&self.kibana),
            LOGSTASH => Some(&self.logstash),
            _ => None,
        }
    }
}

/// [`generations`] of every stack that has credential secrets.
pub fn generations_by_stack(secrets: &[bollard::models::Secret]) -> BTreeMap<String, BTreeMap<String, u32>> {
    let stacks: std::collections::BTreeSet<String> = secrets
        .iter()
        .filter_map(|s| s.spec.as_ref()?.labels.as_ref())
        .filter(|l| l.contains_key(LABEL_CREDENTIAL))
        .filter_map(|l| l.get(LABEL_STACK).cloned())
        .collect();
    stacks
        .into_iter()
        .map(|st| {
            let g = generations(&st, secrets);
            (st, g)
        })
        .collect()
}

/// The generation of each credential of `stack` its owned secrets record:
/// the highest of their `io.swarmlog.generation` and of a rotation asked for
/// (`io.swarmlog.rotate`). A credential without a secret is at 1.
pub fn generations<'a>(
    stack: &str,
    secrets: impl IntoIterator<Item = &'a bollard::models::Secret>,
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for s in secrets {
        let Some(labels) = s.spec.as_ref().and_then(|s| s.labels.as_ref()) else {
            continue;
        };
        if labels.get(LABEL_STACK).map(String::as_str) != Some(stack) {
            continue;
        }
        let Some(logical) = labels.get(LABEL_CREDENTIAL) else {
            continue;
        };
        let n = |k: &str| labels.get(k).and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(1);
        let g = n(LABEL_GENERATION).max(n(LABEL_ROTATE));
        let e = out.entry(logical.clone()).or_insert(1);
        *e = (*e).max(g);
    }
    out
}

/// The root key. Its bytes are never printed (`Debug` hides them).
#[derive(Clone, PartialEq, Eq)]
pub struct RootKey(Vec<u8>);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootKey({} bytes)", self.0.len())
    }
}

impl RootKey {
    /// A key from a secret's bytes: surrounding whitespace (a trailing
    /// newline of `echo`) is not part of it; fewer than 32 bytes is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<RootKey, String> {
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |e| e + 1);
        let key = &bytes[start..end.max(start)];
        if key.len() < MIN_ROOT_KEY {
            return Err(format!(
                "the root key has {} bytes, fewer than {MIN_ROOT_KEY}: make one with `swarmlog credentials init`",
                key.len()
            ));
        }
        Ok(RootKey(key.to_vec()))
    }

    /// Reads the key from its file (the operator's secret mount).
    pub fn read(path: &Path) -> Result<RootKey, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "the root key {} cannot be read: {e} (make it once with `swarmlog credentials init`, and mount it into the operator: manifests/operator.yml)",
                path.display()
            )
        })?;
        RootKey::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The password of `user` in `stack`, for `generation`.
    pub fn password(&self, stack: &str, user: &str, generation: u32) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.derive(&format!("swarmlog/v1/{stack}/{user}/{generation}")))
    }

    /// HMAC-SHA256 of `info` under the key: the 32 bytes every secret
    /// swarmlog makes is derived from.
    pub fn derive(&self, info: &str) -> [u8; 32] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC takes a key of any length; this arm is never taken.
            Err(_) => return [0; 32],
        };
        mac.update(info.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// A new root key's text: 32 random bytes from the kernel, base64.
pub fn new_root_key() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Prefix of the path the render asks its reader for a credential's
/// content (`swarmlog-credential:<user>`): never a file name a chart uses.
pub const CREDENTIAL_PATH: &str = "swarmlog-credential:";

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RootKey {
        RootKey::from_bytes(b"0123456789abcdef0123456789abcdef\n").expect("a 32-byte key")
    }

    #[test]
    fn a_password_depends_on_the_key_stack_user_and_generation_only() {
        let k = key();
        let p = k.password("logging", "kibana_system", 1);
        assert_eq!(p, k.password("logging", "kibana_system", 1));
        assert_eq!(p.len(), 43);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        for other in [
            k.password("other", "kibana_system", 1),
            k.password("logging", "elastic", 1),
            k.password("logging", "kibana_system", 2),
            RootKey::from_bytes(b"1123456789abcdef0123456789abcdef")
                .expect("key")
                .password("logging", "kibana_system", 1),
        ] {
            assert_ne!(p, other);
        }
    }

    #[test]
    fn the_key_ignores_surrounding_whitespace_and_refuses_short_keys() {
        assert_eq!(
            key(),
            RootKey::from_bytes(b"  0123456789abcdef0123456789abcdef").expect("key")
        );
        let e = RootKey::from_bytes(b"short\n").expect_err("short");
        assert!(!e.is_empty());
        assert!(e.contains("5 bytes"), "{e}");
        assert!(RootKey::from_bytes(b"   \n").is_err());
        assert_eq!(format!("{:?}", key()), "RootKey(32 bytes)");
    }

    #[test]
    fn a_new_root_key_is_random_and_long_enough() {
        let a = new_root_key().expect("urandom");
        let b = new_root_key().expect("urandom");
        assert_ne!(a, b);
        RootKey::from_bytes(a.as_bytes()).expect("a new key is accepted");
    }

    #[test]
    fn the_stack_label_is_the_renders() {
        assert_eq!(LABEL_STACK, crate::render::desired::LABEL_STACK);
    }

    #[test]
    fn generations_come_from_the_stacks_own_secrets_and_a_rotation_asked_for() {
        let secret = |stack: &str, logical: &str, gen: &str, rotate: Option<&str>| {
            let mut labels = std::collections::HashMap::from([
                (crate::render::desired::LABEL_STACK.to_string(), stack.to_string()),
                (LABEL_CREDENTIAL.to_string(), logical.to_string()),
                (LABEL_GENERATION.to_string(), gen.to_string()),
            ]);
            if let Some(r) = rotate {
                labels.insert(LABEL_ROTATE.to_string(), r.to_string());
            }
            bollard::models::Secret {
                spec: Some(bollard::models::SecretSpec {
                    labels: Some(labels),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let all = [
            secret("logging", KIBANA, "1", Some("2")),
            secret("logging", KIBANA, "2", None),
            secret("logging", LOGSTASH, "1", None),
            secret("logging", ELASTIC, "1", Some("3")),
            secret("other", LOGSTASH, "7", None),
        ];
        let g = generations("logging", &all);
        assert_eq!(g.get(KIBANA), Some(&2));
        assert_eq!(g.get(LOGSTASH), Some(&1));
        assert_eq!(g.get(ELASTIC), Some(&3));
        let c = Credentials::derive(&key(), "logging", &g);
        assert_eq!(c.kibana.name, "swarmlog_kibana_2");
        assert_eq!(c.logstash.name, "swarmlog_logstash_1");
        assert_eq!(c.elastic.len(), 3);
        assert_eq!(c.elastic[0], key().password("logging", ELASTIC, 1));
        assert_eq!(c.elastic(), key().password("logging", ELASTIC, 3));
        assert!(!format!("{c:?}").contains(&c.kibana.password));
        assert_eq!(parse_username("swarmlog_kibana_2"), Some((KIBANA, 2)));
        assert_eq!(parse_username("swarmlog_logstash_0"), None);
        assert_eq!(parse_username("kibana_system"), None);
    }
}
