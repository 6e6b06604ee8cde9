//! The security step of a reconcile (with `elasticsearch.security`): the
//! passwords come from the desired state (derived from the root key); the
//! poller reads the users swarmlog keeps (as `elastic`); the leader makes
//! what differs. Nothing is written when everything is in force, and nothing
//! that is not swarmlog's is overwritten.
//!
//! A rotation (a credential's next generation) goes: the next user is made
//! (Kibana's and Logstash's) or `elastic`'s password set; only then may
//! Kibana or Logstash be updated onto the new secret (until then the update
//! is held); the user of the earlier generation is removed once no running
//! task uses its secret. Both users log in while the service rolls.

use std::collections::BTreeSet;

use super::Context;
use crate::engine::Observed;
use crate::es::retention::Compare;
use crate::es::security::{self as users, SecurityRead, UserRead, ELASTIC, KIBANA, LOGSTASH, LOGSTASH_ROLE};
use crate::render::desired::DesiredState;
use crate::security::{Credentials, LABEL_CREDENTIAL};
use crate::status::{Role, SecurityStatus, UserStatus};

/// What the step looks at.
pub struct Seen<'a> {
    /// The address that answered the poller's last read.
    pub endpoint: Option<&'a str>,
    pub read: Option<&'a SecurityRead>,
    /// Why the operator has no path to Elasticsearch, if it has none.
    pub no_path: Option<&'a str>,
    pub observed: &'a Observed,
    /// The cluster's members a rolling change holds for their turn.
    pub roll_held: &'a [String],
}

/// The desired secret holding credential `logical`.
fn credential_secret<'a>(
    desired: &'a DesiredState,
    logical: &str,
) -> Option<&'a crate::render::desired::DesiredSecret> {
    desired.secrets.iter().find(|s| {
        s.spec
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_CREDENTIAL))
            .map(String::as_str)
            == Some(logical)
    })
}

/// The name of the desired secret holding credential `logical`.
fn secret_of<'a>(desired: &'a DesiredState, logical: &str) -> Option<&'a str> {
    credential_secret(desired, logical).and_then(|s| s.spec.name.as_deref())
}

/// The desired services that mount secret `name`.
fn consumers(desired: &DesiredState, name: &str) -> Vec<String> {
    desired
        .services
        .iter()
        .filter(|s| mounts(s.spec.task_template.as_ref()).contains(name))
        .filter_map(|s| s.spec.name.clone())
        .collect()
}

/// The secret names a service spec mounts.
fn mounts(spec: Option<&bollard::models::TaskSpec>) -> BTreeSet<String> {
    spec.and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.secrets.as_ref())
        .map(|l| l.iter().filter_map(|r| r.secret_name.clone()).collect())
        .unwrap_or_default()
}

