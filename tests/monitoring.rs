//! The monitoring kit in manifests/monitoring: alert rules checked and
//! unit-tested with promtool (Debian's prometheus package), every alert
//! documented with a runbook row in the README, only series the operator
//! exports, the dashboard generated from its description with every query
//! parsed by promtool, and the README's scrape config accepted by promtool.

mod monitoring_kit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let dir = repo().join("target/test-tmp/monitoring");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// Runs promtool; its output, or why it failed (a missing promtool fails).
fn promtool(args: &[&str], cwd: &Path) -> Result<String, String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| {
            format!("cannot run promtool ({e}): install Debian's prometheus package (scripts/prereqs does)")
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("promtool {} failed:\n{text}", args.join(" ")))
    }
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn alerts() -> Vec<Value> {
    let rules = yaml(&monitoring_kit::dir().join("alerts.yml"));
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

use monitoring_kit::{readme, readme_scrape_config, section};

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let dir = monitoring_kit::dir();
    let check = promtool(&["check", "rules", "alerts.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    let n = alerts().len();
    assert!(check.contains(&format!("SUCCESS: {n} rules found")), "{check}");
    let test = promtool(&["test", "rules", "alerts.test.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(test.contains("SUCCESS"), "{test}");
}

#[test]
fn every_alert_fires_in_a_unit_test_and_stays_quiet_in_one() {
    let tests = yaml(&monitoring_kit::dir().join("alerts.test.yml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap_or_default();
        let of_it: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == name).collect();
        let fires = of_it
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of_it
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_none_or(|a| a.is_empty()));
        assert!(fires, "no unit test in alerts.test.yml expects {name} to fire");
        assert!(quiet, "no unit test in alerts.test.yml expects {name} to stay quiet");
    }
}

/// Values a templated runbook row takes: the label values the alert can carry.
fn expand(key: &str) -> Vec<String> {
    if key.contains("{{ $labels.phase }}") {
        ["Pending", "EngineUnavailable", "Invalid", "Degraded", "Progressing"]
            .iter()
            .map(|p| key.replace("{{ $labels.phase }}", p))
            .collect()
    } else if key.contains("{{ $labels.state }}") {
        ["low", "unknown"]
            .iter()
            .map(|s| key.replace("{{ $labels.state }}", s))
            .collect()
    } else {
        assert!(!key.contains("{{"), "runbook row {key:?}: unknown template");
        vec![key.to_string()]
    }
}

#[test]
fn every_alert_is_in_the_readme_with_a_troubleshooting_row() {
    let text = readme();
    let monitoring = section(&text, "## Monitoring");
    let troubleshooting = section(&text, "### Troubleshooting");
    let rows: Vec<&str> = troubleshooting.lines().filter(|l| l.starts_with("| ")).collect();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap_or_default();
        assert!(
            monitoring.contains(&format!("| `{name}` |")),
            "the README's Monitoring section has no row for {name}"
        );
        let a = &alert["annotations"];
        for key in ["summary", "description", "runbook"] {
            assert!(a[key].as_str().is_some_and(|s| s.len() > 10), "{name} has no {key}");
        }
        assert!(alert["labels"]["severity"].is_string(), "{name} has no severity");
        let runbook = a["runbook"].as_str().unwrap_or_default();
        let key = runbook
            .strip_prefix("README.md#troubleshooting: '")
            .and_then(|r| r.strip_suffix('\''))
            .unwrap_or_else(|| panic!("{name}: runbook {runbook:?} is not README.md#troubleshooting: 'ROW'"));
        for row in expand(key) {
            assert!(
                rows.iter().any(|l| l.starts_with(&format!("| {row}"))),
                "{name}: no troubleshooting row starts with {row:?}"
            );
        }
    }
}

/// Metric names the operator exports (every family used once).
fn exported() -> BTreeSet<String> {
    use swarmlog::metrics::{CategoryLabel, Metrics, OutcomeLabel};
    let m = Metrics::new();
    m.reconciles
        .get_or_create(&OutcomeLabel {
            outcome: "in-sync".into(),
        })
        .inc();
    m.errors
        .get_or_create(&CategoryLabel {
            category: "unreachable".into(),
        })
        .inc();
    Metrics::count(&m.writes, "service_create");
    Metrics::count(&m.triggers, "resync");
    // Per node, once Elasticsearch has been read.
    m.es_disk_used
        .get_or_create(&swarmlog::metrics::NodeLabel {
            node: "logging_es_logger-1".into(),
        })
        .set(0.5);
    m.es_disk_level
        .get_or_create(&swarmlog::metrics::NodeLabel {
            node: "logging_es_logger-1".into(),
        })
        .set(1);
    // Per certificate, once security is on.
    let cert = swarmlog::metrics::CertificateLabel {
        certificate: "http".into(),
    };
    m.cert_not_after.get_or_create(&cert).set(1);
    m.cert_renew_at.get_or_create(&cert).set(1);
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => names.insert(name.to_string()),
        };
    }
    names
}

