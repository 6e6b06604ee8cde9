//! The monitoring kit the tests share: the Grafana dashboard's description
//! (manifests/monitoring/panels.yml) and the dashboard.json generated from
//! it, so the queries a person sees are the strings the tests check with
//! promtool and against a real Prometheus; and the README's scrape config.

#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Value};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/monitoring")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub title: String,
    pub uid: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub title: String,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "timeseries")]
    pub r#type: String,
    #[serde(default)]
    pub unit: Option<String>,
    pub queries: Vec<Query>,
}

fn timeseries() -> String {
    "timeseries".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub expr: String,
    pub legend: String,
}

pub fn load() -> Result<Description, String> {
    let path = dir().join("panels.yml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every query of the dashboard, with the panel it belongs to.
pub fn queries(d: &Description) -> Vec<(String, String)> {
    d.rows
        .iter()
        .flat_map(|r| &r.panels)
        .flat_map(|p| p.queries.iter().map(|q| (p.title.clone(), q.expr.clone())))
        .collect()
}

const WIDTH: u64 = 24;
const HEIGHT: u64 = 8;

/// The dashboard as Grafana imports it (a `datasource` variable picks the
/// Prometheus data source, so it works imported or provisioned).
pub fn generate(d: &Description) -> Result<Value, String> {
    let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut panels = Vec::new();
    let mut id = 0;
    let mut y = 0;
    for row in &d.rows {
        if row.panels.is_empty() || row.panels.len() > 3 {
            return Err(format!("row {:?} must hold 1 to 3 panels", row.title));
        }
        id += 1;
        panels.push(json!({
            "id": id,
            "type": "row",
            "title": row.title,
            "collapsed": false,
            "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
            "panels": [],
        }));
        y += 1;
        let w = WIDTH / row.panels.len() as u64;
        for (i, p) in row.panels.iter().enumerate() {
            if !["timeseries", "state-timeline", "table"].contains(&p.r#type.as_str()) {
                return Err(format!("panel {:?}: unknown type {:?}", p.title, p.r#type));
            }
            id += 1;
            let table = p.r#type == "table";
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(n, q)| {
                    let mut t = json!({
                        "datasource": datasource,
                        "expr": q.expr,
                        "legendFormat": q.legend,
                        "refId": ref_id(n),
                    });
                    if table {
                        t["instant"] = json!(true);
                        t["format"] = json!("table");
                    }
                    t
                })
                .collect();
            let mut defaults = json!({});
            if let Some(unit) = &p.unit {
                defaults["unit"] = json!(unit);
            }
            panels.push(json!({
                "id": id,
                "type": p.r#type,
                "title": p.title,
                "description": p.description,
                "datasource": datasource,
                "gridPos": {"h": HEIGHT, "w": w, "x": w * i as u64, "y": y},
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": true}},
                "targets": targets,
            }));
        }
        y += HEIGHT;
    }
    Ok(json!({
        "title": d.title,
        "uid": d.uid,
        "description": "swarmlog, the logging stack operator for Docker Swarm: generated from manifests/monitoring/panels.yml",
        "tags": ["swarmlog", "docker-swarm"],
        "editable": true,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "options": [],
        }]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
        "version": 1,
    }))
}

fn ref_id(n: usize) -> String {
    char::from(b'A' + (n % 26) as u8).to_string()
}

/// The generated dashboard.json text (pretty, with a final newline).
pub fn generate_text(d: &Description) -> Result<String, String> {
    let v = generate(d)?;
    let mut text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// A rule file with one recording rule per query, for `promtool check rules`.
pub fn queries_as_rules(d: &Description) -> String {
    let mut out = String::from("groups:\n  - name: swarmlog-dashboard-queries\n    rules:\n");
    for (n, (_, expr)) in queries(d).iter().enumerate() {
        out.push_str(&format!(
            "      - record: swarmlog_dashboard:query_{n}\n        expr: {}\n",
            serde_json::Value::String(expr.clone())
        ));
    }
    out
}

pub fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's lines from the heading `title` to the next heading of the
/// same level or above (code blocks are not headings).
pub fn section(text: &str, title: &str) -> String {
    let level = title.chars().take_while(|c| *c == '#').count();
    let mut lines = text.lines().skip_while(|l| l.trim() != title);
    let Some(first) = lines.next() else {
        panic!("README.md has no section {title:?}");
    };
    let mut out = vec![first];
    let mut in_code = false;
    for l in lines {
        if l.starts_with("```") {
            in_code = !in_code;
        }
        let hashes = l.chars().take_while(|c| *c == '#').count();
        if !in_code && hashes > 0 && hashes <= level && l.chars().nth(hashes) == Some(' ') {
            break;
        }
        out.push(l);
    }
    out.join("\n")
}

/// The README's scrape config: the yaml block with dockerswarm_sd_configs.
pub fn readme_scrape_config() -> String {
    let monitoring = section(&readme(), "## Monitoring");
    let block = monitoring
        .split("```yaml\n")
        .skip(1)
        .find(|b| b.contains("dockerswarm_sd_configs"))
        .unwrap_or_else(|| panic!("the README's Monitoring section has no yaml block with dockerswarm_sd_configs"));
    block.split("```").next().unwrap_or_default().to_string()
}
