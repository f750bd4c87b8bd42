//! What the server sends: read models for pages and the live event stream.

use serde::{Deserialize, Serialize};

use crate::Role;
use crate::ids::{
    ApiTokenUuid, HostUuid, ImageUuid, InstanceUuid, SshKeyUuid, TenantUuid, UserUuid,
};

/// The signed-in user as the portal shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub user_id: UserUuid,
    pub username: String,
    pub provider_admin: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub role: Role,
    /// Every tenant the user may act in (switch with `tenant_switch`).
    pub memberships: Vec<Membership>,
    /// The user signed in with a password someone else chose and must choose their own
    /// before anything else.
    pub must_change_password: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Membership {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub role: Role,
}

/// Whether the control plane currently holds a working stream to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AgentLink {
    Connected,
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceState {
    Provisioning,
    Running,
    Deleting,
    Deleted,
    Failed,
    /// Being powered off (it keeps its GPUs, disk and address).
    Stopping,
    /// Powered off; it keeps its GPUs, disk and address.
    Stopped,
    Starting,
    Rebooting,
}

impl InstanceState {
    pub const ALL: [InstanceState; 9] = [
        InstanceState::Provisioning,
        InstanceState::Running,
        InstanceState::Deleting,
        InstanceState::Deleted,
        InstanceState::Failed,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Starting,
        InstanceState::Rebooting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Provisioning => "provisioning",
            InstanceState::Running => "running",
            InstanceState::Deleting => "deleting",
            InstanceState::Deleted => "deleted",
            InstanceState::Failed => "failed",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Starting => "starting",
            InstanceState::Rebooting => "rebooting",
        }
    }

    /// Whether its VM is defined on its host (what the host's snapshot must list).
    pub fn on_host(self) -> bool {
        matches!(
            self,
            InstanceState::Running
                | InstanceState::Stopping
                | InstanceState::Stopped
                | InstanceState::Starting
                | InstanceState::Rebooting
        )
    }

    /// The power actions a user may ask for in this state.
    pub fn power_actions(self) -> &'static [crate::params::PowerAction] {
        use crate::params::PowerAction::*;
        match self {
            InstanceState::Running => &[Stop, Reboot, PowerOff],
            InstanceState::Stopping => &[PowerOff],
            InstanceState::Stopped => &[Start],
            _ => &[],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: InstanceUuid,
    pub name: String,
    pub instance_type: String,
    pub state: InstanceState,
    pub gpu_count: u32,
    pub gpu_model: String,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub host_name: Option<String>,
    /// The catalog name of the image it booted (none for launches before images existed).
    pub image: Option<String>,
    /// The names of the SSH keys the launch put into it.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Why it failed, in words a user can act on.
    pub message: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// One instance with where it runs and what happened to it (`/instances/:id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceDetail {
    pub instance: InstanceView,
    /// Its placement; none once it holds no resources (or never did).
    pub host: Option<String>,
    pub gpus: Vec<InstanceGpu>,
    pub nics: Vec<InstanceNic>,
    pub numa_nodes: Vec<u32>,
    /// Host CPUs its vCPUs are pinned to, vCPU 0 first.
    pub vcpu_pins: Vec<u32>,
    /// The host CPU of its emulator threads.
    pub emulator_cpu: Option<u32>,
    /// The NVSwitch partition its GPUs form.
    pub partition: Option<u32>,
    /// The image's catalog name and the user it creates (none before the catalog existed).
    pub image: Option<String>,
    pub default_user: Option<String>,
    pub ssh_keys: Vec<String>,
    /// Its network interfaces on the tenant's VPC.
    #[serde(default)]
    pub ports: Vec<crate::network::PortView>,
    /// How to reach it; none until it has an address.
    pub ssh_command: Option<String>,
    /// The steps of its sagas, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceGpu {
    pub module_id: u32,
    pub model: String,
    pub pci_address: String,
    pub numa_node: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceNic {
    pub index: u32,
    pub name: String,
    /// Empty when the host's inventory does not say.
    pub pci_address: String,
    pub rail: u32,
    /// Its address on the tenant's GPU fabric (`100.64.48.2/20`), once it joined.
    #[serde(default)]
    pub fabric_address: Option<String>,
    /// The rail leaf it is cabled to, once it joined.
    #[serde(default)]
    pub fabric_leaf: Option<String>,
    #[serde(default)]
    pub fabric_state: Option<FabricLinkState>,
}

/// Whether a SuperNIC's rail leaf holds the tenant's GPU fabric segment with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FabricLinkState {
    /// The leaf confirmed the fabric as it is now.
    Ready,
    /// The leaf holds an older version (another VM of the tenant joined or left).
    Updating,
    /// The leaf has not confirmed it yet.
    Pending,
    /// No switch agent manages the leaf: nothing configures it.
    Unmanaged,
}

