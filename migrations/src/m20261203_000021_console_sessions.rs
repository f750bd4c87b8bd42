//! Open serial consoles, one row each, so the per-user limit holds across replicas: a row
//! is refreshed by the replica serving the console and counts only while it is fresh.

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
                    .table(ConsoleSession::Table)
                    .col(pk_uuid(ConsoleSession::Id))
                    .col(uuid(ConsoleSession::UserId))
                    .col(big_integer(ConsoleSession::SeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("console_session_user")
                    .table(ConsoleSession::Table)
                    .col(ConsoleSession::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ConsoleSession::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ConsoleSession {
    Table,
    Id,
    UserId,
    SeenAt,
}
