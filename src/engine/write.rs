//! Engine writes (I/O): the only door through which swarmlog changes the
//! swarm. Each method counts its call by [`WriteKind`] before sending it (a
//! write that fails still went to the engine) and takes version indexes as
//! `u64`, converted once, with an error rather than a wrap, to the widths
//! the API uses.

use bollard::models::{ConfigSpec, NetworkCreateRequest, NodeSpec, SecretSpec, ServiceSpec};
use bollard::query_parameters::{UpdateNodeOptions, UpdateServiceOptions};
use serde::Serialize;

use super::{Engine, EngineError};

/// What a write call did, for counters, metrics and `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    NetworkCreate,
    ConfigCreate,
    SecretCreate,
    ServiceCreate,
    ServiceUpdate,
    ServiceRemove,
    ConfigRemove,
    SecretRemove,
    NetworkRemove,
    /// Auto-labels on a node.
    NodeUpdate,
    /// The Let's Encrypt companion's `DOMAIN_*` patch.
    CompanionUpdate,
    /// The Elasticsearch preflight's one-off job.
    PreflightJob,
    PreflightJobRemove,
}

impl WriteKind {
    pub const ALL: [WriteKind; 13] = [
        WriteKind::NetworkCreate,
        WriteKind::ConfigCreate,
        WriteKind::SecretCreate,
        WriteKind::ServiceCreate,
        WriteKind::ServiceUpdate,
        WriteKind::ServiceRemove,
        WriteKind::ConfigRemove,
        WriteKind::SecretRemove,
        WriteKind::NetworkRemove,
        WriteKind::NodeUpdate,
        WriteKind::CompanionUpdate,
        WriteKind::PreflightJob,
        WriteKind::PreflightJobRemove,
    ];

    /// The label value in metrics and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::NetworkCreate => "network_create",
            WriteKind::ConfigCreate => "config_create",
            WriteKind::SecretCreate => "secret_create",
            WriteKind::ServiceCreate => "service_create",
            WriteKind::ServiceUpdate => "service_update",
            WriteKind::ServiceRemove => "service_remove",
            WriteKind::ConfigRemove => "config_remove",
            WriteKind::SecretRemove => "secret_remove",
            WriteKind::NetworkRemove => "network_remove",
            WriteKind::NodeUpdate => "node_update",
            WriteKind::CompanionUpdate => "companion_update",
            WriteKind::PreflightJob => "preflight_job",
            WriteKind::PreflightJobRemove => "preflight_job_remove",
        }
    }
}

/// A version index in the width an API call takes.
fn version_as<T: TryFrom<u64>>(what: &str, name: &str, version: u64) -> Result<T, EngineError> {
    T::try_from(version).map_err(|_| EngineError::Other {
        what: format!("{what} {name}"),
        detail: format!("version index {version} is out of range"),
    })
}

impl Engine {
    pub async fn create_network(&self, name: &str, spec: NetworkCreateRequest) -> Result<(), EngineError> {
        self.count_write(WriteKind::NetworkCreate);
        self.bounded("create network", name, self.docker.create_network(spec))
            .await?;
        Ok(())
    }

    /// Returns the new config's ID.
    pub async fn create_config(&self, name: &str, spec: ConfigSpec) -> Result<String, EngineError> {
        self.count_write(WriteKind::ConfigCreate);
        let r = self
            .bounded("create config", name, self.docker.create_config(spec))
            .await?;
        Ok(r.id)
    }

    /// Returns the new secret's ID.
    pub async fn create_secret(&self, name: &str, spec: SecretSpec) -> Result<String, EngineError> {
        self.count_write(WriteKind::SecretCreate);
        let r = self
            .bounded("create secret", name, self.docker.create_secret(spec))
            .await?;
        Ok(r.id)
    }

    /// Creates a service; `kind` tells a stack service from a preflight job.
    pub async fn create_service(&self, name: &str, spec: ServiceSpec, kind: WriteKind) -> Result<(), EngineError> {
        self.count_write(kind);
        let what = match kind {
            WriteKind::PreflightJob => "create preflight job",
            _ => "create service",
        };
        self.bounded(what, name, self.docker.create_service(spec, None)).await?;
        Ok(())
    }

    /// Updates a service at the version read just before; `kind` tells a
    /// stack service from the companion's patch.
    pub async fn update_service(
        &self,
        name: &str,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        kind: WriteKind,
    ) -> Result<(), EngineError> {
        let what = match kind {
            WriteKind::CompanionUpdate => "patch the companion",
            _ => "update service",
        };
        let version = version_as::<i32>(what, name, version)?;
        self.count_write(kind);
        self.bounded(
            what,
            name,
            self.docker.update_service(
                id,
                spec,
                UpdateServiceOptions {
                    version,
                    ..Default::default()
                },
                None,
            ),
        )
        .await?;
        Ok(())
    }

    /// Removes a service by ID (or name); `kind` tells a stack service from a
    /// preflight job.
    pub async fn remove_service(&self, name: &str, id: &str, kind: WriteKind) -> Result<(), EngineError> {
        self.count_write(kind);
        let what = match kind {
            WriteKind::PreflightJobRemove => "remove preflight job",
            _ => "remove service",
        };
        self.bounded(what, name, self.docker.delete_service(id)).await
    }

    pub async fn remove_config(&self, name: &str, id: &str) -> Result<(), EngineError> {
        self.count_write(WriteKind::ConfigRemove);
        self.bounded("remove config", name, self.docker.delete_config(id)).await
    }

    pub async fn remove_secret(&self, name: &str, id: &str) -> Result<(), EngineError> {
        self.count_write(WriteKind::SecretRemove);
        self.bounded("remove secret", name, self.docker.delete_secret(id)).await
    }

    pub async fn remove_network(&self, name: &str, id: &str) -> Result<(), EngineError> {
        self.count_write(WriteKind::NetworkRemove);
        self.bounded("remove network", name, self.docker.remove_network(id))
            .await
    }

    /// Updates a node's spec (labels) at the version read just before.
    pub async fn update_node(&self, hostname: &str, id: &str, version: u64, spec: NodeSpec) -> Result<(), EngineError> {
        let version = version_as::<i64>("label node", hostname, version)?;
        self.count_write(WriteKind::NodeUpdate);
        self.bounded(
            "label node",
            hostname,
            self.docker.update_node(id, spec, UpdateNodeOptions { version }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_convert_or_fail() {
        assert_eq!(version_as::<i32>("update service", "x", 7).ok(), Some(7));
        assert!(version_as::<i32>("update service", "x", u64::from(u32::MAX)).is_err());
        assert_eq!(version_as::<i64>("label node", "n", 1 << 40).ok(), Some(1 << 40));
        assert!(version_as::<i64>("label node", "n", u64::MAX).is_err());
    }

    #[test]
    fn kinds_have_distinct_labels() {
        let labels: std::collections::BTreeSet<&str> = WriteKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), WriteKind::ALL.len());
    }
}
