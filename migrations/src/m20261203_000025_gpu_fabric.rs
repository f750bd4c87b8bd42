//! The per-tenant GPU fabric: the east-west network over the VMs' SuperNICs. Each tenant has
//! one (made when its first GPU VM launches) with an L3 VNI of its own; every SuperNIC a VM
//! is given joins it on its rail with an address of that rail's subnet, and the rail leaf
//! puts the port cabled to it into the tenant's segment. `generation` counts the changes
//! the leaves must see (`switch_vpc` records what each confirmed, as for VPCs).

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
                    .table(GpuFabric::Table)
                    .col(pk_uuid(GpuFabric::Id))
                    // Unique: one fabric per tenant; the index settles two first launches.
                    .col(uuid_uniq(GpuFabric::TenantId))
                    .col(big_integer_uniq(GpuFabric::Vni))
                    .col(big_integer(GpuFabric::Generation))
                    .col(big_integer(GpuFabric::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(GpuFabric::Table, GpuFabric::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FabricNic::Table)
                    .col(uuid(FabricNic::InstanceId))
                    .col(integer(FabricNic::NicIndex))
                    .col(uuid(FabricNic::FabricId))
                    .col(integer(FabricNic::Rail))
                    .col(string(FabricNic::HostName))
                    .col(string(FabricNic::Leaf))
                    .col(string(FabricNic::Mac))
                    .col(string(FabricNic::Ip))
                    .primary_key(
                        Index::create().col(FabricNic::InstanceId).col(FabricNic::NicIndex),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(FabricNic::Table, FabricNic::FabricId)
                            .to(GpuFabric::Table, GpuFabric::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Unique: the index settles two launches picking one address (rails' subnets are
        // disjoint, so the fabric and the address suffice).
        manager
            .create_index(
                Index::create()
                    .name("fabric_nic_fabric_ip")
                    .table(FabricNic::Table)
                    .col(FabricNic::FabricId)
                    .col(FabricNic::Ip)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(FabricNic::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(GpuFabric::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum GpuFabric {
    Table,
    Id,
    TenantId,
    Vni,
    Generation,
    CreatedAt,
}

#[derive(DeriveIden)]
enum FabricNic {
    Table,
    InstanceId,
    NicIndex,
    FabricId,
    Rail,
    HostName,
    Leaf,
    Mac,
    Ip,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}
