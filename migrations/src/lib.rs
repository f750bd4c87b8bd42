//! Database migrations, written once for SQLite (the embedded default) and PostgreSQL.
//! Timestamps are Unix milliseconds (`BIGINT`) so both engines store and compare them alike.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_foundation;
mod m20261124_000002_catalog_quotas;
mod m20261124_000003_identity_providers;
mod m20261124_000004_tenancy_audit;
mod m20261124_000005_api_tokens;
mod m20261124_000006_password_change;
mod m20261124_000007_login_failures;
mod m20261202_000008_sessions_and_default_quotas;
mod m20261202_000009_oidc_hardening;
mod m20261202_000010_vm_removal;
mod m20261202_000011_sagas;
mod m20261203_000012_images;
mod m20261203_000013_ssh_keys;
mod m20261203_000014_idempotency_keys;
mod m20261203_000015_instance_ssh_keys;
mod m20261203_000016_saga_instance;
mod m20261203_000017_instance_user_data;
mod m20261203_000018_networking;
mod m20261203_000019_fabric;
mod m20261203_000020_metering;
mod m20261203_000021_console_sessions;
mod m20261203_000022_agent_boot_ids;
mod m20261203_000023_public_ips;
mod m20261203_000024_port_message;
mod m20261203_000025_gpu_fabric;
mod m20261204_000026_public_ip_metering;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_foundation::Migration),
            Box::new(m20261124_000002_catalog_quotas::Migration),
            Box::new(m20261124_000003_identity_providers::Migration),
            Box::new(m20261124_000004_tenancy_audit::Migration),
            Box::new(m20261124_000005_api_tokens::Migration),
            Box::new(m20261124_000006_password_change::Migration),
            Box::new(m20261124_000007_login_failures::Migration),
            Box::new(m20261202_000008_sessions_and_default_quotas::Migration),
            Box::new(m20261202_000009_oidc_hardening::Migration),
            Box::new(m20261202_000010_vm_removal::Migration),
            Box::new(m20261202_000011_sagas::Migration),
            Box::new(m20261203_000012_images::Migration),
            Box::new(m20261203_000013_ssh_keys::Migration),
            Box::new(m20261203_000014_idempotency_keys::Migration),
            Box::new(m20261203_000015_instance_ssh_keys::Migration),
            Box::new(m20261203_000016_saga_instance::Migration),
            Box::new(m20261203_000017_instance_user_data::Migration),
            Box::new(m20261203_000018_networking::Migration),
            Box::new(m20261203_000019_fabric::Migration),
            Box::new(m20261203_000020_metering::Migration),
            Box::new(m20261203_000021_console_sessions::Migration),
            Box::new(m20261203_000022_agent_boot_ids::Migration),
            Box::new(m20261203_000023_public_ips::Migration),
            Box::new(m20261203_000024_port_message::Migration),
            Box::new(m20261203_000025_gpu_fabric::Migration),
            Box::new(m20261204_000026_public_ip_metering::Migration),
        ]
    }
}
