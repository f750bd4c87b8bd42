//! sea-orm entities, one module per table; columns mirror `migrations/`.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod tenant {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub created_at: i64,
        /// A suspended tenant's members cannot sign in; its VMs keep running.
        pub suspended: bool,
    }
    no_relations!();
}

pub mod audit_log {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub at: i64,
        pub actor_id: Option<Uuid>,
        pub actor_name: String,
        pub tenant_id: Option<Uuid>,
        pub action: String,
        pub object_kind: String,
        pub object_id: String,
        pub client_addr: String,
        /// "ok", or the error's HTTP status and sentence.
        pub outcome: String,
    }
    no_relations!();
}

pub mod user {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub username: String,
        pub password_hash: Option<String>,
        pub provider_admin: bool,
        pub disabled: bool,
        pub created_at: i64,
        /// Signed in with a password someone else chose: only choosing one's own is allowed.
        pub must_change_password: bool,
        /// Sessions signed in before this (Unix ms) are void: revocation that a concurrent
        /// request of the same session cannot undo.
        pub sessions_valid_after: i64,
    }
    no_relations!();
}

pub mod membership {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "membership")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        pub role: String,
    }
    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub data: Vec<u8>,
        pub expires_at: i64,
        /// The signed-in user, copied out of `data` so their sessions can be ended.
        pub user_id: Option<Uuid>,
    }
    no_relations!();
}

pub mod host {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "host")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub scalable_unit: i32,
        pub system_model: String,
        pub agent_url: String,
        pub agent_connected: bool,
        pub cordoned: bool,
        /// The agent's last `HostInventory`, as JSON.
        #[sea_orm(column_type = "Text")]
        pub inventory: String,
        /// Bumped by every claim on this host; see `instances::instance_claim`.
        pub claim_generation: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod gpu {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gpu")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub host_id: Uuid,
        pub module_id: i32,
        pub smi_index: i32,
        pub model: String,
        pub pci_address: String,
        pub numa_node: i32,
        pub pcie_switch: String,
        /// `GpuHealth::as_str`; read it with [`Model::gpu_health`].
        pub health: String,
    }
    no_relations!();

    impl Model {
        pub fn gpu_health(&self) -> portal_types::topology::GpuHealth {
            portal_types::topology::GpuHealth::parse_or_failed(&self.health)
        }
    }
}

pub mod dpu {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dpu")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub host_name: String,
        pub model: String,
        pub agent_url: String,
        pub agent_connected: bool,
        pub updated_at: i64,
        /// The agent's last reported boot id (`DpuInventory.boot_id`).
        pub boot_id: Option<String>,
    }
    no_relations!();
}

pub mod switch {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "switch")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub model: String,
        pub scalable_unit: i32,
        pub rail: i32,
        pub agent_url: String,
        pub agent_connected: bool,
        pub updated_at: i64,
        /// The agent's last reported boot id (`SwitchInventory.boot_id`).
        pub boot_id: Option<String>,
    }
    no_relations!();
}

pub mod instance {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        /// Catalog name at launch time (the catalog entry may change later).
        pub instance_type: String,
        pub state: String,
        pub gpu_count: i32,
        pub gpu_model: String,
        pub vcpus: i32,
        pub memory_gib: i32,
        pub disk_gib: i32,
        pub host_id: Option<Uuid>,
        /// The `VmSpec` sent to the host agent, as JSON.
        #[sea_orm(column_type = "Text", nullable)]
        pub spec: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub message: Option<String>,
        pub generation: i64,
        /// Why the VM is to leave its host (`delete`, `undo`), or `done` once the host
        /// confirmed it is gone; see `crate::app::removal`.
        pub vm_removal: Option<String>,
        /// The image's catalog name and store file at launch time (none before images).
        pub image: Option<String>,
        pub image_source: Option<String>,
        /// `<key>/<n>` for the n-th VM of a launch that carried an idempotency key.
        pub idempotency_key: Option<String>,
        /// The SSH keys the launch put into the VM: JSON `[[name, public key line], …]`.
        #[sea_orm(column_type = "Text", nullable)]
        pub ssh_keys: Option<String>,
        /// cloud-init user data for the VM's config drive (none: the image's default).
        #[sea_orm(column_type = "Text", nullable)]
        pub user_data: Option<String>,
        /// The subnet its launch asked for (none: the tenant's default).
        pub subnet_id: Option<Uuid>,
        /// The security group ids its launch asked for, a JSON array (none: the default).
        #[sea_orm(column_type = "Text", nullable)]
        pub security_groups: Option<String>,
        /// The type's price when it was launched, in micros per hour (what the user saw).
        pub price_micros_per_hour: Option<i64>,
        pub created_by: Uuid,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod gpu_claim {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gpu_claim")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub gpu_id: Uuid,
        pub instance_id: Uuid,
        pub host_id: Uuid,
    }
    no_relations!();
}

