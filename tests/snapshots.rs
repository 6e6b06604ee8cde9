//! Snapshots of what users read: the default chart's rendered stack file and
//! engine specs. A change to either shows up in review (`cargo insta review`).

use swarmlog::render::chart::{Chart, RenderOptions};

fn no_env(_: &str) -> Option<String> {
    None
}

fn render() -> swarmlog::render::chart::Rendered {
    let chart = Chart::embedded().expect("the embedded chart loads");
    chart
        .render(&RenderOptions {
            values_files: Vec::new(),
            set: Vec::new(),
            stack: None,
            env: &no_env,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &|_, _, _| Ok(None),
        })
        .expect("the embedded chart renders")
}

#[test]
fn default_chart_compose() {
    insta::assert_snapshot!("default_chart_compose", render().compose_text);
}

#[test]
fn default_chart_specs() {
    // Canonical JSON (sorted keys): label maps are hash maps.
    let json = swarmlog::render::desired::canonical(serde_json::to_value(render().desired).expect("serialises"));
    insta::assert_json_snapshot!("default_chart_specs", json);
}

#[test]
fn hashes_are_stable_across_runs_and_key_orders() {
    let a = render();
    let b = render();
    let hashes = |r: &swarmlog::render::chart::Rendered| -> Vec<String> {
        r.desired.services.iter().map(|s| s.hash.clone()).collect()
    };
    assert_eq!(hashes(&a), hashes(&b));
    // Same content with keys in another order: same hashes.
    let v1 = "kibana:\n  domain: a.example.org\n  replicas: 2\n";
    let v2 = "kibana:\n  replicas: 2\n  domain: a.example.org\n";
    let chart = Chart::embedded().expect("loads");
    let with = |v: &str| {
        chart
            .render(&RenderOptions {
                values_files: vec![("v.yaml".into(), v.into())],
                set: Vec::new(),
                stack: None,
                env: &no_env,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &|_, _, _| Ok(None),
            })
            .expect("renders")
    };
    assert_eq!(hashes(&with(v1)), hashes(&with(v2)));
    assert_ne!(hashes(&with(v1)), hashes(&a));
}
