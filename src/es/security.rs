//! Elasticsearch's users as swarmlog keeps them (with
//! `elasticsearch.security`): what is read, what it is compared with, and
//! the bodies written. The passwords come from the credential secrets of the
//! desired state (see [`crate::security`]).
//!
//! - `kibana_system` (built in): its password is set through
//!   `POST /_security/user/kibana_system/_password` when it does not
//!   authenticate with swarmlog's.
//! - the role `swarmlog_logstash_writer`: `monitor` (Logstash's output reads
//!   `GET /` and the license) and `create_doc`, `auto_configure` on
//!   `logs-swarm-*` (the data stream it writes), nothing else.
//! - the user `swarmlog_logstash` with that role only.
//!
//! A role or user of that name without `metadata.managed_by: swarmlog` is
//! someone else's and is never overwritten (as for the retention policy).

use std::collections::BTreeSet;

use serde_json::{json, Value as Json};

use super::client::{Client, EsError};
use super::retention::{Compare, MANAGED_BY};
pub use crate::security::{ELASTIC, KIBANA_SYSTEM, LOGSTASH_ROLE, LOGSTASH_USER};

/// The passwords of the users swarmlog keeps, from the desired state.
#[derive(Clone, PartialEq, Eq)]
pub struct Passwords {
    pub elastic: String,
    pub kibana_system: String,
    pub logstash: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords(hidden)")
    }
}

/// One read of the users (each part on its own: one failure hides nothing else).
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityRead {
    /// Whether `kibana_system` authenticates with swarmlog's password.
    pub kibana_system: Result<bool, String>,
    /// Whether `swarmlog_logstash` authenticates with swarmlog's password.
    pub logstash: Result<bool, String>,
    /// `GET /_security/role/<role>` (`None`: there is none).
    pub role: Result<Option<Json>, String>,
    /// `GET /_security/user/<user>` (`None`: there is none).
    pub user: Result<Option<Json>, String>,
}

/// The role Logstash's user has.
pub fn logstash_role() -> Json {
    json!({
        "cluster": ["monitor"],
        "indices": [{
            "names": [super::retention::DATA_STREAMS],
            "privileges": ["auto_configure", "create_doc"],
        }],
        "metadata": {"managed_by": MANAGED_BY},
    })
}

/// The body that makes (or remakes) Logstash's user.
pub fn logstash_user(password: &str) -> Json {
    json!({
        "password": password,
        "roles": [LOGSTASH_ROLE],
        "full_name": "Logstash of the logging stack (kept by swarmlog)",
        "metadata": {"managed_by": MANAGED_BY},
    })
}

