//! Plan, convergence (pure): no update loops. After swarmlog updates a
//! service, the next observation must not differ in the same fields the
//! same way (same desired spec); if it does, the engine keeps something
//! other than what swarmlog writes, so writing again would loop forever.
//! Such an update is held back as not converging until the desired spec or
//! the live spec changes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Action, Change, Plan};

/// A service whose last update did not stick: not written again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotConverging {
    pub service: String,
    /// The fields the engine keeps differently from what was written.
    pub fields: Vec<String>,
}

impl std::fmt::Display for NotConverging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {} does not converge: after swarmlog's update the engine still differs in {}; not written again until the desired or the live spec changes",
            self.service,
            self.fields.join(", ")
        )
    }
}

/// What swarmlog last wrote per service: the desired hash and the change it
/// made, as planned from the observation before the write.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    written: BTreeMap<String, (String, Vec<Change>)>,
}

impl Memory {
    /// Records an update of `service` from desired `hash` that made `changes`.
    pub fn after_write(&mut self, service: &str, hash: &str, changes: &[Change]) {
        self.written
            .insert(service.to_string(), (hash.to_string(), changes.to_vec()));
    }

    /// Moves the updates that would repeat the last write of their service
    /// (same desired hash, same changes) out of the plan into
    /// `not_converging`. `hash_of` gives a service's desired hash.
    pub fn hold_back(&self, plan: &mut Plan, hash_of: &dyn Fn(&str) -> Option<String>) {
        let mut kept = Vec::new();
        for a in std::mem::take(&mut plan.actions) {
            if let Action::UpdateService { name, changes, .. } = &a {
                let repeats = self
                    .written
                    .get(name)
                    .is_some_and(|(h, c)| hash_of(name).as_deref() == Some(h.as_str()) && c == changes);
                if repeats {
                    plan.not_converging.push(NotConverging {
                        service: name.clone(),
                        fields: changes.iter().map(|c| c.field.clone()).collect(),
                    });
                    continue;
                }
            }
            kept.push(a);
        }
        plan.actions = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(name: &str, to: i64) -> Action {
        Action::UpdateService {
            name: name.into(),
            id: "id".into(),
            version: 1,
            reason: super::super::Reason::Drifted,
            changes: vec![Change {
                field: "TaskTemplate.ContainerSpec.StopGracePeriod".into(),
                from: Some(json!(1)),
                to: Some(json!(to)),
            }],
            spec: Default::default(),
        }
    }

    fn plan_of(a: Action) -> Plan {
        Plan {
            actions: vec![a],
            ..Plan::default()
        }
    }

    #[test]
    fn a_write_that_does_not_stick_is_held_until_something_changes() {
        let mut m = Memory::default();
        let hash = |_: &str| Some("h1".to_string());
        // First time: written.
        let mut p = plan_of(update("s", 5));
        m.hold_back(&mut p, &hash);
        assert_eq!(p.actions.len(), 1);
        if let Action::UpdateService { changes, .. } = &p.actions[0] {
            m.after_write("s", "h1", changes);
        }
        // The next observation differs the same way: held, named.
        let mut p = plan_of(update("s", 5));
        m.hold_back(&mut p, &hash);
        assert!(p.actions.is_empty());
        assert_eq!(p.not_converging.len(), 1);
        assert_eq!(
            p.not_converging[0].fields,
            ["TaskTemplate.ContainerSpec.StopGracePeriod"]
        );
        assert!(p.not_converging[0].to_string().contains("does not converge"));
        // A new desired spec: written again.
        let mut p = plan_of(update("s", 6));
        m.hold_back(&mut p, &|_| Some("h2".to_string()));
        assert_eq!(p.actions.len(), 1);
        // The live spec changed (another from-value): written again.
        let mut p = plan_of(update("s", 5));
        if let Action::UpdateService { changes, .. } = &mut p.actions[0] {
            changes[0].from = Some(json!(2));
        }
        m.hold_back(&mut p, &hash);
        assert_eq!(p.actions.len(), 1);
        // Another service is not affected.
        let mut p = plan_of(update("t", 5));
        m.hold_back(&mut p, &hash);
        assert_eq!(p.actions.len(), 1);
    }
}
