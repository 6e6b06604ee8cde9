//! Render step, desired state: ports — a service's published ports and its
//! endpoint mode.

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpecModeEnum,
};

use super::Ctx;
use crate::render::compose::model::{Deploy, Port, Service};

/// `deploy.endpoint_mode` (case-insensitive), if set.
pub(super) fn endpoint_mode(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> Option<EndpointSpecModeEnum> {
    match deploy.endpoint_mode.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("") => None,
        Some("vip") => Some(EndpointSpecModeEnum::VIP),
        Some("dnsrr") => Some(EndpointSpecModeEnum::DNSRR),
        Some(other) => {
            ctx.problem(
                &["services", key, "deploy", "endpoint_mode"],
                format!("invalid endpoint mode {other:?} (expected vip or dnsrr)"),
            );
            None
        }
    }
}

/// A service's ports, sorted by published port; bad ones are problems and left out.
pub(super) fn ports(ctx: &mut Ctx, key: &str, svc: &Service) -> Vec<EndpointPortConfig> {
    let mut ports: Vec<EndpointPortConfig> = svc
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| port(ctx, key, i, p))
        .collect();
    ports.sort_by_key(|p| p.published_port.unwrap_or(0));
    ports
}

fn port(ctx: &mut Ctx, key: &str, i: usize, p: &Port) -> Option<EndpointPortConfig> {
    let protocol = match p.protocol.as_str() {
        "tcp" => EndpointPortConfigProtocolEnum::TCP,
        "udp" => EndpointPortConfigProtocolEnum::UDP,
        "sctp" => EndpointPortConfigProtocolEnum::SCTP,
        other => {
            ctx.problem(
                &["services", key, "ports", &i.to_string()],
                format!("invalid protocol {other:?}"),
            );
            return None;
        }
    };
    let publish_mode = match p.mode.as_str() {
        "ingress" => EndpointPortConfigPublishModeEnum::INGRESS,
        "host" => EndpointPortConfigPublishModeEnum::HOST,
        other => {
            ctx.problem(
                &["services", key, "ports", &i.to_string()],
                format!("invalid publish mode {other:?} (expected ingress or host)"),
            );
            return None;
        }
    };
    Some(EndpointPortConfig {
        protocol: Some(protocol),
        target_port: Some(i64::from(p.target)),
        published_port: p.published.map(i64::from),
        publish_mode: Some(publish_mode),
        ..Default::default()
    })
}
