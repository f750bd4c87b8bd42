//! Why a port's DPU refused its latest change (none once it confirms one), for the instance
//! page and the public IP list: a refusal that retrying cannot fix (a DPU without an uplink
//! for a public IP) is then said instead of a port pending forever.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Port::Table).add_column(string_null(Port::Message)).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Port::Table).drop_column(Port::Message).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Port {
    Table,
    Message,
}