impl FabricLinkState {
    pub fn label(self) -> &'static str {
        match self {
            FabricLinkState::Ready => "ready",
            FabricLinkState::Updating => "updating",
            FabricLinkState::Pending => "pending",
            FabricLinkState::Unmanaged => "no switch agent",
        }
    }
}

/// One step event of a saga about an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// `instance_create`, `instance_delete` or `instance_power`.
    pub saga: String,
    /// The saga's node (`claimed`, `vm_ensured`, …).
    pub step: String,
    /// `started`, `succeeded`, `failed`, `undo_started`, `undo_finished` or `undo_failed`.
    pub event: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// One message of the live status stream (`/api/v1/events`, server-sent events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An instance changed; `Deleted` means it left the list.
    Instance(Box<InstanceView>),
    /// GPU usage or health changed somewhere; refetch the fleet summary and capacity.
    FleetChanged,
    /// The tenant's spending this month reached `percent` of its budget.
    BudgetAlert { month: String, percent: i64 },
}

/// An image from the catalog a provider admin maintains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: ImageUuid,
    pub name: String,
    pub os: String,
    pub cuda_version: String,
    pub driver_version: String,
    pub default_user: String,
    pub source: String,
    /// A retired image is not offered for new launches; instances that booted it keep it.
    pub retired: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl ImageView {
    /// "Ubuntu 24.04 LTS · CUDA 12.8 · driver 570"
    pub fn summary(&self) -> String {
        let mut parts = vec![self.os.clone()];
        if !self.cuda_version.is_empty() {
            parts.push(format!("CUDA {}", self.cuda_version));
        }
        if !self.driver_version.is_empty() {
            parts.push(format!("driver {}", self.driver_version));
        }
        parts.join(" · ")
    }
}

/// What the launch form offers, in one answer: each choice as the value the form sends and
/// the label it shows. One small type instead of the four catalogs it is made of keeps their
/// decoders out of the browser's main module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchOptions {
    /// Value: the type's name.
    pub instance_types: Vec<LaunchChoice>,
    /// Value: the image's name; the newest image first (the default).
    pub images: Vec<LaunchChoice>,
    /// Value: the key's id; the first is preselected.
    pub ssh_keys: Vec<LaunchChoice>,
    /// Value: the subnet's id; the default VPC's subnets first.
    pub subnets: Vec<LaunchChoice>,
    /// Value: the group's id; the tenant's default group preselected.
    pub security_groups: Vec<LaunchChoice>,
}

/// One choice of the launch form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchChoice {
    pub value: String,
    pub label: String,
    pub preselected: bool,
}

/// An instance type (flavor) from the catalog a provider admin maintains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceType {
    pub name: String,
    /// Empty for CPU-only types.
    pub gpu_model: String,
    pub gpu_count: u32,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub disk_gib: u32,
    /// The price now, in millionths of the provider's currency per hour.
    pub price_micros_per_hour: i64,
}

