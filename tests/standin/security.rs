//! The Elasticsearch simulator's security, pure (no I/O): basic
//! authentication against the native realm, the reserved users, roles and
//! users made through the `_security` API, and the privileges the
//! simulator checks. On only with `xpack.security.enabled: true` (the
//! chart has always set it false; real Elasticsearch 8 defaults to on).
//!
//! Simulated, with the shapes of Elastic's documented API:
//! - `Authorization: Basic <base64 user:password>` on every request (but the
//!   simulator's own `/_standin/...`); 401 `security_exception` with
//!   `WWW-Authenticate: Basic realm="security" charset="UTF-8"` without
//!   credentials or with wrong ones;
//! - the reserved users `elastic`, `kibana_system`, `logstash_system`,
//!   `beats_system`, `apm_system`, `remote_monitoring_user`: none can log in
//!   until its password is set, except `elastic` with the bootstrap password
//!   `ELASTIC_PASSWORD` (or the file `ELASTIC_PASSWORD_FILE`) until its own
//!   password is set;
//! - `POST|PUT /_security/user/<name>/_password`, `PUT|GET|DELETE
//!   /_security/role/<name>`, `PUT|GET|DELETE /_security/user/<name>`,
//!   `GET /_security/user` (every user, the reserved ones too),
//!   `GET /_security/_authenticate`;
//! - privileges: `superuser` (`elastic`) may do everything; the security API
//!   needs the cluster privilege `manage_security` (`all`), a user may change
//!   its own password; other cluster APIs need `monitor` (reads) or
//!   `manage` (writes), ILM `manage_ilm`, templates
//!   `manage_index_templates`; 403 `security_exception` otherwise.
//!
//! Not simulated here: TLS (tests/standin/es_tls.rs), API keys, tokens, realms other than the native one,
//! index privileges on documents (there are none), password hashing (the
//! simulator keeps passwords as given, in its data path: a test double).

use std::collections::BTreeMap;

use crate::json::{self, Json};

/// The reserved users and their built-in roles.
pub const RESERVED: [(&str, &str); 6] = [
    ("elastic", "superuser"),
    ("kibana_system", "kibana_system"),
    ("logstash_system", "logstash_system"),
    ("beats_system", "beats_system"),
    ("apm_system", "apm_system"),
    ("remote_monitoring_user", "remote_monitoring_collector"),
];

