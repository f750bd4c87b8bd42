//! What the server sends: read models for pages and the live event stream.

use serde::{Deserialize, Serialize};

use crate::ids::{HostUuid, InstanceUuid, TenantUuid, UserUuid};

/// The signed-in user as the portal shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: UserUuid,
    pub username: String,
    pub provider_admin: bool,
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub role: String,
}

/// Whether the control plane currently holds a working stream to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentLink {
    Connected,
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub id: HostUuid,
    pub name: String,
    pub scalable_unit: u32,
    pub system_model: String,
    pub gpu_model: String,
    pub gpus_total: u32,
    pub gpus_used: u32,
    pub gpus_unhealthy: u32,
    pub agent: AgentLink,
    pub cordoned: bool,
}

impl HostView {
    pub fn gpus_free(&self) -> u32 {
        self.gpus_total.saturating_sub(self.gpus_used + self.gpus_unhealthy)
    }
}

/// The fleet as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FleetSummary {
    pub hosts: Vec<HostView>,
    pub dpus: u32,
    pub switches: u32,
}

impl FleetSummary {
    pub fn gpus_total(&self) -> u32 {
        self.hosts.iter().map(|h| h.gpus_total).sum()
    }
    pub fn gpus_used(&self) -> u32 {
        self.hosts.iter().map(|h| h.gpus_used).sum()
    }
    pub fn gpus_free(&self) -> u32 {
        self.hosts.iter().map(HostView::gpus_free).sum()
    }
    pub fn gpus_unhealthy(&self) -> u32 {
        self.hosts.iter().map(|h| h.gpus_unhealthy).sum()
    }
    pub fn hosts_connected(&self) -> usize {
        self.hosts.iter().filter(|h| h.agent == AgentLink::Connected).count()
    }
}

/// Lifecycle of an instance as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    Provisioning,
    Running,
    Deleting,
    Deleted,
    Failed,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Provisioning => "provisioning",
            InstanceState::Running => "running",
            InstanceState::Deleting => "deleting",
            InstanceState::Deleted => "deleted",
            InstanceState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => InstanceState::Provisioning,
            "running" => InstanceState::Running,
            "deleting" => InstanceState::Deleting,
            "deleted" => InstanceState::Deleted,
            "failed" => InstanceState::Failed,
            _ => return None,
        })
    }

    /// Still on its way somewhere: the UI shows a spinner and the control plane a deadline.
    pub fn is_transitional(self) -> bool {
        matches!(self, InstanceState::Provisioning | InstanceState::Deleting)
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: InstanceUuid,
    pub name: String,
    pub state: InstanceState,
    pub gpu_count: u32,
    pub gpu_model: String,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub host_name: Option<String>,
    /// Why it failed, in words a user can act on.
    pub message: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// One message of the live status stream (`/api/v1/events`, server-sent events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An instance changed; `Deleted` means it left the list.
    Instance(InstanceView),
    /// GPU usage or health changed somewhere; refetch the fleet summary.
    FleetChanged,
}
