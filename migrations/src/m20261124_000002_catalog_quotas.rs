//! The instance-type catalog, per-tenant quotas, and which type each instance is.

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
                    .table(InstanceType::Table)
                    .col(pk_uuid(InstanceType::Id))
                    .col(string_uniq(InstanceType::Name))
                    .col(string(InstanceType::GpuModel))
                    .col(integer(InstanceType::GpuCount))
                    .col(integer(InstanceType::Vcpus))
                    .col(integer(InstanceType::MemoryGib))
                    .col(integer(InstanceType::DiskGib))
                    .col(big_integer(InstanceType::PriceCentsPerHour))
                    .col(big_integer(InstanceType::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A missing row means no limit for that resource.
        manager
            .create_table(
                Table::create()
                    .table(Quota::Table)
                    .col(uuid(Quota::TenantId))
                    .col(string(Quota::Resource))
                    .col(big_integer(Quota::MaxValue))
                    .primary_key(Index::create().col(Quota::TenantId).col(Quota::Resource))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Quota::Table, Quota::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .add_column(string(Instance::TypeName).default(""))
                    .to_owned(),
            )
            .await?;
        // SQLite takes one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Instance::Table)
                    .add_column(integer(Instance::DiskGib).default(0))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Instance::DiskGib, Instance::TypeName] {
            manager
                .alter_table(Table::alter().table(Instance::Table).drop_column(column).to_owned())
                .await?;
        }
        manager.drop_table(Table::drop().table(Quota::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(InstanceType::Table).to_owned()).await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum InstanceType {
    Table,
    Id,
    Name,
    GpuModel,
    GpuCount,
    Vcpus,
    MemoryGib,
    DiskGib,
    PriceCentsPerHour,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Quota {
    Table,
    TenantId,
    Resource,
    MaxValue,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    /// The `instance_type` column (the variant may not repeat the enum's name).
    #[sea_orm(iden = "instance_type")]
    TypeName,
    DiskGib,
}
