//! Tenant networking: VPCs with their L3 VNI, subnets with their network and L2 VNI,
//! security groups and their allow rules, and ports (a VM's interface: subnet, address,
//! MAC, groups, the DPU that enforces them and how far that DPU has caught up). Instances
//! record the subnet and groups their launch asked for, for the create saga's port step.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tenant_fk = |table: DynIden, column: DynIden| {
            ForeignKey::create()
                .from(table, column)
                .to(Tenant::Table, Tenant::Id)
                .on_delete(ForeignKeyAction::Cascade)
                .to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(Vpc::Table)
                    .col(pk_uuid(Vpc::Id))
                    .col(uuid(Vpc::TenantId))
                    .col(string(Vpc::Name))
                    .col(big_integer_uniq(Vpc::Vni))
                    .col(boolean(Vpc::IsDefault))
                    .col(big_integer(Vpc::CreatedAt))
                    .foreign_key(&mut tenant_fk(Vpc::Table.into_iden(), Vpc::TenantId.into_iden()))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Subnet::Table)
                    .col(pk_uuid(Subnet::Id))
                    .col(uuid(Subnet::VpcId))
                    .col(uuid(Subnet::TenantId))
                    .col(string(Subnet::Name))
                    .col(string(Subnet::Cidr))
                    .col(big_integer_uniq(Subnet::Vni))
                    .col(boolean(Subnet::IsDefault))
                    .col(big_integer(Subnet::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Subnet::Table, Subnet::VpcId)
                            .to(Vpc::Table, Vpc::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SecurityGroup::Table)
                    .col(pk_uuid(SecurityGroup::Id))
                    .col(uuid(SecurityGroup::TenantId))
                    .col(string(SecurityGroup::Name))
                    .col(string(SecurityGroup::Description))
                    .col(boolean(SecurityGroup::IsDefault))
                    .col(big_integer(SecurityGroup::CreatedAt))
                    .foreign_key(&mut tenant_fk(
                        SecurityGroup::Table.into_iden(),
                        SecurityGroup::TenantId.into_iden(),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SecurityRule::Table)
                    .col(pk_uuid(SecurityRule::Id))
                    .col(uuid(SecurityRule::GroupId))
                    .col(string(SecurityRule::Direction))
                    .col(string(SecurityRule::Protocol))
                    .col(integer_null(SecurityRule::PortMin))
                    .col(integer_null(SecurityRule::PortMax))
                    .col(string_null(SecurityRule::RemoteCidr))
                    .col(uuid_null(SecurityRule::RemoteGroupId))
                    .col(big_integer(SecurityRule::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SecurityRule::Table, SecurityRule::GroupId)
                            .to(SecurityGroup::Table, SecurityGroup::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Port::Table)
                    .col(pk_uuid(Port::Id))
                    .col(uuid_uniq(Port::InstanceId))
                    .col(uuid(Port::TenantId))
                    .col(uuid(Port::SubnetId))
                    .col(string(Port::Ip))
                    .col(string(Port::Mac))
                    .col(string_null(Port::DpuName))
                    .col(big_integer(Port::Generation))
                    .col(big_integer(Port::AppliedGeneration))
                    .col(big_integer(Port::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Port::Table, Port::SubnetId)
                            .to(Subnet::Table, Subnet::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One address per VM in a subnet: the index settles concurrent allocations.
        manager
            .create_index(
                Index::create()
                    .name("port_subnet_ip")
                    .table(Port::Table)
                    .col(Port::SubnetId)
                    .col(Port::Ip)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PortSecurityGroup::Table)
                    .col(uuid(PortSecurityGroup::PortId))
                    .col(uuid(PortSecurityGroup::GroupId))
                    .primary_key(
                        Index::create()
                            .col(PortSecurityGroup::PortId)
                            .col(PortSecurityGroup::GroupId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(PortSecurityGroup::Table, PortSecurityGroup::PortId)
                            .to(Port::Table, Port::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(PortSecurityGroup::Table, PortSecurityGroup::GroupId)
                            .to(SecurityGroup::Table, SecurityGroup::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Names are unique where users pick them.
        for (name, table, cols) in [
            (
                "vpc_tenant_name",
                Vpc::Table.into_iden(),
                [Vpc::TenantId.into_iden(), Vpc::Name.into_iden()],
            ),
            (
                "subnet_vpc_name",
                Subnet::Table.into_iden(),
                [Subnet::VpcId.into_iden(), Subnet::Name.into_iden()],
            ),
            (
                "security_group_tenant_name",
                SecurityGroup::Table.into_iden(),
                [SecurityGroup::TenantId.into_iden(), SecurityGroup::Name.into_iden()],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(table).unique();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        for column in [Instance::SubnetId, Instance::SecurityGroups] {
            let def = match column {
                Instance::SubnetId => uuid_null(column),
                _ => text_null(column),
            };
            manager
                .alter_table(Table::alter().table(Instance::Table).add_column(def).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Instance::SubnetId, Instance::SecurityGroups] {
            manager
                .alter_table(Table::alter().table(Instance::Table).drop_column(column).to_owned())
                .await?;
        }
        for table in [
            PortSecurityGroup::Table.into_iden(),
            Port::Table.into_iden(),
            SecurityRule::Table.into_iden(),
            SecurityGroup::Table.into_iden(),
            Subnet::Table.into_iden(),
            Vpc::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Vpc {
    Table,
    Id,
    TenantId,
    Name,
    /// The L3 VNI of its VRF.
    Vni,
    IsDefault,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Subnet {
    Table,
    Id,
    VpcId,
    TenantId,
    Name,
    /// `10.0.0.0/20`.
    Cidr,
    /// Its L2 VNI.
    Vni,
    IsDefault,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SecurityGroup {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    IsDefault,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SecurityRule {
    Table,
    Id,
    GroupId,
    /// `ingress` | `egress`.
    Direction,
    /// `tcp` | `udp` | `icmp` | `any`.
    Protocol,
    /// Inclusive, TCP and UDP only.
    PortMin,
    PortMax,
    /// The remote network, or
    RemoteCidr,
    /// the VMs of this group.
    RemoteGroupId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Port {
    Table,
    Id,
    InstanceId,
    TenantId,
    SubnetId,
    Ip,
    Mac,
    /// The DPU that enforces its groups; none when its host has none.
    DpuName,
    /// Bumped by every change the DPU must see (rules, group members);
    Generation,
    /// and the last one the DPU confirmed.
    AppliedGeneration,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum PortSecurityGroup {
    Table,
    PortId,
    GroupId,
}

#[derive(DeriveIden, Clone, Copy)]
enum Instance {
    Table,
    /// The subnet its launch asked for.
    SubnetId,
    /// The security group ids its launch asked for, as a JSON array.
    SecurityGroups,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}
