//! The certificates' part of the security status: each certificate
//! Elasticsearch's service mounts (its end of validity and renewal, never
//! the material), and Degraded when one is due and its renewal does not go
//! through (held, or still not rolled out well after it was due).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use crate::engine::Observed;
use crate::render::desired::DesiredState;
use crate::status::CertificateStatus;
use crate::tls::{Policy, LABEL_NOT_AFTER, LABEL_TLS};

/// How long after its renewal time a certificate may still be in use while
/// its renewal rolls out, before the status calls the renewal blocked.
pub const GRACE: Duration = Duration::from_secs(15 * 60);

/// The rows and the problems, at `now`; `roll_held`: the cluster's members
/// a rolling change holds for their turn.
pub fn status(
    desired: &DesiredState,
    observed: &Observed,
    now: SystemTime,
    roll_held: &[String],
) -> (Vec<CertificateStatus>, Vec<String>) {
    let Some(policy) = desired.tls_policy.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let labels_of = |spec: Option<&HashMap<String, String>>| spec.cloned().unwrap_or_default();
    // The certificates the desired state mounts, by role, and their services.
    let mut wanted: BTreeMap<String, (String, HashMap<String, String>)> = BTreeMap::new();
    for c in &desired.configs {
        let labels = labels_of(c.spec.labels.as_ref());
        if let Some(role) = labels.get(LABEL_TLS) {
            wanted.insert(role.clone(), (c.spec.name.clone().unwrap_or_default(), labels.clone()));
        }
    }
    let users: Vec<&crate::render::desired::DesiredService> = desired
        .services
        .iter()
        .filter(|s| mounted(&s.spec).iter().any(|n| wanted.values().any(|(w, _)| w == n)))
        .collect();
    // What those services mount now, as the engine has them.
    let in_use: Vec<String> = observed
        .services
        .iter()
        .filter(|s| {
            let name = s.spec.as_ref().and_then(|s| s.name.as_deref());
            users.iter().any(|u| u.spec.name.as_deref() == name)
        })
        .flat_map(|s| s.spec.as_ref().map(mounted).unwrap_or_default())
        .collect();
    // Why a service that mounts `name` waits, if one does. A node the
    // rolling change holds for its turn is not blocked: its renewal is under
    // way (late, after GRACE, all the same).
    let held = |name: &str| {
        users.iter().find_map(|u| {
            let service = u.spec.name.as_ref()?;
            let why = desired.held.get(service)?;
            let its_turn = roll_held.contains(service);
            (mounted(&u.spec).iter().any(|n| n == name) && !its_turn).then(|| (u.key.clone(), why.clone()))
        })
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (role, (name, labels)) in &wanted {
        // The one the engine's services mount (while a roll mounts two, the
        // one that ends first).
        let current = observed
            .configs
            .iter()
            .filter_map(|c| {
                let spec = c.spec.as_ref()?;
                let l = spec.labels.as_ref()?;
                let n = spec.name.as_ref()?;
                let end = humantime::parse_rfc3339(l.get(LABEL_NOT_AFTER)?).ok()?;
                (l.get(LABEL_TLS) == Some(role) && in_use.contains(n)).then(|| (end, n.clone(), l.clone()))
            })
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
            .map(|(_, n, l)| (n, l));
        let (shown, rolling) = match &current {
            Some((n, l)) if n != name => (l, true),
            Some((_, l)) => (l, false),
            // Not mounted yet (a first install): the one to come.
            None => (labels, false),
        };
        let Some(row) = row(role, shown, policy, now, rolling, held(name).as_ref()) else {
            continue;
        };
        if let Some(p) = &row.detail {
            if row.state == "expired" || row.state == "blocked" {
                problems.push(p.clone());
            }
        }
        rows.push(row);
    }
    (rows, problems)
}

fn row(
    role: &str,
    labels: &HashMap<String, String>,
    policy: &Policy,
    now: SystemTime,
    rolling: bool,
    held: Option<&(String, String)>,
) -> Option<CertificateStatus> {
    let not_after = humantime::parse_rfc3339(labels.get(LABEL_NOT_AFTER)?).ok()?;
    let renew_at = crate::tls::renew_at(not_after, policy.lead(role));
    let stamp = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let what = if role == crate::tls::CA {
        "swarmlog's CA certificate".to_string()
    } else if let Some(node) = role.strip_prefix(&format!("{}:", crate::tls::NODE)) {
        format!("Elasticsearch node {node}'s certificate")
    } else {
        format!("Elasticsearch's {role} certificate")
    };
    let (state, detail) = if now >= not_after {
        (
            "expired",
            Some(format!(
                "{what} expired at {}: clients refuse Elasticsearch{}",
                stamp(not_after),
                held.map(|(k, why)| format!("; its renewal is held with {k}: {why}"))
                    .unwrap_or_default()
            )),
        )
    } else if now < renew_at {
        (if rolling { "rolling" } else { "ok" }, None)
    } else {
        match held {
            Some((k, why)) => (
                "blocked",
                Some(format!(
                    "{what} is due for renewal since {} and expires at {}: its renewal is held with {k}: {why}",
                    stamp(renew_at),
                    stamp(not_after)
                )),
            ),
            // The next one is desired and rolls out.
            None if rolling && now < renew_at + GRACE => ("rolling", None),
            None if rolling => (
                "blocked",
                Some(format!(
                    "{what} is due for renewal since {} and expires at {}, and Elasticsearch still runs with it",
                    stamp(renew_at),
                    stamp(not_after)
                )),
            ),
            // Due, and no next one desired: the desired state in force was
            // not rendered anew (a values file that does not render keeps
            // the last good one).
            None => (
                "blocked",
                Some(format!(
                    "{what} is due for renewal since {} and expires at {}, and no new one was issued: the desired state in force is an earlier one (see /status invalid)",
                    stamp(renew_at),
                    stamp(not_after)
                )),
            ),
        }
    };
    Some(CertificateStatus {
        role: role.to_string(),
        not_after: stamp(not_after),
        renew_at: stamp(renew_at),
        state: state.to_string(),
        detail,
    })
}

/// The config names a service spec mounts.
fn mounted(spec: &bollard::models::ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.configs.as_ref())
        .map(|cs| cs.iter().filter_map(|c| c.config_name.clone()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed_from(d: &DesiredState) -> Observed {
        Observed {
            services: d
                .services
                .iter()
                .map(|s| bollard::models::Service {
                    spec: Some(s.spec.clone()),
                    ..Default::default()
                })
                .collect(),
            configs: d
                .configs
                .iter()
                .map(|c| bollard::models::Config {
                    spec: Some(c.spec.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn not_after(d: &DesiredState, role: &str) -> SystemTime {
        let c = d.tls_config(role).expect("the certificate");
        humantime::parse_rfc3339(&c.spec.labels.as_ref().expect("labels")[LABEL_NOT_AFTER]).expect("a date")
    }

    #[test]
    fn rows_say_when_each_certificate_ends_and_is_renewed() {
        let d = crate::render::test_desired("");
        let end = not_after(&d, crate::tls::HTTP);
        let (rows, problems) = status(&d, &observed_from(&d), SystemTime::now(), &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let roles: Vec<(&str, &str)> = rows.iter().map(|r| (r.role.as_str(), r.state.as_str())).collect();
        assert_eq!(roles, vec![("ca", "ok"), ("http", "ok")]);
        assert_eq!(rows[1].not_after, humantime::format_rfc3339_seconds(end).to_string());
        assert_eq!(
            rows[1].renew_at,
            humantime::format_rfc3339_seconds(end - Duration::from_secs(30 * 24 * 3600)).to_string()
        );
        let text = serde_json::to_string(&rows).expect("json");
        assert!(!text.contains("BEGIN"), "no material in the status: {text}");
    }

    #[test]
    fn a_due_certificate_is_degraded_only_when_its_renewal_is_held_or_late() {
        let d = crate::render::test_desired("");
        let due = not_after(&d, crate::tls::HTTP) - Duration::from_secs(30 * 24 * 3600);
        // Due, and the next certificate desired (another render): rolling,
        // not Degraded, for a while.
        let mut next = d.clone();
        let http = d.tls_config(crate::tls::HTTP).and_then(|c| c.spec.name.clone());
        for c in &mut next.configs {
            if c.spec.name.is_some() && c.spec.name == http {
                c.spec.name = Some("logging_es_http_crt_renewed".into());
            }
        }
        let (rows, problems) = status(&next, &observed_from(&d), due, &[]);
        assert_eq!(rows[1].state, "rolling");
        assert!(problems.is_empty(), "{problems:?}");
        // Still in use well after: blocked.
        let (rows, problems) = status(&next, &observed_from(&d), due + GRACE, &[]);
        assert_eq!(rows[1].state, "blocked");
        assert!(problems[0].contains("still runs with it"), "{problems:?}");
        // Due with no next one desired (the last good desired state): blocked.
        let (rows, problems) = status(&d, &observed_from(&d), due, &[]);
        assert_eq!(rows[1].state, "blocked");
        assert!(problems[0].contains("no new one was issued"), "{problems:?}");
        // Held (the preflight holds Elasticsearch): blocked at once, with why.
        let mut held = d.clone();
        held.held
            .insert("logging_elasticsearch".into(), "vm.max_map_count is too low".into());
        let (_, problems) = status(&held, &observed_from(&d), due, &[]);
        assert!(
            problems[0].contains("held with elasticsearch: vm.max_map_count"),
            "{problems:?}"
        );
        // Expired.
        let (rows, problems) = status(&d, &observed_from(&d), not_after(&d, crate::tls::HTTP), &[]);
        assert_eq!(rows[1].state, "expired");
        assert!(problems[0].contains("expired"), "{problems:?}");
    }

    #[test]
    fn a_clusters_nodes_each_have_a_row_and_their_turn_in_a_roll_is_not_blocked() {
        use crate::plan::tests_support::node;
        let d = crate::render::test_desired("elasticsearch:\n  topology: cluster\n  preflight:\n    maxMapCount: 0\n");
        let mut o = crate::plan::tests_support::observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        for (id, host) in [("n1", "logger-1"), ("n2", "logger-2"), ("n3", "logger-3")] {
            let mut n = node(id, host, &[("logger", "true")]);
            if let Some(s) = n.spec.as_mut() {
                s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
            }
            o.nodes.push(n);
        }
        let x = crate::plan::cluster::expand(&d, &o, Some("u1"));
        let (rows, problems) = status(&x, &observed_from(&x), SystemTime::now(), &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let roles: Vec<&str> = rows.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "ca",
                "node:logging_es_logger-1",
                "node:logging_es_logger-2",
                "node:logging_es_logger-3"
            ]
        );
        // Due, each node's next certificate desired, two nodes held for
        // their turn by the roll: rolling, not blocked.
        let end = humantime::parse_rfc3339(&rows[1].not_after).expect("a date");
        let due = end - Duration::from_secs(30 * 24 * 3600);
        let mut next = x.clone();
        for c in &mut next.configs {
            if let Some(n) = c.spec.name.as_mut().filter(|n| n.contains("_cert_")) {
                n.push_str("_renewed");
            }
        }
        for s in &mut next.services {
            for r in s
                .spec
                .task_template
                .iter_mut()
                .flat_map(|t| t.container_spec.iter_mut())
                .flat_map(|c| c.configs.iter_mut().flatten())
            {
                if let Some(n) = r.config_name.as_mut().filter(|n| n.contains("_cert_")) {
                    n.push_str("_renewed");
                }
            }
        }
        for m in ["logging_es_logger-2", "logging_es_logger-3"] {
            next.held
                .insert(m.into(), "one node at a time: logging_es_logger-1 first".into());
        }
        let roll: Vec<String> = next.held.keys().cloned().collect();
        let (rows, problems) = status(&next, &observed_from(&x), due, &roll);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(rows[1..].iter().all(|r| r.state == "rolling"), "{rows:?}");
        // The same holds without a roll under way: blocked, with why.
        let (_, problems) = status(&next, &observed_from(&x), due, &[]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("node logging_es_logger-2's certificate"),
            "{problems:?}"
        );
        assert!(problems[0].contains("one node at a time"), "{problems:?}");
    }

    #[test]
    fn security_off_has_no_certificate_rows() {
        let d = crate::render::test_desired("elasticsearch:\n  security: false\n");
        assert_eq!(
            status(&d, &observed_from(&d), SystemTime::now(), &[]),
            (Vec::new(), Vec::new())
        );
    }
}