/// The built-in roles' cluster privileges (the part the simulator checks).
fn builtin_cluster_privileges(role: &str) -> Option<&'static [&'static str]> {
    Some(match role {
        "superuser" => &["all"],
        "kibana_system" => &["monitor", "manage_index_templates", "manage_ilm"],
        "logstash_system" | "beats_system" | "apm_system" | "remote_monitoring_collector" => &["monitor"],
        "logstash_admin" => &["manage_ilm", "manage_index_templates", "monitor"],
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `None`: cannot log in (a reserved user before its password is set).
    pub password: Option<String>,
    pub roles: Vec<String>,
    pub full_name: Option<String>,
    pub enabled: bool,
    /// The user's `metadata` object as given (`None`: `{}`).
    pub metadata: Option<Json>,
}

/// Users and roles of the native realm (the cluster's `.security` index).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    /// Set passwords of reserved users, and every other user.
    pub users: BTreeMap<String, User>,
    /// Roles made through the API: the role body as given.
    pub roles: BTreeMap<String, Json>,
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub username: String,
    pub roles: Vec<String>,
}

/// A refusal: status and Elasticsearch's error body.
pub type Refusal = (u16, String);

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"security\" charset=\"UTF-8\"";

fn security_exception(reason: &str, status: u16) -> Refusal {
    let q = json::quote(reason);
    let header = if status == 401 {
        format!(
            ",\"header\":{{\"WWW-Authenticate\":[{},\"ApiKey\"]}}",
            json::quote(WWW_AUTHENTICATE)
        )
    } else {
        String::new()
    };
    (
        status,
        format!(
            "{{\"error\":{{\"root_cause\":[{{\"type\":\"security_exception\",\"reason\":{q}{header}}}],\"type\":\"security_exception\",\"reason\":{q}{header}}},\"status\":{status}}}"
        ),
    )
}

/// Standard base64 (with or without padding), as the Basic scheme uses it.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.trim().bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

impl Security {
    /// The user named, reserved or not (a reserved user without a set
    /// password is there, but cannot log in).
    pub fn user(&self, name: &str) -> Option<User> {
        if let Some(u) = self.users.get(name) {
            return Some(u.clone());
        }
        RESERVED.iter().find(|(n, _)| *n == name).map(|(_, role)| User {
            password: None,
            roles: vec![role.to_string()],
            full_name: None,
            enabled: true,
            metadata: None,
        })
    }

    /// Checks the `Authorization` header of a request to `path`.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        bootstrap: Option<&str>,
        path: &str,
    ) -> Result<Principal, Refusal> {
        let missing = || {
            security_exception(
                &format!("missing authentication credentials for REST request [{path}]"),
                401,
            )
        };
        let header = header.ok_or_else(missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(missing());
        }
        let decoded = base64_decode(token).and_then(|b| String::from_utf8(b).ok());
        let (name, password) = decoded.as_deref().and_then(|d| d.split_once(':')).ok_or_else(missing)?;
        let refused = || {
            security_exception(
                &format!("unable to authenticate user [{name}] for REST request [{path}]"),
                401,
            )
        };
        let user = self.user(name).ok_or_else(refused)?;
        // `elastic` logs in with the bootstrap password until its own is set.
        let expected = user
            .password
            .clone()
            .or_else(|| (name == "elastic").then(|| bootstrap.map(str::to_string)).flatten());
        if !user.enabled || expected.as_deref() != Some(password) {
            return Err(refused());
        }
        Ok(Principal {
            username: name.to_string(),
            roles: user.roles,
        })
    }

    /// The cluster privileges a principal holds, through its roles.
    fn cluster_privileges(&self, p: &Principal) -> Vec<String> {
        let mut out = Vec::new();
        for r in &p.roles {
            if let Some(b) = builtin_cluster_privileges(r) {
                out.extend(b.iter().map(|s| s.to_string()));
            } else if let Some(role) = self.roles.get(r) {
                out.extend(
                    role.get("cluster")
                        .and_then(Json::as_array)
                        .unwrap_or(&[])
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string)),
                );
            }
        }
        out
    }

    /// Whether `p` may make this request; 403 with Elasticsearch's wording if not.
    pub fn authorize(&self, p: &Principal, method: &str, path: &str) -> Result<(), Refusal> {
        let held = self.cluster_privileges(p);
        let has = |want: &[&str]| held.iter().any(|h| h == "all" || want.contains(&h.as_str()));
        let read = method == "GET" || method == "HEAD";
        let own_password = path == format!("/_security/user/{}/_password", p.username);
        let (ok, action) = if path == "/_security/_authenticate" || path.is_empty() || own_password {
            (true, "")
        } else if path.starts_with("/_security/") {
            (has(&["manage_security"]), "cluster:admin/xpack/security")
        } else if path.starts_with("/_ilm/") {
            let want: &[&str] = if read {
                &["manage_ilm", "read_ilm", "manage", "monitor"]
            } else {
                &["manage_ilm", "manage"]
            };
            (has(want), "cluster:admin/ilm")
        } else if path.starts_with("/_index_template") {
            let want: &[&str] = if read {
                &["manage_index_templates", "manage", "monitor"]
            } else {
                &["manage_index_templates", "manage"]
            };
            (has(want), "indices:admin/index_template")
        } else if read {
            (has(&["monitor", "manage"]), "cluster:monitor")
        } else {
            (has(&["manage"]), "cluster:admin")
        };
        if ok {
            return Ok(());
        }
        Err(security_exception(
            &format!(
                "action [{action}] is unauthorized for user [{}] with effective roles [{}], this action is granted by the cluster privileges [manage,all]",
                p.username,
                p.roles.join(",")
            ),
            403,
        ))
    }

    /// One line per user and role, for the peer protocol and the data path.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, u) in &self.users {
            let record = Json::object([
                ("name", Json::str(name)),
                ("password", u.password.as_deref().map(Json::str).unwrap_or(Json::Null)),
                ("roles", Json::Array(u.roles.iter().map(|r| Json::str(r)).collect())),
                ("full_name", u.full_name.as_deref().map(Json::str).unwrap_or(Json::Null)),
                ("enabled", Json::Bool(u.enabled)),
                ("metadata", u.metadata.clone().unwrap_or(Json::Null)),
            ]);
            out.push_str(&format!("security_user={record}\n"));
        }
        for (name, r) in &self.roles {
            let record = Json::object([("name", Json::str(name)), ("role", r.clone())]);
            out.push_str(&format!("security_role={record}\n"));
        }
        out
    }

    pub fn is_key(key: &str) -> bool {
        key == "security_user" || key == "security_role"
    }

    pub fn decode_line(&mut self, key: &str, value: &str) -> Result<(), String> {
        let record = json::parse(value).map_err(|e| format!("{key}: {e}"))?;
        let text = |f: &str| record.get(f).and_then(Json::as_str).map(str::to_string);
        let name = text("name").ok_or_else(|| format!("{key}: no name"))?;
        match key {
            "security_user" => {
                let roles = record
                    .get("roles")
                    .and_then(Json::as_array)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect();
                let enabled = !matches!(record.get("enabled"), Some(Json::Bool(false)));
                self.users.insert(
                    name,
                    User {
                        password: text("password"),
                        roles,
                        full_name: text("full_name"),
                        enabled,
                        metadata: record
                            .get("metadata")
                            .filter(|m| matches!(**m, Json::Object(_)))
                            .cloned(),
                    },
                );
            }
            "security_role" => {
                let role = record
                    .get("role")
                    .cloned()
                    .ok_or_else(|| format!("{key} {name}: no role"))?;
                self.roles.insert(name, role);
            }
            _ => return Err(format!("not a security line: {key}")),
        }
        Ok(())
    }
}

