//! The boot id each DPU and switch agent last reported: a replica that starts finds an
//! agent with the same one still holding what it was sent (nothing to send again), and of
//! several replicas noticing a restart only the first to record the new id acts on it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Agent::Dpu, Agent::Switch] {
            manager
                .alter_table(
                    Table::alter().table(table).add_column(string_null(Agent::BootId)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Agent::Dpu, Agent::Switch] {
            manager
                .alter_table(Table::alter().table(table).drop_column(Agent::BootId).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Agent {
    Dpu,
    Switch,
    BootId,
}
