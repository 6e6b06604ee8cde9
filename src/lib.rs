//! swarmlog: a reconciliation operator for a logging stack on Docker Swarm.
//!
//! The pipeline, one module per step: [`render`] (pure) -> [`engine`]
//! (observe, I/O) -> [`plan`] (pure) -> [`apply`] (I/O) -> [`status`]
//! (pure model); [`controller`] drives it, [`http`] serves the status.
pub mod apply;
pub mod cli;
pub mod client;
pub mod clock;
pub mod controller;
pub mod diag;
pub mod engine;
pub mod es;
pub mod http;
pub mod letsencrypt;
pub mod metrics;
pub mod plan;
pub mod preflight;
pub mod render;
pub mod report;
pub mod security;
pub mod status;
pub mod tls;