fn bad_request(reason: &str) -> Refusal {
    (
        400,
        format!(
            "{{\"error\":{{\"root_cause\":[{{\"type\":\"illegal_argument_exception\",\"reason\":{r}}}],\"type\":\"illegal_argument_exception\",\"reason\":{r}}},\"status\":400}}",
            r = json::quote(reason)
        ),
    )
}

fn not_found(reason: &str) -> Refusal {
    (
        404,
        format!(
            "{{\"error\":{{\"root_cause\":[{{\"type\":\"resource_not_found_exception\",\"reason\":{r}}}],\"type\":\"resource_not_found_exception\",\"reason\":{r}}},\"status\":404}}",
            r = json::quote(reason)
        ),
    )
}

/// Elasticsearch's password rule: at least 6 characters.
fn check_password(v: Option<&Json>) -> Result<String, Refusal> {
    match v.and_then(Json::as_str) {
        Some(p) if p.chars().count() >= 6 => Ok(p.to_string()),
        Some(_) => Err(bad_request(
            "Validation Failed: 1: passwords must be at least [6] characters long;",
        )),
        None => Err(bad_request("Validation Failed: 1: password must be specified;")),
    }
}

fn user_json(name: &str, u: &User) -> String {
    let reserved = RESERVED.iter().any(|(n, _)| *n == name);
    let metadata = match (&u.metadata, reserved) {
        (_, true) => "{\"_reserved\":true}".to_string(),
        (Some(m), false) => m.to_string(),
        (None, false) => "{}".to_string(),
    };
    format!(
        "{{\"username\":{},\"roles\":[{}],\"full_name\":{},\"email\":null,\"metadata\":{metadata},\"enabled\":{}}}",
        json::quote(name),
        u.roles.iter().map(|r| json::quote(r)).collect::<Vec<_>>().join(","),
        u.full_name.as_deref().map(json::quote).unwrap_or_else(|| "null".into()),
        u.enabled
    )
}

