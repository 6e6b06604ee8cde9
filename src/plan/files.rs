//! Plan, files (pure): configs and secrets, through one path. Both are
//! immutable and named by their content: a missing one is created, one of
//! the same name that the stack does not own is a conflict.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{Config, Secret};

use super::{owned_by, Action, Conflict, Inputs, ObjectKind, ObjectRef, Plan, Wanted};
use crate::render::desired::{DesiredConfig, DesiredSecret};

/// A config or secret as observed: name, ID, labels.
pub(super) struct FileObject<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub labels: Option<&'a HashMap<String, String>>,
}

pub(super) fn observed_configs(configs: &[Config]) -> impl Iterator<Item = FileObject<'_>> {
    configs.iter().filter_map(|c| {
        let spec = c.spec.as_ref()?;
        Some(FileObject {
            name: spec.name.as_deref()?,
            id: c.id.as_deref().unwrap_or_default(),
            labels: spec.labels.as_ref(),
        })
    })
}

pub(super) fn observed_secrets(secrets: &[Secret]) -> impl Iterator<Item = FileObject<'_>> {
    secrets.iter().filter_map(|c| {
        let spec = c.spec.as_ref()?;
        Some(FileObject {
            name: spec.name.as_deref()?,
            id: c.id.as_deref().unwrap_or_default(),
            labels: spec.labels.as_ref(),
        })
    })
}

pub(super) fn plan(
    inputs: &Inputs,
    configs: &[DesiredConfig],
    secrets: &[DesiredSecret],
    wanted: &mut Wanted,
    p: &mut Plan,
) {
    let o = inputs.observed;
    wanted.configs = plan_kind(
        inputs,
        ObjectKind::Config,
        configs
            .iter()
            .map(|c| (c.spec.name.clone().unwrap_or_default(), c.spec.clone())),
        observed_configs(&o.configs),
        |name, spec| Action::CreateConfig { name, spec },
        p,
    );
    wanted.secrets = plan_kind(
        inputs,
        ObjectKind::Secret,
        secrets
            .iter()
            .map(|c| (c.spec.name.clone().unwrap_or_default(), c.spec.clone())),
        observed_secrets(&o.secrets),
        |name, spec| Action::CreateSecret { name, spec },
        p,
    );
}

/// Returns the wanted names.
fn plan_kind<'a, S>(
    inputs: &Inputs,
    kind: ObjectKind,
    desired: impl Iterator<Item = (String, S)>,
    observed: impl Iterator<Item = FileObject<'a>>,
    create: impl Fn(String, S) -> Action,
    p: &mut Plan,
) -> BTreeSet<String> {
    let owned: HashMap<&str, bool> = observed.map(|f| (f.name, owned_by(f.labels, inputs.stack))).collect();
    let mut names = BTreeSet::new();
    for (name, spec) in desired {
        names.insert(name.clone());
        match owned.get(name.as_str()) {
            None => p.actions.push(create(name, spec)),
            Some(false) if !inputs.opts.adopt => p.conflicts.push(Conflict {
                object: ObjectRef::new(kind, name),
                stack: inputs.stack.to_string(),
            }),
            Some(_) => p.in_sync.push(ObjectRef::new(kind, name)),
        }
    }
    names
}
