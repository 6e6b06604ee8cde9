//! Leader gating (pure): only the operator on the swarm's Raft leader writes.

use bollard::models::Node;

pub use crate::status::Role;

/// The role of the instance on node `self_id`, from the node list.
pub fn role(self_id: &str, nodes: &[Node], gating: bool) -> Role {
    if !gating {
        return Role::Single;
    }
    let leader = nodes
        .iter()
        .find(|n| n.id.as_deref() == Some(self_id))
        .and_then(|n| n.manager_status.as_ref())
        .and_then(|m| m.leader)
        .unwrap_or(false);
    if leader {
        Role::Leader
    } else {
        Role::Standby
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ManagerStatus;

    fn manager(id: &str, leader: bool) -> Node {
        Node {
            id: Some(id.into()),
            manager_status: Some(ManagerStatus {
                leader: Some(leader),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_leader_writes() {
        let nodes = vec![manager("a", true), manager("b", false)];
        assert_eq!(role("a", &nodes, true), Role::Leader);
        assert_eq!(role("b", &nodes, true), Role::Standby);
        assert_eq!(role("x", &nodes, true), Role::Standby);
        assert_eq!(role("b", &nodes, false), Role::Single);
        assert!(!Role::Standby.writes());
        assert!(Role::Single.writes());
    }
}