pub mod instance_type {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_type")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub gpu_model: String,
        pub gpu_count: i32,
        pub vcpus: i32,
        pub memory_gib: i32,
        pub disk_gib: i32,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod quota {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "quota")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource: String,
        pub max_value: i64,
    }
    no_relations!();
}

/// The quota every tenant without a limit of its own gets; `max_value = -1` is unlimited.
pub mod default_quota {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "default_quota")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource: String,
        pub max_value: i64,
    }
    no_relations!();
}

pub mod identity_provider {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_provider")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The slug in `/auth/oidc/{name}/login`.
        pub name: String,
        pub display_name: String,
        pub issuer_url: String,
        pub client_id: String,
        /// Encrypted with the portal's secret key (see `oidc::secrets`) once `client_secret_sealed`.
        pub client_secret: String,
        pub tenant_id: Uuid,
        /// Comma-separated, lower case; empty: no restriction.
        pub email_domains: String,
        pub group_claim: String,
        /// JSON list of `{"group": …, "role": …}`.
        #[sea_orm(column_type = "Text")]
        pub role_rules: String,
        /// A role, or "none": users no rule matches are refused.
        pub default_role: String,
        pub created_at: i64,
        /// False only for rows written before secrets were encrypted, until the next start.
        pub client_secret_sealed: bool,
    }
    no_relations!();
}

pub mod external_identity {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "external_identity")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider_id: Uuid,
        /// The provider's `sub` claim.
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub user_id: Uuid,
        pub created_at: i64,
        pub last_sign_in_at: i64,
    }
    no_relations!();
}

pub mod api_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_token")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub tenant_id: Uuid,
        pub role: String,
        pub name: String,
        pub prefix: String,
        /// SHA-256 of the whole token, hex.
        pub hash: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub last_used_at: Option<i64>,
        pub revoked_at: Option<i64>,
    }
    no_relations!();
}

pub mod ssh_key {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ssh_key")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub algorithm: String,
        /// `SHA256:…`, as `ssh-keygen -lf` prints it.
        pub fingerprint: String,
        /// One OpenSSH line: `type base64 comment`.
        pub public_key: String,
        pub comment: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod login_failure {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_failure")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// `user:<lowercase name>` or `ip:<address>`.
        pub key: String,
        /// Milliseconds since the Unix epoch.
        pub at: i64,
    }
    no_relations!();
}

pub mod console_session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "console_session")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        /// When its replica last refreshed it (ms since the Unix epoch).
        pub seen_at: i64,
    }
    no_relations!();
}

pub mod saga {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        /// The saga's DAG with its parameters, as steno serializes it (JSON).
        pub dag: String,
        /// `running`, `unwinding` or `done`.
        pub state: String,
        /// The replica that runs it, until `lease_expires_at` (ms).
        pub owner: String,
        pub lease_expires_at: i64,
        pub created_at: i64,
        pub updated_at: i64,
        /// The instance the saga is about, from its parameters (none for rows from before
        /// migration 16).
        pub instance_id: Option<Uuid>,
    }
    no_relations!();
}

pub mod saga_node_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "saga_node_event")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub saga_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub node_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_type: String,
        /// The event as steno serializes it (JSON), output or error included.
        pub data: Option<String>,
        pub at: i64,
    }
    no_relations!();
}

pub mod image {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "image")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub name: String,
        pub os: String,
        pub cuda_version: String,
        pub driver_version: String,
        pub default_user: String,
        pub source: String,
        pub retired: bool,
        pub created_at: i64,
        pub updated_at: i64,
    }
    no_relations!();
}

pub mod vpc {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "vpc")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        /// The L3 VNI of its VRF.
        pub vni: i64,
        pub is_default: bool,
        pub created_at: i64,
        /// Bumped when its subnets change or it leaves a leaf.
        pub generation: i64,
    }
    no_relations!();
}

pub mod subnet {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subnet")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub vpc_id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub cidr: String,
        /// Its L2 VNI.
        pub vni: i64,
        pub is_default: bool,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod security_group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_group")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        pub description: String,
        pub is_default: bool,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod security_rule {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "security_rule")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub group_id: Uuid,
        /// `ingress` | `egress`.
        pub direction: String,
        /// `tcp` | `udp` | `icmp` | `any`.
        pub protocol: String,
        pub port_min: Option<i32>,
        pub port_max: Option<i32>,
        pub remote_cidr: Option<String>,
        pub remote_group_id: Option<Uuid>,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod port {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "port")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub instance_id: Uuid,
        pub tenant_id: Uuid,
        pub subnet_id: Uuid,
        pub ip: String,
        pub mac: String,
        /// The DPU that enforces its groups; none when its host has none.
        pub dpu_name: Option<String>,
        /// Bumped by every change its DPU must see;
        pub generation: i64,
        /// the last one the DPU confirmed.
        pub applied_generation: i64,
        pub created_at: i64,
        /// Why the DPU refused the latest change; none once it confirms one.
        pub message: Option<String>,
    }
    no_relations!();
}

