//! The instance a saga is about (`instance_create`, `_delete`, `_power`), as a column: the
//! instance page lists an instance's sagas without reading every saga's DAG. Filled from the
//! saga's parameters when its row is written; rows from before stay without it (they are
//! pruned a month after they finish).

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
                    .table(Saga::Table)
                    .add_column(uuid_null(Saga::InstanceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("saga_instance")
                    .table(Saga::Table)
                    .col(Saga::InstanceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("saga_instance").table(Saga::Table).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Saga::Table).drop_column(Saga::InstanceId).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Saga {
    Table,
    InstanceId,
}
