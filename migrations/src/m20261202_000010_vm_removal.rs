//! An instance remembers why the control plane asked its host to remove the VM
//! (`vm_removal`: `delete` or `undo`), and `done` once the host confirmed the VM is gone.
//! Its GPUs are released only then: a VM whose removal failed may still run on them.
//!
//! Failed GPU instances without GPU claims were undone launches whose claims the old code
//! released at once; they count as removed, so they hold nothing after the upgrade either.

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
                    .add_column(string_null(Instance::VmRemoval))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE instance SET vm_removal = 'done'
                 WHERE state = 'deleted'
                    OR (state = 'failed' AND gpu_count > 0 AND NOT EXISTS
                        (SELECT 1 FROM gpu_claim WHERE gpu_claim.instance_id = instance.id))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Instance::Table).drop_column(Instance::VmRemoval).to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    VmRemoval,
}
