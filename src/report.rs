//! Plan output for people: a diff in the manner of `terraform plan`.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::plan::{Action, Plan};

fn short(v: &Option<Json>) -> String {
    match v {
        None => "(unset)".to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 100 {
                let cut: String = s.chars().take(97).collect();
                format!("{cut}...")
            } else {
                s
            }
        }
    }
}

/// The plan as text.
pub fn plan_text(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Stack {}:", p.stack);
    if p.actions.is_empty() {
        let _ = writeln!(out, "  no changes: {} objects are as desired.", p.in_sync.len());
    }
    for a in &p.actions {
        let (sign, note) = match a {
            Action::UpdateService { reason, .. } => (
                "~",
                format!(
                    " ({})",
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ),
            Action::RemoveNetwork { duplicate: true, .. } => ("-", " (duplicate)".to_string()),
            _ if a.verb() == "create" => ("+", String::new()),
            _ => ("-", String::new()),
        };
        let _ = writeln!(out, "  {sign} {:<8} {}{note}", a.kind(), a.name());
        if let Action::UpdateService { changes, .. } = a {
            for c in changes {
                let _ = writeln!(out, "        {}: {} -> {}", c.field, short(&c.from), short(&c.to));
            }
        }
    }
    for c in &p.conflicts {
        let _ = writeln!(out, "  ! conflict: {c}");
    }
    for b in &p.blockers {
        let _ = writeln!(out, "  ! blocked: {b}");
    }
    for w in &p.warnings {
        let _ = writeln!(out, "  ! warning: {w}");
    }
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to remove.",
        p.count("create"),
        p.count("update"),
        p.count("remove")
    );
    if !p.blockers.is_empty() || !p.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "apply would refuse this plan and write nothing until the problems above are solved."
        );
    }
    out
}
