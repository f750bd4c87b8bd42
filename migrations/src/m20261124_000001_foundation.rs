//! Identity (tenants, users, memberships, sessions), the fleet as agents report it (hosts,
//! GPUs, NICs, DPUs, switches) and instances with their GPU claims.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenant::Table)
                    .col(pk_uuid(Tenant::Id))
                    .col(string_uniq(Tenant::Name))
                    .col(big_integer(Tenant::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(User::Table)
                    .col(pk_uuid(User::Id))
                    .col(string_uniq(User::Username))
                    .col(string_null(User::PasswordHash))
                    .col(boolean(User::ProviderAdmin))
                    .col(boolean(User::Disabled))
                    .col(big_integer(User::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Membership::Table)
                    .col(uuid(Membership::UserId))
                    .col(uuid(Membership::TenantId))
                    .col(string(Membership::Role))
                    .primary_key(Index::create().col(Membership::UserId).col(Membership::TenantId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Membership::Table, Membership::UserId)
                            .to(User::Table, User::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Membership::Table, Membership::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Session::Table)
                    .col(string(Session::Id).primary_key().take())
                    .col(blob(Session::Data))
                    .col(big_integer(Session::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("session_expires_at")
                    .table(Session::Table)
                    .col(Session::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        // The fleet: one row per agent-reported object, keyed by the agent's stable name.
        manager
            .create_table(
                Table::create()
                    .table(Host::Table)
                    .col(pk_uuid(Host::Id))
                    .col(string_uniq(Host::Name))
                    .col(integer(Host::ScalableUnit))
                    .col(string(Host::SystemModel))
                    .col(string(Host::AgentUrl))
                    .col(boolean(Host::AgentConnected))
                    .col(boolean(Host::Cordoned))
                    .col(text(Host::Inventory))
                    .col(big_integer(Host::ClaimGeneration).default(0))
                    .col(big_integer(Host::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Gpu::Table)
                    .col(pk_uuid(Gpu::Id))
                    .col(uuid(Gpu::HostId))
                    .col(integer(Gpu::ModuleId))
                    .col(integer(Gpu::SmiIndex))
                    .col(string(Gpu::Model))
                    .col(string(Gpu::PciAddress))
                    .col(integer(Gpu::NumaNode))
                    .col(string(Gpu::PcieSwitch))
                    .col(string(Gpu::Health))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Gpu::Table, Gpu::HostId)
                            .to(Host::Table, Host::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("gpu_host_module")
                    .table(Gpu::Table)
                    .col(Gpu::HostId)
                    .col(Gpu::ModuleId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Dpu::Table)
                    .col(pk_uuid(Dpu::Id))
                    .col(string_uniq(Dpu::Name))
                    .col(string(Dpu::HostName))
                    .col(string(Dpu::Model))
                    .col(string(Dpu::AgentUrl))
                    .col(boolean(Dpu::AgentConnected))
                    .col(big_integer(Dpu::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Switch::Table)
                    .col(pk_uuid(Switch::Id))
                    .col(string_uniq(Switch::Name))
                    .col(string(Switch::Model))
                    .col(integer(Switch::ScalableUnit))
                    .col(integer(Switch::Rail))
                    .col(string(Switch::AgentUrl))
                    .col(boolean(Switch::AgentConnected))
                    .col(big_integer(Switch::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Instance::Table)
                    .col(pk_uuid(Instance::Id))
                    .col(uuid(Instance::TenantId))
                    .col(string(Instance::Name))
                    .col(string(Instance::State))
                    .col(integer(Instance::GpuCount))
                    .col(string(Instance::GpuModel))
                    .col(integer(Instance::Vcpus))
                    .col(integer(Instance::MemoryGib))
                    .col(uuid_null(Instance::HostId))
                    .col(text_null(Instance::Spec))
                    .col(text_null(Instance::Message))
                    .col(big_integer(Instance::Generation))
                    .col(uuid(Instance::CreatedBy))
                    .col(big_integer(Instance::CreatedAt))
                    .col(big_integer(Instance::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Instance::Table, Instance::TenantId)
                            .to(Tenant::Table, Tenant::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("instance_tenant_state")
                    .table(Instance::Table)
                    .col(Instance::TenantId)
                    .col(Instance::State)
                    .to_owned(),
            )
            .await?;
        // A GPU is claimed by at most one instance: the primary key is the GPU, so two
        // replicas racing for the same GPU cannot both commit.
        manager
            .create_table(
                Table::create()
                    .table(GpuClaim::Table)
                    .col(uuid(GpuClaim::GpuId).primary_key().take())
                    .col(uuid(GpuClaim::InstanceId))
                    .col(uuid(GpuClaim::HostId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(GpuClaim::Table, GpuClaim::GpuId)
                            .to(Gpu::Table, Gpu::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(GpuClaim::Table, GpuClaim::InstanceId)
                            .to(Instance::Table, Instance::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("gpu_claim_instance")
                    .table(GpuClaim::Table)
                    .col(GpuClaim::InstanceId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GpuClaim::Table.into_iden(),
            Instance::Table.into_iden(),
            Switch::Table.into_iden(),
            Dpu::Table.into_iden(),
            Gpu::Table.into_iden(),
            Host::Table.into_iden(),
            Session::Table.into_iden(),
            Membership::Table.into_iden(),
            User::Table.into_iden(),
            Tenant::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum User {
    #[sea_orm(iden = "users")]
    Table,
    Id,
    Username,
    PasswordHash,
    ProviderAdmin,
    Disabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Membership {
    Table,
    UserId,
    TenantId,
    Role,
}

#[derive(DeriveIden)]
enum Session {
    Table,
    Id,
    Data,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Host {
    Table,
    Id,
    Name,
    ScalableUnit,
    SystemModel,
    AgentUrl,
    AgentConnected,
    Cordoned,
    Inventory,
    /// Bumped by every claim on the host: a claim decided on an older read loses.
    ClaimGeneration,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Gpu {
    Table,
    Id,
    HostId,
    ModuleId,
    /// The nvidia-smi index (informational; placement uses module ids).
    SmiIndex,
    Model,
    PciAddress,
    NumaNode,
    PcieSwitch,
    Health,
}

#[derive(DeriveIden)]
enum Dpu {
    Table,
    Id,
    Name,
    HostName,
    Model,
    AgentUrl,
    AgentConnected,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Switch {
    Table,
    Id,
    Name,
    Model,
    ScalableUnit,
    Rail,
    AgentUrl,
    AgentConnected,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    Id,
    TenantId,
    Name,
    State,
    GpuCount,
    GpuModel,
    Vcpus,
    MemoryGib,
    HostId,
    Spec,
    Message,
    Generation,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GpuClaim {
    Table,
    GpuId,
    InstanceId,
    HostId,
}