/// `swarmlog_...` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("swarmlog_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn rules_and_dashboard_query_only_series_the_operator_exports() {
    let exported = exported();
    assert!(exported.contains("swarmlog_role"), "{exported:?}");
    let mut exprs: Vec<(String, String)> = alerts()
        .iter()
        .map(|a| {
            (
                a["alert"].as_str().unwrap_or_default().to_string(),
                a["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let d = monitoring_kit::load().unwrap_or_else(|e| panic!("{e}"));
    exprs.extend(monitoring_kit::queries(&d));
    let mut used = BTreeSet::new();
    for (what, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "{what} queries {name}, which the operator does not export ({exported:?})"
            );
            used.insert(name);
        }
    }
    // The dashboard and the rules between them look at every metric.
    for name in &exported {
        let base = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
            .map(|b| format!("{b}_bucket"));
        assert!(
            used.contains(name) || base.is_some_and(|b| used.contains(&b)),
            "no rule or dashboard panel uses {name}"
        );
    }
}

#[test]
fn dashboard_json_is_generated_from_its_description() {
    let d = monitoring_kit::load().unwrap_or_else(|e| panic!("{e}"));
    let text = monitoring_kit::generate_text(&d).unwrap_or_else(|e| panic!("{e}"));
    let path = monitoring_kit::dir().join("dashboard.json");
    if std::env::var_os("UPDATE_DASHBOARD").is_some() {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} differs from what manifests/monitoring/panels.yml generates: run `UPDATE_DASHBOARD=1 cargo test --test monitoring` and commit it",
        path.display()
    );
    let v: Value = serde_json::from_str(&committed).unwrap_or_else(|e| panic!("dashboard.json: {e}"));
    let panels = v["panels"].as_array().cloned().unwrap_or_default();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Phase",
        "Reconciles by outcome",
        "Reconcile duration",
        "Writes by kind",
        "Triggers by kind",
        "Nodes",
        "Companion patches",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted:?} in {titles:?}");
    }
    // Panels never overlap and stay within Grafana's 24 columns.
    let mut cells = BTreeSet::new();
    for p in &panels {
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
            panic!("panel {} has no gridPos", p["title"]);
        };
        assert!(x + w <= 24, "panel {} is wider than the grid", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panel {} overlaps another", p["title"]);
            }
        }
    }
}

#[test]
fn every_dashboard_query_parses_with_promtool() {
    let d = monitoring_kit::load().unwrap_or_else(|e| panic!("{e}"));
    let n = monitoring_kit::queries(&d).len();
    assert!(n >= 15, "only {n} queries");
    let dir = out_dir();
    let file = dir.join("dashboard-queries.rules.yml");
    std::fs::write(&file, monitoring_kit::queries_as_rules(&d)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let out = promtool(&["check", "rules", "dashboard-queries.rules.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

#[test]
fn the_readme_scrape_config_passes_promtool() {
    let config = readme_scrape_config();
    for wanted in [
        "job_name: swarmlog",
        "role: tasks",
        "io_swarmlog_component",
        "swarmlog-alerts.yml",
    ] {
        assert!(
            config.contains(wanted),
            "the README's scrape config lacks {wanted:?}:\n{config}"
        );
    }
    let dir = out_dir();
    std::fs::copy(
        monitoring_kit::dir().join("alerts.yml"),
        dir.join("swarmlog-alerts.yml"),
    )
    .unwrap_or_else(|e| panic!("copy alerts.yml: {e}"));
    let config = config.replace("/etc/prometheus/swarmlog-alerts.yml", "swarmlog-alerts.yml");
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap_or_else(|e| panic!("{e}"));
    let out = promtool(&["check", "config", "prometheus.yml"], &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts().len())),
        "{out}"
    );
}
