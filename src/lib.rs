//! swarmlog: a reconciliation operator for a logging stack on Docker Swarm.
pub mod apply;
pub mod chart;
pub mod cli;
pub mod compose;
pub mod controller;
pub mod desired;
pub mod diag;
pub mod engine;
pub mod letsencrypt;
pub mod observe;
pub mod plan;
pub mod report;
pub mod status;
pub mod values;
pub mod yaml;
