//! Render step (pure but for reading the chart and values files): a chart
//! and its values, or a plain stack file, to the desired state. One entry
//! point, [`render`], serves the CLI and the controller alike.
//!
//! chart (templates + values) -> yaml -> compose model -> desired state.

pub mod chart;
pub mod compose;
pub mod desired;
pub mod values;
pub mod yaml;

use std::path::PathBuf;

use crate::diag::{Problem, Problems};
pub use chart::Rendered;
use chart::{Chart, RenderOptions};

/// What a render reads: the same for `render`, `plan`, `apply` and `run`.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// A chart directory or a plain stack file; `None`: the built-in chart.
    pub chart: Option<PathBuf>,
    /// Values files, in order (later wins).
    pub values: Vec<PathBuf>,
    /// `--set key.path=value` pairs, applied after the files.
    pub set: Vec<(String, String)>,
    /// `--stack`, overriding the values' `stack`.
    pub stack: Option<String>,
}

/// Parses `--set KEY=VALUE` arguments.
pub fn parse_set(args: &[String]) -> Result<Vec<(String, String)>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for s in args {
        match s.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => problems.push(Problem::new("--set", format!("{s:?} must be KEY=VALUE"))),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// Loads the chart and values and renders them. `env` serves compose
/// interpolation (`${VAR}`) of plain stack files. Every problem is returned,
/// each naming its file, line and field.
pub fn render(inputs: &Inputs, env: &dyn Fn(&str) -> Option<String>) -> Result<Rendered, Problems> {
    let chart = match &inputs.chart {
        Some(path) => Chart::load(path)?,
        None => Chart::embedded()?,
    };
    let mut problems = Vec::new();
    let mut values_files = Vec::new();
    for path in &inputs.values {
        match chart::read_input(path) {
            Ok(text) => values_files.push((path.display().to_string(), text)),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    chart.render(&RenderOptions {
        values_files,
        set: inputs.set.clone(),
        stack: inputs.stack.clone(),
        env,
    })
}

/// The process environment, for [`render`]'s interpolation (edges only).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
