//! Elasticsearch's users as swarmlog keeps them (with
//! `elasticsearch.security`): what is read, what it is compared with, and
//! the bodies written. The passwords are derived (see [`crate::security`]).
//!
//! - `elastic`: Elasticsearch's bootstrap password is the first
//!   generation's; a rotation sets the next through
//!   `POST /_security/user/elastic/_password`.
//! - `swarmlog_kibana_<generation>` with the built-in role `kibana_system`,
//!   and `swarmlog_logstash_<generation>` with the role
//!   `swarmlog_logstash_writer`: `monitor` (Logstash's output reads `GET /`
//!   and the license) and `create_doc`, `auto_configure` on `logs-swarm-*`
//!   (the data stream it writes), nothing else. One user per generation: a
//!   rotation makes the next user before Kibana or Logstash moves to it, and
//!   removes the earlier one once nothing runs with it, so no request is
//!   refused on the way.
//!
//! A role or user of those names without `metadata.managed_by: swarmlog` is
//! someone else's and is never overwritten (as for the retention policy).

use std::collections::BTreeSet;

use serde_json::{json, Value as Json};

use super::client::{Client, EsError};
use super::retention::{Compare, MANAGED_BY};
pub use crate::security::{Credentials, User, ELASTIC, KIBANA, KIBANA_ROLE, LOGSTASH, LOGSTASH_ROLE};

/// One user swarmlog keeps, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRead {
    /// `GET /_security/user/<name>` (`None`: there is none).
    pub user: Result<Option<Json>, String>,
    /// Whether it logs in with swarmlog's password.
    pub authenticates: Result<bool, String>,
}

/// One read of the users (each part on its own: one failure hides nothing else).
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityRead {
    /// The generation of `elastic`'s password that logged in.
    pub elastic: Option<u32>,
    pub kibana: UserRead,
    pub logstash: UserRead,
    /// `GET /_security/role/<LOGSTASH_ROLE>` (`None`: there is none).
    pub role: Result<Option<Json>, String>,
    /// swarmlog's users of other generations still in Elasticsearch.
    pub others: Result<Vec<String>, String>,
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

/// The role each credential's user has.
pub fn role_of(logical: &str) -> &'static str {
    if logical == KIBANA {
        KIBANA_ROLE
    } else {
        LOGSTASH_ROLE
    }
}

/// The body that makes (or remakes) a credential's user.
pub fn user_body(logical: &str, u: &User) -> Json {
    let who = if logical == KIBANA { "Kibana" } else { "Logstash" };
    json!({
        "password": u.password,
        "roles": [role_of(logical)],
        "full_name": format!("{who} of the logging stack, generation {} (kept by swarmlog)", u.generation),
        "metadata": {"managed_by": MANAGED_BY, "generation": u.generation},
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

/// The generation of `elastic`'s password that logs in, newest first.
pub async fn elastic_generation(client: &Client, base: &str, c: &Credentials) -> Result<Option<u32>, String> {
    for (i, p) in c.elastic.iter().enumerate().rev() {
        if authenticates(client, base, ELASTIC, p).await? {
            return Ok(Some(i as u32 + 1));
        }
    }
    Ok(None)
}

async fn read_user(client: &Client, base: &str, u: &User) -> UserRead {
    let path = format!("/_security/user/{}", u.name);
    let (user, auth) = tokio::join!(
        client.get_optional(base, &path),
        authenticates(client, base, &u.name, &u.password)
    );
    UserRead {
        user: user.map_err(|e| e.to_string()),
        authenticates: auth,
    }
}

/// Reads the users through `base`; `client` calls as `elastic`, whose
/// generation in force is `elastic`.
pub async fn read(client: &Client, base: &str, c: &Credentials, elastic: Option<u32>) -> SecurityRead {
    let role_path = format!("/_security/role/{LOGSTASH_ROLE}");
    let (kibana, logstash, role, all) = tokio::join!(
        read_user(client, base, &c.kibana),
        read_user(client, base, &c.logstash),
        client.get_optional(base, &role_path),
        client.call(base, "GET", "/_security/user", None),
    );
    let current = [c.kibana.name.as_str(), c.logstash.name.as_str()];
    let others = all.map_err(|e| e.to_string()).map(|v| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(name, u)| {
                        crate::security::parse_username(name).is_some()
                            && !current.contains(&name.as_str())
                            && managed(u)
                    })
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    });
    SecurityRead {
        elastic,
        kibana,
        logstash,
        role: role.map_err(|e| e.to_string()),
        others,
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

/// `GET /_security/user/<name>`'s answer, and whether it authenticates with
/// swarmlog's password, against [`user_body`].
pub fn compare_user(logical: &str, name: &str, answer: Option<&Json>, authenticates: bool) -> Compare {
    let Some(held) = answer.and_then(|a| a.get(name)) else {
        return Compare::Missing;
    };
    if !managed(held) {
        return Compare::NotOurs;
    }
    let roles = strings(held.get("roles"));
    let want = role_of(logical);
    if roles != BTreeSet::from([want.to_string()]) {
        return Compare::Differs(format!("roles: {roles:?}, not [{want:?}]"));
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
        let name = "swarmlog_logstash_1";
        let answer = json!({ name: {
            "username": name, "roles": [LOGSTASH_ROLE], "enabled": true,
            "metadata": {"managed_by": "swarmlog", "generation": 1},
        }});
        assert_eq!(compare_user(LOGSTASH, name, Some(&answer), true), Compare::Same);
        assert!(
            matches!(compare_user(LOGSTASH, name, Some(&answer), false), Compare::Differs(d) if d.contains("password"))
        );
        assert_eq!(compare_user(LOGSTASH, name, None, false), Compare::Missing);
        // Kibana's user has the kibana_system role, not Logstash's.
        assert!(
            matches!(compare_user(KIBANA, name, Some(&answer), true), Compare::Differs(d) if d.contains("kibana_system"))
        );
        let more = json!({ name: {"roles": [LOGSTASH_ROLE, "superuser"], "metadata": {"managed_by": "swarmlog"}}});
        assert!(
            matches!(compare_user(LOGSTASH, name, Some(&more), true), Compare::Differs(d) if d.contains("superuser"))
        );
        let foreign = json!({ name: {"roles": [LOGSTASH_ROLE], "metadata": {}}});
        assert_eq!(compare_user(LOGSTASH, name, Some(&foreign), true), Compare::NotOurs);
    }

    #[test]
    fn the_bodies_never_reach_a_debug_print() {
        let c = Client::new(std::time::Duration::from_secs(1)).as_user("elastic", "e-secret");
        assert!(!format!("{c:?}").contains("e-secret"));
        let u = User {
            name: "swarmlog_kibana_2".into(),
            password: "k-secret".into(),
            generation: 2,
        };
        let body = user_body(KIBANA, &u);
        assert_eq!(body["roles"], json!(["kibana_system"]));
        assert_eq!(body["metadata"]["generation"], 2);
    }
}
