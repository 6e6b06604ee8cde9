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
    /// The service found by image, last time every service was read: read
    /// by name in between (see `Memory::scope`).
    pub by_image: Option<String>,
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
    writes: bool,
    state: &mut State,
) -> Result<Option<Duration>, EngineError> {
    let le = &desired.letsencrypt;
    if !le.enabled {
        return Ok(None);
    }
    let (groups, refused) = letsencrypt::desired_groups(&le.domains, &sources(desired, observed));
    let companion = match find(desired, observed) {
        Ok(c) => c,
        Err(e) => {
            ctx.update_status(|st| st.companion.error = Some(e.clone()));
            return Ok(None);
        }
    };
    state.by_image = companion
        .filter(|c| le.service.is_empty() && !labelled_for(c, &desired.stack))
        .map(|c| name_of(c).to_string());
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
