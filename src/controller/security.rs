//! The security step of a reconcile (with `elasticsearch.security`): the
//! passwords come from the desired state's credential secrets; the poller
//! reads the users swarmlog keeps (as `elastic`); the leader makes what
//! differs: `kibana_system`'s password, Logstash's role and user. Nothing is
//! written when everything is in force, and nothing that is not swarmlog's
//! is overwritten.

use base64::Engine as _;

use super::Context;
use crate::es::retention::Compare;
use crate::es::security::{
    self as users, Passwords, SecurityRead, ELASTIC, KIBANA_SYSTEM, LOGSTASH_ROLE, LOGSTASH_USER,
};
use crate::render::desired::DesiredState;
use crate::security::LABEL_CREDENTIAL;
use crate::status::{Role, SecurityStatus, UserStatus};

/// The passwords in the desired state's credential secrets (`None`: security off).
pub fn passwords(desired: &DesiredState) -> Option<Passwords> {
    let of = |user: &str| -> Option<String> {
        let s = desired.secrets.iter().find(|s| {
            s.spec
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CREDENTIAL))
                .map(String::as_str)
                == Some(user)
        })?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(s.spec.data.as_deref()?)
            .ok()?;
        String::from_utf8(data).ok()
    };
    Some(Passwords {
        elastic: of(ELASTIC)?,
        kibana_system: of(KIBANA_SYSTEM)?,
        logstash: of(LOGSTASH_USER)?,
    })
}