/// Whether `user` authenticates with `password` (`false`: a 401).
pub async fn authenticates(client: &Client, base: &str, user: &str, password: &str) -> Result<bool, String> {
    match client
        .as_user(user, password)
        .call(base, "GET", "/_security/_authenticate", None)
        .await
    {
        Ok(_) => Ok(true),
        Err(EsError::Status { status: 401, .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the users through `base`; `client` calls as `elastic`.
pub async fn read(client: &Client, base: &str, p: &Passwords) -> SecurityRead {
    let role_path = format!("/_security/role/{LOGSTASH_ROLE}");
    let user_path = format!("/_security/user/{LOGSTASH_USER}");
    let (kibana_system, logstash, role, user) = tokio::join!(
        authenticates(client, base, KIBANA_SYSTEM, &p.kibana_system),
        authenticates(client, base, LOGSTASH_USER, &p.logstash),
        client.get_optional(base, &role_path),
        client.get_optional(base, &user_path),
    );
    SecurityRead {
        kibana_system,
        logstash,
        role: role.map_err(|e| e.to_string()),
        user: user.map_err(|e| e.to_string()),
    }
}

fn strings(v: Option<&Json>) -> BTreeSet<String> {
    v.and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn managed(v: &Json) -> bool {
    v.pointer("/metadata/managed_by").and_then(Json::as_str) == Some(MANAGED_BY)
}

/// `GET /_security/role/<role>`'s answer against [`logstash_role`]: the
/// cluster privileges and each index entry's names and privileges as sets
/// (Elasticsearch adds fields of its own, and orders as it likes).
pub fn compare_role(answer: Option<&Json>) -> Compare {
    let Some(held) = answer.and_then(|a| a.get(LOGSTASH_ROLE)) else {
        return Compare::Missing;
    };
    if !managed(held) {
        return Compare::NotOurs;
    }
    let want = logstash_role();
    let (hc, wc) = (strings(held.get("cluster")), strings(want.get("cluster")));
    if hc != wc {
        return Compare::Differs(format!("cluster: {hc:?}, not {wc:?}"));
    }
    let entries = |v: &Json| -> BTreeSet<(BTreeSet<String>, BTreeSet<String>)> {
        v.get("indices")
            .and_then(Json::as_array)
            .map(|l| {
                l.iter()
                    .map(|i| (strings(i.get("names")), strings(i.get("privileges"))))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (hi, wi) = (entries(held), entries(&want));
    if hi != wi {
        return Compare::Differs(format!("indices: {hi:?}, not {wi:?}"));
    }
    Compare::Same
}

/// `GET /_security/user/<user>`'s answer, and whether it authenticates with
/// swarmlog's password, against [`logstash_user`].
pub fn compare_user(answer: Option<&Json>, authenticates: bool) -> Compare {
    let Some(held) = answer.and_then(|a| a.get(LOGSTASH_USER)) else {
        return Compare::Missing;
    };
    if !managed(held) {
        return Compare::NotOurs;
    }
    let roles = strings(held.get("roles"));
    if roles != BTreeSet::from([LOGSTASH_ROLE.to_string()]) {
        return Compare::Differs(format!("roles: {roles:?}, not [{LOGSTASH_ROLE:?}]"));
    }
    if held.get("enabled").and_then(Json::as_bool) == Some(false) {
        return Compare::Differs("it is disabled".into());
    }
    if !authenticates {
        return Compare::Differs("its password is not swarmlog's".into());
    }
    Compare::Same
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role_answer(role: Json) -> Json {
        json!({ LOGSTASH_ROLE: role })
    }

    #[test]
    fn a_role_as_elasticsearch_answers_it_is_the_same() {
        // Elasticsearch adds its defaults and may order the lists otherwise.
        let answer = role_answer(json!({
            "cluster": ["monitor"],
            "indices": [{"names": ["logs-swarm-*"], "privileges": ["create_doc", "auto_configure"], "allow_restricted_indices": false}],
            "applications": [], "run_as": [],
            "metadata": {"managed_by": "swarmlog"},
            "transient_metadata": {"enabled": true},
        }));
        assert_eq!(compare_role(Some(&answer)), Compare::Same);
        assert_eq!(compare_role(None), Compare::Missing);
    }

    #[test]
    fn a_role_with_more_privileges_differs_and_anothers_role_is_not_ours() {
        let wider = role_answer(json!({
            "cluster": ["monitor", "manage"],
            "indices": [{"names": ["logs-swarm-*"], "privileges": ["auto_configure", "create_doc"]}],
            "metadata": {"managed_by": "swarmlog"},
        }));
        assert!(matches!(compare_role(Some(&wider)), Compare::Differs(d) if d.contains("manage")));
        let foreign = role_answer(json!({"cluster": ["all"], "indices": []}));
        assert_eq!(compare_role(Some(&foreign)), Compare::NotOurs);
    }

    #[test]
    fn a_user_is_the_same_only_with_its_one_role_and_swarmlogs_password() {
        let answer = json!({ LOGSTASH_USER: {
            "username": LOGSTASH_USER, "roles": [LOGSTASH_ROLE], "enabled": true,
            "metadata": {"managed_by": "swarmlog"},
        }});
        assert_eq!(compare_user(Some(&answer), true), Compare::Same);
        assert!(matches!(compare_user(Some(&answer), false), Compare::Differs(d) if d.contains("password")));
        assert_eq!(compare_user(None, false), Compare::Missing);
        let more =
            json!({ LOGSTASH_USER: {"roles": [LOGSTASH_ROLE, "superuser"], "metadata": {"managed_by": "swarmlog"}}});
        assert!(matches!(compare_user(Some(&more), true), Compare::Differs(d) if d.contains("superuser")));
        let foreign = json!({ LOGSTASH_USER: {"roles": [LOGSTASH_ROLE], "metadata": {}}});
        assert_eq!(compare_user(Some(&foreign), true), Compare::NotOurs);
    }

    #[test]
    fn the_bodies_never_reach_a_debug_print() {
        let p = Passwords {
            elastic: "e-secret".into(),
            kibana_system: "k-secret".into(),
            logstash: "l-secret".into(),
        };
        assert!(!format!("{p:?}").contains("secret"));
        let c = Client::new(std::time::Duration::from_secs(1)).as_user("elastic", "e-secret");
        assert!(!format!("{c:?}").contains("e-secret"));
    }
}
