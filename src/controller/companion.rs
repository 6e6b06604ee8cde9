//! Controller step: keeps the Let's Encrypt companion's `DOMAIN_*` in step
//! with the desired domain groups, keeping every group the user wrote.
//! Patches only that environment and swarmlog's own `io.swarmlog.domains`
//! label, version checked, after the settle window, and never when nothing
//! changed.

use std::time::Duration;

use bollard::models::{Service, ServiceSpec};
use tokio::time::Instant;

use super::Context;
use crate::clock::now;
use crate::engine::{EngineError, Observed, WriteKind};
use crate::letsencrypt::{self, Decision, DomainSource, Pending};
use crate::render::desired::{DesiredState, LABEL_COMPANION, LABEL_STACK};

/// State kept between reconciles.
#[derive(Debug, Default)]
pub struct State {
    pub pending: Option<Pending<Instant>>,
    /// The companion's label could not be read (reported once).
    pub label_error: Option<String>,
    /// What the last read of every service found by image: between such
    /// reads the found one is read by name (see `Memory::scope`).
    pub by_image: ImageScan,
    /// The last answer by image may be stale: read every service next time.
    pub rescan: bool,
}

/// The companion looked for by its image, as the last read of every service found it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum ImageScan {
    #[default]
    NotYet,
    Found(String),
    Missing,
    Ambiguous(String),
}

impl State {
    /// The name of the companion found by image, to read it by name.
    pub fn found_by_image(&self) -> Option<&str> {
        match &self.by_image {
            ImageScan::Found(name) => Some(name),
            _ => None,
        }
    }
}

/// Finds the companion as [`find`] does; by image, only on a read of every
/// service. Between such reads, the last answer holds while this read
/// agrees with it: `named` (IDs of services outside the stack that this
/// reconcile's events named) holds none that runs the image or is gone,
/// and a service found is still there. Else it asks for a read of every
/// service (`state.rescan`).
pub fn locate<'a>(
    desired: &DesiredState,
    observed: &'a Observed,
    named: &[String],
    state: &mut State,
) -> Result<Option<&'a Service>, String> {
    let le = &desired.letsencrypt;
    if !le.service.is_empty() || observed.services.iter().any(|s| labelled_for(s, &desired.stack)) {
        state.rescan = false;
        return find(desired, observed);
    }
    if observed.services_scanned {
        state.rescan = false;
        let found = find(desired, observed);
        state.by_image = match &found {
            Ok(Some(s)) => ImageScan::Found(name_of(s).to_string()),
            Ok(None) => ImageScan::Missing,
            Err(e) => ImageScan::Ambiguous(e.clone()),
        };
        return found;
    }
    let runs = |s: &Service| crate::engine::observe::runs_image(s, &le.image);
    let changed = named.iter().any(|id| {
        observed
            .services
            .iter()
            .find(|s| s.id.as_deref() == Some(id.as_str()))
            .is_none_or(runs)
    });
    let found = match &state.by_image {
        ImageScan::Found(name) => observed.services.iter().find(|s| name_of(s) == name && runs(s)),
        _ => None,
    };
    let gone = matches!(state.by_image, ImageScan::Found(_)) && found.is_none();
    if changed || gone || state.by_image == ImageScan::NotYet {
        state.rescan = true;
    }
    match &state.by_image {
        ImageScan::Ambiguous(e) => Err(e.clone()),
        _ => Ok(found),
    }
}

fn name_of(s: &Service) -> &str {
    s.spec.as_ref().and_then(|s| s.name.as_deref()).unwrap_or_default()
}

fn labels_of(s: &Service) -> std::collections::HashMap<String, String> {
    s.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default()
}

fn env_of(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
}

/// A companion the user labelled for `stack`.
fn labelled_for(s: &Service, stack: &str) -> bool {
    let l = labels_of(s);
    l.contains_key(LABEL_COMPANION) && l.get(LABEL_STACK).map(String::as_str) == Some(stack)
}

