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
/// The fewest bytes a root key may have (after trimming whitespace).
const MIN_ROOT_KEY: usize = 32;

/// The superuser: the operator's own calls, and `credentials show`.
pub const ELASTIC: &str = "elastic";
/// Kibana's built-in user (its password is set through the API).
pub const KIBANA_SYSTEM: &str = "kibana_system";
/// Logstash's user, made by swarmlog with the role below only.
pub const LOGSTASH_USER: &str = "swarmlog_logstash";
/// Logstash's role: write to the logs data streams, nothing else.
pub const LOGSTASH_ROLE: &str = "swarmlog_logstash_writer";

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
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC takes a key of any length; this arm is never taken.
            Err(_) => return String::new(),
        };
        mac.update(format!("swarmlog/v1/{stack}/{user}/{generation}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
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

/// The generation of every credential. Rotation (a later generation) is not
/// built yet; the derivation already carries it.
pub const GENERATION: u32 = 1;

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
}
