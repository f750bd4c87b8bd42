//! The tenant fabric: a generation per VPC (bumped when its subnets change, or before it is
//! removed from a leaf, so that a leaf never takes an older spec back), and which VPC each
//! leaf has confirmed holding at which generation (the network reconciler's record).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Vpc::Table)
                    .add_column(big_integer(Vpc::Generation).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SwitchVpc::Table)
                    .col(string(SwitchVpc::SwitchName))
                    .col(uuid(SwitchVpc::VpcId))
                    .col(big_integer(SwitchVpc::Generation))
                    .primary_key(Index::create().col(SwitchVpc::SwitchName).col(SwitchVpc::VpcId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SwitchVpc::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(Vpc::Table).drop_column(Vpc::Generation).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Vpc {
    Table,
    Generation,
}

#[derive(DeriveIden)]
enum SwitchVpc {
    Table,
    SwitchName,
    /// No foreign key: the row must outlive a deleted VPC until its leaf drops it.
    VpcId,
    /// The generation the leaf confirmed (0: to be sent again).
    Generation,
}