/// Status, and the writes (leader only); returns the problems.
pub async fn step(
    ctx: &Context,
    role: Role,
    endpoint: Option<&str>,
    read: Option<&SecurityRead>,
    status: &mut SecurityStatus,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(p) = ctx.es.auth() else {
        *status = SecurityStatus::default();
        return problems;
    };
    status.enabled = true;
    let (Some(read), Some(base)) = (read, endpoint) else {
        status.users = [KIBANA_SYSTEM, LOGSTASH_USER]
            .iter()
            .map(|n| UserStatus {
                name: n.to_string(),
                state: "unread".into(),
                detail: None,
            })
            .collect();
        return problems;
    };
    let client = ctx.es.client(ctx.settings.es.timeout);

    // kibana_system: built in; only its password is swarmlog's to set.
    let kibana = match &read.kibana_system {
        Err(e) => user_row(KIBANA_SYSTEM, "unread", Some(e.clone())),
        Ok(true) => user_row(KIBANA_SYSTEM, "in-force", None),
        Ok(false) if !role.writes() => user_row(KIBANA_SYSTEM, "differs", Some("the leader sets it".into())),
        Ok(false) => {
            let path = format!("/_security/user/{KIBANA_SYSTEM}/_password");
            let body = serde_json::json!({ "password": p.kibana_system });
            match client.call(base, "POST", &path, Some(&body)).await {
                Ok(_) => {
                    tracing::info!("elasticsearch: set the password of {KIBANA_SYSTEM} (Kibana's user)");
                    ctx.es.security_written(|r| r.kibana_system = Ok(true));
                    user_row(KIBANA_SYSTEM, "written", None)
                }
                Err(e) => failed(
                    KIBANA_SYSTEM,
                    &format!("setting its password failed: {e}"),
                    &mut problems,
                ),
            }
        }
    };

    // Logstash: the role first, then the user that has it.
    let role_cmp = read
        .role
        .as_ref()
        .map(|r| users::compare_role(r.as_ref()))
        .map_err(Clone::clone);
    let user_cmp = match (&read.user, &read.logstash) {
        (Ok(u), Ok(auth)) => Ok(users::compare_user(u.as_ref(), *auth)),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    let mut detail = Vec::new();
    let mut state = "in-force";
    match role_cmp {
        Err(e) => {
            state = "unread";
            detail.push(format!("the role {LOGSTASH_ROLE} could not be read: {e}"));
        }
        Ok(Compare::Same) => {}
        Ok(Compare::NotOurs) => {
            state = "not-ours";
            let msg = format!(
                "the role {LOGSTASH_ROLE} in Elasticsearch is not swarmlog's (no metadata.managed_by: swarmlog): Logstash's user is not kept; rename or delete the role (DELETE /_security/role/{LOGSTASH_ROLE}) and swarmlog makes its own"
            );
            problems.push(msg.clone());
            detail.push(msg);
        }
        Ok(c) if !role.writes() => {
            state = "differs";
            detail.push(format!("the role {LOGSTASH_ROLE}: {c:?} (the leader writes it)"));
        }
        Ok(c) => {
            let path = format!("/_security/role/{LOGSTASH_ROLE}");
            match client.call(base, "PUT", &path, Some(&users::logstash_role())).await {
                Ok(_) => {
                    tracing::info!("elasticsearch: wrote the role {LOGSTASH_ROLE} ({c:?})");
                    ctx.es.security_written(|r| {
                        r.role = Ok(Some(serde_json::json!({ LOGSTASH_ROLE: users::logstash_role() })))
                    });
                    state = "written";
                }
                Err(e) => {
                    state = "failed";
                    let msg = format!("writing the role {LOGSTASH_ROLE} failed: {e}");
                    problems.push(msg.clone());
                    detail.push(msg);
                }
            }
        }
    }
    // The user only once its role is there (a user of a role that does not
    // exist cannot write).
    if matches!(state, "in-force" | "written") {
        match user_cmp {
            Err(e) => {
                state = "unread";
                detail.push(format!("the user {LOGSTASH_USER} could not be read: {e}"));
            }
            Ok(Compare::Same) => {}
            Ok(Compare::NotOurs) => {
                state = "not-ours";
                let msg = format!(
                    "the user {LOGSTASH_USER} in Elasticsearch is not swarmlog's (no metadata.managed_by: swarmlog): it is left alone, and Logstash cannot log in with swarmlog's password unless it is swarmlog's; delete it (DELETE /_security/user/{LOGSTASH_USER}) and swarmlog makes its own"
                );
                problems.push(msg.clone());
                detail.push(msg);
            }
            Ok(c) if !role.writes() => {
                state = "differs";
                detail.push(format!("the user {LOGSTASH_USER}: {c:?} (the leader writes it)"));
            }
            Ok(c) => {
                let path = format!("/_security/user/{LOGSTASH_USER}");
                match client
                    .call(base, "PUT", &path, Some(&users::logstash_user(&p.logstash)))
                    .await
                {
                    Ok(_) => {
                        let why = match c {
                            Compare::Differs(d) => d,
                            _ => "it had none".into(),
                        };
                        tracing::info!("elasticsearch: wrote the user {LOGSTASH_USER} ({why})");
                        ctx.es.security_written(|r| {
                            r.logstash = Ok(true);
                            r.user = Ok(Some(serde_json::json!({ LOGSTASH_USER: {
                                "roles": [LOGSTASH_ROLE],
                                "enabled": true,
                                "metadata": {"managed_by": crate::es::retention::MANAGED_BY},
                            }})));
                        });
                        state = "written";
                    }
                    Err(e) => {
                        state = "failed";
                        let msg = format!("writing the user {LOGSTASH_USER} failed: {e}");
                        problems.push(msg.clone());
                        detail.push(msg);
                    }
                }
            }
        }
    }
    status.users = vec![
        kibana,
        UserStatus {
            name: LOGSTASH_USER.into(),
            state: state.into(),
            detail: (!detail.is_empty()).then(|| detail.join("; ")),
        },
    ];
    problems
}

fn user_row(name: &str, state: &str, detail: Option<String>) -> UserStatus {
    UserStatus {
        name: name.into(),
        state: state.into(),
        detail,
    }
}

fn failed(name: &str, msg: &str, problems: &mut Vec<String>) -> UserStatus {
    let msg = format!("{name}: {msg}");
    tracing::warn!("elasticsearch: {msg}");
    problems.push(msg.clone());
    user_row(name, "failed", Some(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(d: &DesiredState, key: &str) -> Vec<String> {
        let s = d.services.iter().find(|s| s.key == key).expect("service");
        let c = s
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .expect("container");
        c.secrets
            .iter()
            .flatten()
            .filter_map(|r| r.secret_name.clone())
            .collect()
    }

    fn secret_name(d: &DesiredState, key: &str) -> String {
        d.secrets
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.spec.name.clone())
            .expect("secret")
    }

    #[test]
    fn with_security_each_service_gets_its_own_secret_and_no_password_is_in_a_spec() {
        // test_desired derives every password as "test-password".
        let d = crate::render::test_desired("elasticsearch:\n  security: true\n");
        for s in &d.services {
            let text = serde_json::to_string(&s.spec).expect("json");
            assert!(!text.contains("test-password"), "{} holds a password: {text}", s.key);
        }
        for c in &d.configs {
            let data = base64::engine::general_purpose::STANDARD
                .decode(c.spec.data.as_deref().unwrap_or_default())
                .expect("base64");
            assert!(!String::from_utf8_lossy(&data).contains("test-password"), "{}", c.key);
        }
        assert_eq!(refs(&d, "elasticsearch"), vec![secret_name(&d, "elastic_password")]);
        assert_eq!(refs(&d, "kibana"), vec![secret_name(&d, "kibana_password")]);
        assert_eq!(refs(&d, "logstash"), vec![secret_name(&d, "logstash_password")]);
        let es = d.services.iter().find(|s| s.key == "elasticsearch").expect("es");
        let env = es
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        assert!(env.contains(&"xpack.security.enabled=true".to_string()), "{env:?}");
        assert!(
            env.contains(&"ELASTIC_PASSWORD_FILE=/run/secrets/elastic_password".to_string()),
            "{env:?}"
        );
        // The engine fills the password in on the node, from the secret.
        for (key, needle) in [
            ("kibana_config", r#"{{ secret "kibana_password" }}"#),
            ("logstash_pipeline", r#"{{ secret "logstash_password" }}"#),
        ] {
            let c = d.configs.iter().find(|c| c.key == key).expect("config");
            assert_eq!(
                c.spec.templating.as_ref().map(|t| t.name.as_str()),
                Some("golang"),
                "{key}"
            );
            let data = base64::engine::general_purpose::STANDARD
                .decode(c.spec.data.as_deref().unwrap_or_default())
                .expect("base64");
            assert!(String::from_utf8_lossy(&data).contains(needle), "{key}");
        }
        let p = passwords(&d).expect("the passwords are in the secrets");
        assert_eq!(p.elastic, "test-password");
        assert_eq!(p.logstash, "test-password");
    }

    #[test]
    fn with_security_off_nothing_is_made_and_there_are_no_passwords() {
        let d = crate::render::test_desired("elasticsearch:\n  security: false\n");
        assert!(d.secrets.is_empty());
        assert!(d.configs.iter().all(|c| c.spec.templating.is_none()));
        assert_eq!(passwords(&d), None);
        let es = d.services.iter().find(|s| s.key == "elasticsearch").expect("es");
        let env = es
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        assert!(env.contains(&"xpack.security.enabled=false".to_string()), "{env:?}");
    }
}