/// Whether a task still alive mounts an earlier secret of credential
/// `logical`: one named as its secrets are (`<stack>_<key>_<hash>`) but not
/// the current. By the name the task holds (the earlier secret itself may be
/// gone already, removed once no service names it), and from the tasks of
/// the services that mount it read whole: a task swarm is stopping (its
/// desired state no longer running) may still answer with the old user.
async fn earlier_in_use(ctx: &Context, desired: &DesiredState, logical: &str) -> Result<bool, String> {
    let Some(secret) = credential_secret(desired, logical) else {
        return Ok(false);
    };
    let current = secret.spec.name.clone().unwrap_or_default();
    let prefix = format!("{}_{}_", desired.stack, secret.key);
    for name in consumers(desired, &current) {
        let tasks = ctx
            .engine
            .service_tasks(&name, false)
            .await
            .map_err(|e| format!("reading the tasks of {name}: {e}"))?;
        let alive = tasks.iter().filter(|t| {
            use bollard::models::TaskState as S;
            !matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(S::COMPLETE | S::SHUTDOWN | S::FAILED | S::REJECTED | S::REMOVE | S::ORPHANED)
            )
        });
        if alive
            .flat_map(|t| mounts(t.spec.as_ref()))
            .any(|m| m.starts_with(&prefix) && m != current)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn row(name: &str, state: &str, detail: Option<String>) -> UserStatus {
    UserStatus {
        name: name.into(),
        state: state.into(),
        detail,
    }
}

/// Status, the writes (leader only) and the holds; returns the problems.
pub async fn step(
    ctx: &Context,
    role: Role,
    seen: Seen<'_>,
    desired: &mut DesiredState,
    status: &mut SecurityStatus,
) -> Vec<String> {
    let (certificates, mut problems) =
        super::certificates::status(desired, seen.observed, std::time::SystemTime::now(), seen.roll_held);
    status.certificates = certificates;
    let Some(creds) = desired.credentials.clone() else {
        *status = SecurityStatus {
            certificates: std::mem::take(&mut status.certificates),
            ..SecurityStatus::default()
        };
        return problems;
    };
    status.enabled = true;
    let (Some(read), Some(base)) = (seen.read, seen.endpoint) else {
        // As for the health without a path: said, not Degraded (the
        // operator may run where it cannot reach Elasticsearch by design).
        status.note = seen.no_path.map(|why| {
            format!(
                "Kibana and Logstash cannot log in until the operator makes their users in Elasticsearch, and it cannot reach it: {why}"
            )
        });
        status.users = [ELASTIC, creds.kibana.name.as_str(), creds.logstash.name.as_str()]
            .iter()
            .map(|n| row(n, "unread", None))
            .collect();
        hold_consumers(desired, seen.observed, &creds, &[], "Elasticsearch cannot be read");
        return problems;
    };
    let client = ctx.es.client(ctx.settings.es.timeout);
    let mut rows = Vec::new();

    // elastic: the newest generation's password, set with the one in force.
    let want = creds.elastic.len() as u32;
    // A read that began before this operator set the password says the
    // earlier generation: what the operator itself recorded stands.
    let in_force = match (read.elastic, ctx.es.elastic_generation()) {
        (Some(g), recorded) if recorded > g => Some(recorded),
        (g, _) => g,
    };
    let elastic = match in_force {
        Some(g) if g == want => row(ELASTIC, "in-force", Some(format!("generation {g}"))),
        Some(g) if !role.writes() => row(
            ELASTIC,
            "differs",
            Some(format!(
                "generation {g} in force, {want} asked for (the leader sets it)"
            )),
        ),
        Some(g) => {
            let body = serde_json::json!({ "password": creds.elastic() });
            match client
                .call(base, "POST", "/_security/user/elastic/_password", Some(&body))
                .await
            {
                Ok(_) => {
                    tracing::info!("elasticsearch: elastic's password is now generation {want} (was {g})");
                    ctx.es.set_elastic_generation(want);
                    ctx.es.security_written(|r| r.elastic = Some(want));
                    row(ELASTIC, "written", Some(format!("generation {want}")))
                }
                Err(e) => {
                    let msg = format!("setting elastic's password (generation {want}) failed: {e}");
                    problems.push(msg.clone());
                    row(ELASTIC, "failed", Some(msg))
                }
            }
        }
        None => {
            let msg = format!(
                "elastic logs in with none of swarmlog's passwords (generations 1 to {want}): was it changed by hand? The operator cannot keep the users"
            );
            problems.push(msg.clone());
            row(ELASTIC, "failed", Some(msg))
        }
    };
    rows.push(elastic);

    // Logstash's role, before its user.
    let mut role_ok = true;
    match read.role.as_ref().map(|r| users::compare_role(r.as_ref())) {
        Err(e) => {
            role_ok = false;
            rows.push(row(LOGSTASH_ROLE, "unread", Some(e.clone())));
        }
        Ok(Compare::Same) => rows.push(row(LOGSTASH_ROLE, "in-force", None)),
        Ok(Compare::NotOurs) => {
            role_ok = false;
            let msg = format!(
                "the role {LOGSTASH_ROLE} in Elasticsearch is not swarmlog's (no metadata.managed_by: swarmlog): Logstash's user is not made; rename or delete the role (DELETE /_security/role/{LOGSTASH_ROLE}) and swarmlog makes its own"
            );
            problems.push(msg.clone());
            rows.push(row(LOGSTASH_ROLE, "not-ours", Some(msg)));
        }
        Ok(c) if !role.writes() => {
            role_ok = false;
            rows.push(row(
                LOGSTASH_ROLE,
                "differs",
                Some(format!("{c:?} (the leader writes it)")),
            ));
        }
        Ok(c) => {
            let path = format!("/_security/role/{LOGSTASH_ROLE}");
            match client.call(base, "PUT", &path, Some(&users::logstash_role())).await {
                Ok(_) => {
                    tracing::info!("elasticsearch: wrote the role {LOGSTASH_ROLE} ({c:?})");
                    ctx.es.security_written(|r| {
                        r.role = Ok(Some(serde_json::json!({ LOGSTASH_ROLE: users::logstash_role() })))
                    });
                    rows.push(row(LOGSTASH_ROLE, "written", None));
                }
                Err(e) => {
                    role_ok = false;
                    let msg = format!("writing the role {LOGSTASH_ROLE} failed: {e}");
                    problems.push(msg.clone());
                    rows.push(row(LOGSTASH_ROLE, "failed", Some(msg)));
                }
            }
        }
    }

    // Kibana's and Logstash's users of the generation asked for.
    let mut ready = Vec::new();
    for (logical, user, r) in [
        (KIBANA, &creds.kibana, &read.kibana),
        (LOGSTASH, &creds.logstash, &read.logstash),
    ] {
        if logical == LOGSTASH && !role_ok {
            rows.push(row(
                &user.name,
                "waiting",
                Some(format!("for the role {LOGSTASH_ROLE}")),
            ));
            continue;
        }
        let state = user_state(ctx, role, base, &client, logical, user, r, &mut problems).await;
        if matches!(state.state.as_str(), "in-force" | "written") {
            ready.push(logical);
        }
        rows.push(state);
    }

    // Users of earlier generations: removed once nothing runs with them.
    match &read.others {
        Err(e) => rows.push(row("(earlier users)", "unread", Some(e.clone()))),
        Ok(others) => {
            for name in others {
                let Some((logical, g)) = crate::security::parse_username(name) else {
                    continue;
                };
                let current = creds.user(logical).map_or(0, |u| u.generation);
                if g > current {
                    // A later generation than asked for: not swarmlog's to remove.
                    rows.push(row(name, "later", Some(format!("generation {current} is asked for"))));
                    continue;
                }
                match earlier_in_use(ctx, desired, logical).await {
                    Ok(false) => {}
                    Ok(true) => {
                        rows.push(row(name, "retiring", Some("tasks still run with it".into())));
                        continue;
                    }
                    Err(e) => {
                        rows.push(row(name, "retiring", Some(e)));
                        continue;
                    }
                }
                if !role.writes() {
                    rows.push(row(name, "retiring", Some("the leader removes it".into())));
                    continue;
                }
                let path = format!("/_security/user/{name}");
                match client.call(base, "DELETE", &path, None).await {
                    Ok(_) => {
                        tracing::info!("elasticsearch: removed the user {name} (generation {g}; {current} is in use)");
                        ctx.es.security_written(|r| {
                            if let Ok(o) = r.others.as_mut() {
                                o.retain(|n| n != name);
                            }
                        });
                        rows.push(row(name, "removed", None));
                    }
                    Err(e) => {
                        let msg = format!("removing the earlier user {name} failed: {e}");
                        problems.push(msg.clone());
                        rows.push(row(name, "failed", Some(msg)));
                    }
                }
            }
        }
    }
    hold_consumers(
        desired,
        seen.observed,
        &creds,
        &ready,
        "its Elasticsearch user is not made yet",
    );
    status.users = rows;
    problems
}

/// One user: compared, and made when it is missing or differs (leader).
#[allow(clippy::too_many_arguments)]
async fn user_state(
    ctx: &Context,
    role: Role,
    base: &str,
    client: &crate::es::client::Client,
    logical: &str,
    user: &crate::security::User,
    r: &UserRead,
    problems: &mut Vec<String>,
) -> UserStatus {
    let cmp = match (&r.user, &r.authenticates) {
        (Ok(u), Ok(auth)) => users::compare_user(logical, &user.name, u.as_ref(), *auth),
        (Err(e), _) | (_, Err(e)) => return row(&user.name, "unread", Some(e.clone())),
    };
    match cmp {
        Compare::Same => row(&user.name, "in-force", None),
        Compare::NotOurs => {
            let msg = format!(
                "the user {} in Elasticsearch is not swarmlog's (no metadata.managed_by: swarmlog): it is left alone; delete it (DELETE /_security/user/{}) and swarmlog makes its own",
                user.name, user.name
            );
            problems.push(msg.clone());
            row(&user.name, "not-ours", Some(msg))
        }
        c if !role.writes() => row(&user.name, "differs", Some(format!("{c:?} (the leader writes it)"))),
        c => {
            let path = format!("/_security/user/{}", user.name);
            match client
                .call(base, "PUT", &path, Some(&users::user_body(logical, user)))
                .await
            {
                Ok(_) => {
                    let why = match c {
                        Compare::Differs(d) => d,
                        _ => "it had none".into(),
                    };
                    tracing::info!("elasticsearch: wrote the user {} ({why})", user.name);
                    let name = user.name.clone();
                    let held = serde_json::json!({ name.clone(): {
                        "roles": [users::role_of(logical)],
                        "enabled": true,
                        "metadata": {"managed_by": crate::es::retention::MANAGED_BY},
                    }});
                    ctx.es.security_written(|r| {
                        let u = if logical == KIBANA {
                            &mut r.kibana
                        } else {
                            &mut r.logstash
                        };
                        u.user = Ok(Some(held));
                        u.authenticates = Ok(true);
                    });
                    row(&user.name, "written", None)
                }
                Err(e) => {
                    let msg = format!("writing the user {} failed: {e}", user.name);
                    problems.push(msg.clone());
                    row(&user.name, "failed", Some(msg))
                }
            }
        }
    }
}

/// A service that runs and would move onto a credential's new secret waits
/// until that credential's user is made (`ready`): a new Kibana never
/// starts with a user Elasticsearch does not know. A service being created
/// is not held (nothing runs yet), nor one whose secret stays.
fn hold_consumers(desired: &mut DesiredState, observed: &Observed, creds: &Credentials, ready: &[&str], why: &str) {
    for logical in [KIBANA, LOGSTASH] {
        if ready.contains(&logical) {
            continue;
        }
        let Some(secret) = secret_of(desired, logical).map(str::to_string) else {
            continue;
        };
        let user = creds.user(logical).map(|u| u.name.clone()).unwrap_or_default();
        for name in consumers(desired, &secret) {
            let running = observed
                .services
                .iter()
                .filter_map(|s| s.spec.as_ref())
                .find(|s| s.name.as_deref() == Some(name.as_str()));
            let Some(running) = running else { continue };
            if mounts(running.task_template.as_ref()).contains(&secret) {
                continue;
            }
            desired
                .held
                .entry(name)
                .or_insert_with(|| format!("waits for the Elasticsearch user {user} of its new credential: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn refs(d: &DesiredState, key: &str) -> Vec<String> {
        let s = d.services.iter().find(|s| s.key == key).expect("service");
        mounts(s.spec.task_template.as_ref()).into_iter().collect()
    }

    fn secret_name(d: &DesiredState, key: &str) -> String {
        d.secrets
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.spec.name.clone())
            .expect("secret")
    }

    fn env(d: &DesiredState, key: &str) -> Vec<String> {
        let s = d.services.iter().find(|s| s.key == key).expect("service");
        s.spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
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
        assert_eq!(
            refs(&d, "elasticsearch"),
            vec![secret_name(&d, "elastic_password"), secret_name(&d, "es_http_key")]
        );
        assert_eq!(refs(&d, "kibana"), vec![secret_name(&d, "kibana_password")]);
        assert_eq!(refs(&d, "logstash"), vec![secret_name(&d, "logstash_password")]);
        let es = env(&d, "elasticsearch");
        assert!(es.contains(&"xpack.security.enabled=true".to_string()), "{es:?}");
        assert!(
            es.contains(&"ELASTIC_PASSWORD_FILE=/run/secrets/elastic_password".to_string()),
            "{es:?}"
        );
        // The users of generation 1, by name in the environment (a name is
        // no secret); the engine puts the password in on the node.
        assert!(env(&d, "kibana").contains(&"ELASTICSEARCH_USERNAME=swarmlog_kibana_1".to_string()));
        assert!(env(&d, "logstash").contains(&"SWARMLOG_ES_USER=swarmlog_logstash_1".to_string()));
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
    }

    #[test]
    fn with_security_off_nothing_is_made() {
        let d = crate::render::test_desired("elasticsearch:\n  security: false\n");
        assert!(d.secrets.is_empty());
        assert!(d.configs.iter().all(|c| c.spec.templating.is_none()));
        assert!(env(&d, "elasticsearch").contains(&"xpack.security.enabled=false".to_string()));
    }

    #[test]
    fn a_running_consumer_waits_for_the_user_of_its_new_secret_a_new_one_does_not() {
        let creds = Credentials::derive(
            &crate::security::RootKey::from_bytes(b"0123456789abcdef0123456789abcdef").expect("key"),
            "logging",
            &std::collections::BTreeMap::from([("kibana".to_string(), 2)]),
        );
        let before = crate::render::test_desired("elasticsearch:\n  security: true\n");
        // Kibana runs on generation 1's secret; generation 2's is wanted.
        let mut after = before.clone();
        for s in &mut after.secrets {
            if s.key == "kibana_password" {
                s.spec.name = Some("logging_kibana_password_g2".into());
            }
        }
        for s in &mut after.services {
            let c = s.spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut());
            for r in c.and_then(|c| c.secrets.as_mut()).into_iter().flatten() {
                if r.secret_name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("logging_kibana_password"))
                {
                    r.secret_name = Some("logging_kibana_password_g2".into());
                }
            }
        }
        let observed = crate::plan::tests_support::observed_from(&before);
        let mut d = after.clone();
        hold_consumers(&mut d, &observed, &creds, &[LOGSTASH], "not made");
        assert!(
            d.held
                .get("logging_kibana")
                .is_some_and(|w| w.contains("swarmlog_kibana_2")),
            "{:?}",
            d.held
        );
        assert!(!d.held.contains_key("logging_logstash"));
        // Made: nothing waits.
        let mut d = after.clone();
        hold_consumers(&mut d, &observed, &creds, &[KIBANA, LOGSTASH], "not made");
        assert!(d.held.is_empty());
        // Nothing runs yet: created at once.
        let mut empty = observed.clone();
        empty.services.clear();
        let mut d = after;
        hold_consumers(&mut d, &empty, &creds, &[], "not made");
        assert!(d.held.is_empty());
    }
}