impl InstanceType {
    /// "2 × H100-SXM5-80GB · 48 vCPUs · 440 GiB · 4.98/h" (in the provider's currency)
    pub fn summary(&self) -> String {
        let gpus = if self.gpu_count == 0 {
            "CPU only".to_owned()
        } else {
            format!("{} × {}", self.gpu_count, self.gpu_model)
        };
        format!(
            "{gpus} · {} vCPUs · {} GiB · {}/h",
            self.vcpus,
            self.memory_gib,
            crate::billing::MoneyFormat::english("").decimal_micros(self.price_micros_per_hour)
        )
    }
}

/// One line of a tenant's usage against its quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaLine {
    /// `instances`, `vcpus`, `memory_gib` or `gpus:<model>`.
    pub resource: String,
    pub used: u64,
    /// `None`: unlimited (set explicitly; a resource without any limit allows nothing).
    pub limit: Option<u64>,
    /// The limit is the provider's default for tenants, not one of the tenant's own.
    pub default: bool,
}

impl QuotaLine {
    /// "8" or "no limit".
    pub fn limit_text(&self) -> String {
        self.limit.map_or_else(|| "no limit".to_owned(), |m| m.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantQuota {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub lines: Vec<QuotaLine>,
}

/// "still launchable: a×8, b×4, c×2, d×1" for one GPU model over some part of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Launchable {
    pub x8: u32,
    pub x4: u32,
    pub x2: u32,
    pub x1: u32,
}

impl std::fmt::Display for Launchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×8, {}×4, {}×2, {}×1", self.x8, self.x4, self.x2, self.x1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCapacity {
    pub model: String,
    pub launchable: Launchable,
    pub free_gpus: u32,
    /// Free GPUs that cannot be launched as part of an 8-GPU partition.
    pub fragmented_gpus: u32,
}

/// Capacity fleet-wide and per scalable unit (the unit list only for provider admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    pub fleet: Vec<ModelCapacity>,
    pub scalable_units: Vec<(String, Vec<ModelCapacity>)>,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub client: String,
    /// "ok", or the HTTP status and the sentence the caller got.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: TenantUuid,
    pub name: String,
    pub suspended: bool,
    /// Instances not deleted.
    pub instances: u64,
    pub members: u64,
}

/// What deleting a tenant would take away, for the confirmation a provider admin reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantDeletion {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub name: String,
    /// Instances not deleted: while there are any, the tenant cannot be deleted.
    pub instances: u64,
    /// Usernames that lose their access to the tenant.
    pub members: Vec<String>,
    /// Of those, the ones in no other tenant: they can no longer sign in at all.
    pub stranded: Vec<String>,
    pub api_tokens: u64,
    /// Members' SSH keys kept in the tenant: they are deleted with it.
    pub ssh_keys: u64,
    /// Quota limits set for the tenant.
    pub quotas: u64,
    /// Identity providers mapped to the tenant: they are deleted with it.
    pub identity_providers: Vec<String>,
    /// Rows of deleted instances, kept for the tenant's history until now.
    pub instance_history: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: UserUuid,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub provider_admin: bool,
    /// The identity provider a single sign-on user signs in through (its display name).
    #[serde(default)]
    pub provider: Option<String>,
}

/// A new local account, with its one-time password shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInvited {
    pub user: UserView,
    pub one_time_password: String,
}

/// An API token as lists show it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: ApiTokenUuid,
    pub name: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub tenant_name: String,
    pub role: Role,
    /// Also acts as the provider admin its user is.
    #[serde(default)]
    pub provider_admin: bool,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

/// A new token: the secret is in this answer only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenCreated {
    pub token: String,
    pub view: ApiTokenView,
}

/// One of the signed-in user's SSH public keys as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKeyView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: SshKeyUuid,
    pub name: String,
    /// The OpenSSH algorithm name, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    pub comment: String,
    /// RFC 3339.
    pub created_at: String,
}

/// One of the signed-in user's sessions (never its id: a label derived from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub label: String,
    /// RFC 3339: when it ends without further use.
    pub expires_at: String,
    /// The session this request came with.
    pub current: bool,
}
