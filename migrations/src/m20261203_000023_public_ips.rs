//! Public IPs: the provider's pools (an IPv4 network each) and the addresses tenants take
//! from them, each attached to at most one instance (its port's private address is mapped
//! one to one to it on the DPU). Tenants get a default quota of 5 public IPs.

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
                    .table(PublicIpPool::Table)
                    .col(pk_uuid(PublicIpPool::Id))
                    .col(string_uniq(PublicIpPool::Name))
                    .col(string(PublicIpPool::Cidr))
                    .col(big_integer(PublicIpPool::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PublicIp::Table)
                    .col(pk_uuid(PublicIp::Id))
                    .col(uuid(PublicIp::PoolId))
                    .col(uuid(PublicIp::TenantId))
                    .col(string(PublicIp::Name))
                    // Unique: the index settles concurrent allocations of one address.
                    .col(string_uniq(PublicIp::Address))
                    // Unique: an instance has at most one public IP.
                    .col(uuid_null(PublicIp::InstanceId).unique_key())
                    .col(big_integer(PublicIp::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PublicIp::Table, PublicIp::PoolId)
                            .to(PublicIpPool::Table, PublicIpPool::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(PublicIp::Table, PublicIp::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Names are the tenant's handle on its addresses in the CLI: one each.
        manager
            .create_index(
                Index::create()
                    .name("public_ip_tenant_name")
                    .table(PublicIp::Table)
                    .col(PublicIp::TenantId)
                    .col(PublicIp::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO default_quota (resource, max_value) VALUES ('public_ips', 5) \
                 ON CONFLICT (resource) DO NOTHING",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PublicIp::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(PublicIpPool::Table).to_owned()).await?;
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM default_quota WHERE resource = 'public_ips'")
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum PublicIpPool {
    Table,
    Id,
    Name,
    Cidr,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PublicIp {
    Table,
    Id,
    PoolId,
    TenantId,
    Name,
    Address,
    InstanceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}