pub mod public_ip_pool {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "public_ip_pool")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub name: String,
        pub cidr: String,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod public_ip {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "public_ip")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub pool_id: Uuid,
        pub tenant_id: Uuid,
        pub name: String,
        #[sea_orm(unique)]
        pub address: String,
        /// The instance it is attached to (at most one public IP each).
        #[sea_orm(unique)]
        pub instance_id: Option<Uuid>,
        pub created_at: i64,
        /// When `instance_id` last changed (the time the trigger logs it with).
        pub attachment_changed_at: i64,
    }
    no_relations!();
}

pub mod port_security_group {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "port_security_group")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub port_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: Uuid,
    }
    no_relations!();
}

pub mod switch_vpc {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "switch_vpc")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub switch_name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub vpc_id: Uuid,
        /// The generation the leaf confirmed (0: to be sent again).
        pub generation: i64,
    }
    no_relations!();
}

/// Every state an instance entered, written by a database trigger with the state change.
pub mod instance_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_event")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub instance_id: Uuid,
        pub state: String,
        pub at_ms: i64,
    }
    no_relations!();
}

/// Every attachment and detachment of a public IP, per instance (written by a trigger).
pub mod public_ip_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "public_ip_event")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub instance_id: Uuid,
        pub attached: bool,
        pub at_ms: i64,
    }
    no_relations!();
}

/// The instances whose state or public IP log grew since metering last read it (added by
/// the triggers).
pub mod metering_dirty {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "metering_dirty")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: Uuid,
    }
    no_relations!();
}

pub mod price {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "price")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub effective_from_ms: i64,
        pub micros_per_hour: i64,
        pub created_by: Option<Uuid>,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod usage_record {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_record")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub start_s: i64,
        pub end_s: i64,
        pub quantity: i64,
        pub tenant_id: Uuid,
        pub instance_name: String,
        pub gpu_model: String,
        pub gpu_count: i32,
        pub scalable_unit: Option<i32>,
        pub launched_by: Uuid,
        pub micros_per_hour: i64,
    }
    no_relations!();
}

pub mod tenant_budget {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenant_budget")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        pub monthly_cents: i64,
    }
    no_relations!();
}

pub mod budget_alert {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "budget_alert")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub month: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub percent: i32,
        pub at: i64,
    }
    no_relations!();
}

pub mod credit_grant {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credit_grant")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub cents: i64,
        pub note: String,
        pub created_by: Option<Uuid>,
        pub created_at: i64,
    }
    no_relations!();
}

/// The usage records summed per month, instance, item, quantity and price.
pub mod usage_line {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_line")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub month: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub item: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub quantity: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub micros_per_hour: i64,
        pub tenant_id: Uuid,
        pub instance_name: String,
        pub gpu_model: String,
        pub gpu_count: i32,
        pub scalable_unit: Option<i32>,
        pub launched_by: Uuid,
        pub seconds: i64,
        pub first_s: i64,
        pub last_s: i64,
    }
    no_relations!();
}

/// The usage records summed per UTC day, tenant, GPU model, quantity and price.
pub mod usage_day {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_day")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub gpu_model: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub quantity: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub micros_per_hour: i64,
        pub seconds: i64,
    }
    no_relations!();
}

pub mod gpu_fabric {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gpu_fabric")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub tenant_id: Uuid,
        /// Its L3 VNI; each rail's L2 VNI derives from it (`gpu_fabric::rail_vni`).
        #[sea_orm(unique)]
        pub vni: i64,
        /// Bumped by every change its leaves must see (a NIC joins or leaves).
        pub generation: i64,
        pub created_at: i64,
    }
    no_relations!();
}

pub mod fabric_nic {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fabric_nic")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: Uuid,
        /// The SuperNIC's index on its host.
        #[sea_orm(primary_key, auto_increment = false)]
        pub nic_index: i32,
        pub fabric_id: Uuid,
        pub rail: i32,
        pub host_name: String,
        /// The rail leaf it is cabled to (the host inventory's `leaf_switch_id`).
        pub leaf: String,
        pub mac: String,
        /// An address of its rail's subnet.
        pub ip: String,
    }
    no_relations!();
}
