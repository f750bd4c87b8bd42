//! The SSH keys a launch put into its VMs (names and public key lines, JSON), recorded with
//! the instance: deleting a key later does not change what the VM was given.

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
                    .table(Instance::Table)
                    .add_column(text_null(Instance::SshKeys))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Instance::Table).drop_column(Instance::SshKeys).to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    SshKeys,
}