/// Finds the companion: by name, else by the companion label of this stack,
/// else by image (exactly one).
pub fn find<'a>(desired: &DesiredState, observed: &'a Observed) -> Result<Option<&'a Service>, String> {
    let le = &desired.letsencrypt;
    if !le.service.is_empty() {
        return Ok(observed.services.iter().find(|s| name_of(s) == le.service));
    }
    if let Some(s) = observed.services.iter().find(|s| labelled_for(s, &desired.stack)) {
        return Ok(Some(s));
    }
    let by_image: Vec<&Service> = observed
        .services
        .iter()
        .filter(|s| crate::engine::observe::runs_image(s, &le.image))
        .collect();
    match by_image.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(format!(
            "{} services run {} ({}); set letsencrypt.service to the one to manage",
            many.len(),
            le.image,
            many.iter().map(|s| name_of(s)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The services whose `com.df.serviceDomain` the companion serves: the
/// stack's own (as desired), and any other service that opts in.
pub fn sources(desired: &DesiredState, observed: &Observed) -> Vec<DomainSource> {
    let mut out = Vec::new();
    let ours: Vec<String> = desired.services.iter().filter_map(|d| d.spec.name.clone()).collect();
    for d in &desired.services {
        if let Some(domain) = d.spec.labels.as_ref().and_then(|l| l.get(letsencrypt::LABEL_DOMAIN)) {
            out.push(DomainSource {
                service: d.spec.name.clone().unwrap_or_default(),
                service_domain: domain.clone(),
            });
        }
    }
    for s in &observed.services {
        let name = name_of(s).to_string();
        if ours.contains(&name) {
            continue;
        }
        let l = labels_of(s);
        if l.get(letsencrypt::LABEL_OPT_IN).map(String::as_str) == Some("true") {
            if let Some(domain) = l.get(letsencrypt::LABEL_DOMAIN) {
                out.push(DomainSource {
                    service: name,
                    service_domain: domain.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

/// One companion step. Returns when to look again (while a change settles).
pub async fn step(
    ctx: &Context,
    desired: &DesiredState,
    observed: &Observed,
    named: &[String],
    writes: bool,
    state: &mut State,
) -> Result<Option<Duration>, EngineError> {
    let le = &desired.letsencrypt;
    if !le.enabled {
        return Ok(None);
    }
    let (groups, refused) = letsencrypt::desired_groups(&le.domains, &sources(desired, observed));
    let companion = locate(desired, observed, named, state);
    if state.rescan {
        // Read every service at once, not at the next resync.
        let _ = ctx.trigger.try_send(super::triggers::Trigger::Recheck);
    }
    let companion = match companion {
        Ok(c) => c,
        Err(e) => {
            ctx.update_status(|st| st.companion.error = Some(e.clone()));
            return Ok(None);
        }
    };
    ctx.update_status(|st| {
        let c = &mut st.companion;
        if c.refused != refused {
            for r in refused.iter().filter(|r| !c.refused.contains(r)) {
                tracing::warn!(name = %r.name, service = %r.source.service, label = %r.source.label, reason = %r.reason, "domain refused");
            }
            if !refused.is_empty() {
                let list: Vec<String> = refused.iter().map(|r| format!("{} from {} {} ({})", r.name, r.source.service, r.source.label, r.reason)).collect();
                st.events_push("companion", format!("refused: {}", list.join("; ")));
            }
        }
        let c = &mut st.companion;
        c.refused = refused.clone();
        c.desired = groups.clone();
        c.owned = groups.clone();
        c.service = companion.map(|s| name_of(s).to_string());
        c.error = None;
    });
    let Some(companion) = companion else {
        ctx.update_status(|st| st.companion.error = Some("no companion service found".to_string()));
        return Ok(None);
    };
    let spec = companion.spec.clone().unwrap_or_default();
    let env = env_of(&spec);
    let current = letsencrypt::current_groups(&env);
    let label = spec.labels.as_ref().and_then(|l| l.get(letsencrypt::LABEL_OWNED));
    // An unreadable label owns nothing: the user's groups are never taken for ours.
    let (owned, label_error) = match letsencrypt::owned_from_label(label.map(String::as_str)) {
        Ok(owned) => (owned, None),
        Err(e) => (Vec::new(), Some(format!("{}: {e}", name_of(companion)))),
    };
    let merged = letsencrypt::merge(&env, &owned, &groups);
    ctx.update_status(|st| {
        let c = &mut st.companion;
        c.serving = letsencrypt::canonical(&current);
        c.desired = letsencrypt::canonical(&merged.groups);
        c.owned = merged.ours.clone();
        c.error = label_error.clone();
    });
    if state.label_error != label_error {
        if let Some(e) = &label_error {
            tracing::warn!(error = %e, "companion label unreadable; its groups are kept as the user's");
            ctx.update_status(|st| st.events_push("companion", e.clone()));
        }
        state.label_error = label_error;
    }
    let decision = letsencrypt::decide(
        &merged.groups,
        &current,
        &mut state.pending,
        Instant::now(),
        le.settle,
        |a, b| b.saturating_duration_since(*a),
    );
    ctx.update_status(|st| st.companion.pending = state.pending.is_some());
    match decision {
        Decision::InSync => Ok(None),
        Decision::Wait(d) => Ok(Some(d)),
        Decision::Patch if !writes => Ok(None),
        Decision::Patch => {
            let name = name_of(companion).to_string();
            let id = companion.id.clone().unwrap_or_default();
            let version = companion.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let mut new_spec = spec.clone();
            if let Some(c) = new_spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                c.env = Some(merged.env.clone());
            }
            // What swarmlog owns, in the same version-checked update; no other label is touched.
            match letsencrypt::owned_label(&merged.ours) {
                Some(v) => {
                    new_spec
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(letsencrypt::LABEL_OWNED.to_string(), v);
                }
                None => {
                    if let Some(l) = new_spec.labels.as_mut() {
                        l.remove(letsencrypt::LABEL_OWNED);
                    }
                }
            }
            ctx.engine
                .update_service(&name, &id, version, new_spec, WriteKind::CompanionUpdate)
                .await?;
            let shown: Vec<String> = merged.groups.iter().map(|g| g.join(" ")).collect();
            tracing::info!(service = %name, domains = %shown.join("; "), "patched companion");
            ctx.update_status(|st| {
                st.companion.last_patch = Some(now());
                st.companion.patches += 1;
                st.events_push("companion", format!("patched {name}: {}", shown.join("; ")));
            });
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{TaskSpec, TaskSpecContainerSpec};

    fn desired() -> DesiredState {
        crate::render::test_desired("")
    }

    fn svc(id: &str, name: &str, image: &str, labels: &[(&str, &str)]) -> Service {
        Service {
            id: Some(id.into()),
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(image.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn observed(scanned: bool, services: Vec<Service>) -> Observed {
        Observed {
            services,
            services_scanned: scanned,
            ..Default::default()
        }
    }

    const LE: &str = "hamburml/docker-flow-letsencrypt:v1";

    fn found<'a>(r: &Result<Option<&'a Service>, String>) -> Option<&'a str> {
        r.as_ref().ok().and_then(|s| s.map(name_of))
    }

    #[test]
    fn by_image_only_on_a_read_of_every_service() {
        let d = desired();
        let mut st = State::default();
        // Before any read of every service: nothing, and ask for one.
        let o = observed(false, Vec::new());
        assert_eq!(found(&locate(&d, &o, &[], &mut st)), None);
        assert!(st.rescan);
        // The read of every service finds one by image.
        let o = observed(true, vec![svc("1", "le", LE, &[]), svc("2", "web", "nginx", &[])]);
        assert_eq!(found(&locate(&d, &o, &[], &mut st)), Some("le"));
        assert_eq!(st.by_image, ImageScan::Found("le".into()));
        assert!(!st.rescan);
        // Between reads: the one found, read by name.
        let o = observed(false, vec![svc("1", "le", LE, &[])]);
        assert_eq!(found(&locate(&d, &o, &[], &mut st)), Some("le"));
        assert!(!st.rescan);
        // An event named an unrelated service: the answer holds.
        let o = observed(false, vec![svc("1", "le", LE, &[]), svc("2", "web", "nginx", &[])]);
        assert_eq!(found(&locate(&d, &o, &["2".into()], &mut st)), Some("le"));
        assert!(!st.rescan);
        // An event named a service of the image: maybe two now; read every service.
        let o = observed(false, vec![svc("1", "le", LE, &[]), svc("3", "le2", LE, &[])]);
        assert_eq!(found(&locate(&d, &o, &["3".into()], &mut st)), Some("le"));
        assert!(st.rescan);
        // The one found is gone (or an event named a service now gone).
        let mut st = State {
            by_image: ImageScan::Found("le".into()),
            ..Default::default()
        };
        assert_eq!(found(&locate(&d, &observed(false, Vec::new()), &[], &mut st)), None);
        assert!(st.rescan);
        let mut st = State {
            by_image: ImageScan::Found("le".into()),
            ..Default::default()
        };
        let o = observed(false, vec![svc("1", "le", LE, &[])]);
        locate(&d, &o, &["9".into()], &mut st).unwrap();
        assert!(st.rescan, "a named service that is gone may have been a companion");
    }

    #[test]
    fn an_ambiguous_image_holds_until_the_next_read_of_every_service() {
        let d = desired();
        let mut st = State::default();
        // Two of the image, one labelled for another stack (read by that label between reads).
        let other = svc(
            "3",
            "other_le",
            LE,
            &[(LABEL_COMPANION, "true"), (LABEL_STACK, "other")],
        );
        let all = observed(
            true,
            vec![svc("1", "a_le", LE, &[]), svc("2", "b_le", LE, &[]), other.clone()],
        );
        assert!(locate(&d, &all, &[], &mut st).is_err());
        let between = observed(false, vec![other]);
        let r = locate(&d, &between, &[], &mut st);
        assert!(
            r.is_err(),
            "the companion labelled for another stack is not taken: {:?}",
            found(&r)
        );
        assert!(!st.rescan);
    }
}