/// What a `_security` request changes, if it is allowed: the new state and
/// the answer; or a refusal (the state unchanged).
pub fn api(
    state: &Security,
    who: &Principal,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(Option<Security>, u16, String), Refusal> {
    let rest = path.strip_prefix("/_security/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    let doc = || -> Result<BTreeMap<String, Json>, Refusal> {
        match json::parse(body) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(_) => Err(bad_request("request body must be a JSON object")),
            Err(e) => Err(bad_request(&format!("failed to parse the request body: {e}"))),
        }
    };
    match (method, parts.as_slice()) {
        ("GET", ["_authenticate"]) => Ok((
            None,
            200,
            format!(
                "{{\"username\":{},\"roles\":[{}],\"full_name\":null,\"email\":null,\"metadata\":{{}},\"enabled\":true,\"authentication_realm\":{{\"name\":\"default_native\",\"type\":\"native\"}},\"lookup_realm\":{{\"name\":\"default_native\",\"type\":\"native\"}},\"authentication_type\":\"realm\"}}",
                json::quote(&who.username),
                who.roles.iter().map(|r| json::quote(r)).collect::<Vec<_>>().join(",")
            ),
        )),
        ("POST" | "PUT", ["user", name, "_password"]) => {
            let password = check_password(doc()?.get("password"))?;
            let mut user = state
                .user(name)
                .ok_or_else(|| bad_request(&format!("user [{name}] does not exist")))?;
            user.password = Some(password);
            let mut next = state.clone();
            next.users.insert(name.to_string(), user);
            Ok((Some(next), 200, "{}".to_string()))
        }
        ("PUT" | "POST", ["role", name]) => {
            let d = doc()?;
            let mut next = state.clone();
            let created = !next.roles.contains_key(*name);
            next.roles.insert(name.to_string(), Json::Object(d));
            Ok((Some(next), 200, format!("{{\"role\":{{\"created\":{created}}}}}")))
        }
        ("GET", ["role", name]) => match state.roles.get(*name) {
            Some(r) => Ok((None, 200, format!("{{{}:{r}}}", json::quote(name)))),
            None => Ok((None, 404, "{}".to_string())),
        },
        ("DELETE", ["role", name]) => {
            let mut next = state.clone();
            let found = next.roles.remove(*name).is_some();
            let status = if found { 200 } else { 404 };
            Ok((found.then_some(next), status, format!("{{\"found\":{found}}}")))
        }
        ("PUT" | "POST", ["user", name]) => {
            if RESERVED.iter().any(|(n, _)| n == name) {
                return Err(bad_request(&format!(
                    "user [{name}] is reserved and only the password can be changed"
                )));
            }
            let d = doc()?;
            let roles: Vec<String> = d
                .get("roles")
                .and_then(Json::as_array)
                .unwrap_or(&[])
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            let existing = state.users.get(*name);
            let password = match (d.get("password"), existing) {
                (Some(p), _) => Some(check_password(Some(p))?),
                (None, Some(u)) => u.password.clone(),
                (None, None) => {
                    return Err(bad_request(
                        "Validation Failed: 1: password must be specified unless you are updating an existing user;",
                    ))
                }
            };
            let user = User {
                password,
                roles,
                full_name: d.get("full_name").and_then(Json::as_str).map(str::to_string),
                enabled: !matches!(d.get("enabled"), Some(Json::Bool(false))),
                metadata: d.get("metadata").filter(|m| matches!(**m, Json::Object(_))).cloned(),
            };
            let mut next = state.clone();
            let created = next.users.insert(name.to_string(), user).is_none();
            Ok((Some(next), 200, format!("{{\"created\":{created}}}")))
        }
        ("GET", ["user"]) | ("GET", ["user", ""]) => {
            let mut names: Vec<String> = RESERVED.iter().map(|(n, _)| n.to_string()).collect();
            names.extend(state.users.keys().cloned());
            names.sort();
            names.dedup();
            let all: Vec<String> = names
                .iter()
                .filter_map(|n| state.user(n).map(|u| format!("{}:{}", json::quote(n), user_json(n, &u))))
                .collect();
            Ok((None, 200, format!("{{{}}}", all.join(","))))
        }
        ("GET", ["user", name]) => match state.user(name) {
            Some(u) => Ok((None, 200, format!("{{{}:{}}}", json::quote(name), user_json(name, &u)))),
            None => Ok((None, 404, "{}".to_string())),
        },
        ("DELETE", ["user", name]) => {
            if RESERVED.iter().any(|(n, _)| n == name) {
                return Err(bad_request(&format!("user [{name}] is reserved and cannot be deleted")));
            }
            let mut next = state.clone();
            let found = next.users.remove(*name).is_some();
            let status = if found { 200 } else { 404 };
            Ok((found.then_some(next), status, format!("{{\"found\":{found}}}")))
        }
        _ => Err(not_found(&format!("no security API [{method} {path}] in the simulator"))),
    }
}
