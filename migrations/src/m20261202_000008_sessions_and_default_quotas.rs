//! Sessions can be revoked for good: each user has a time before which every session of
//! theirs is void (a request of a revoked session can no longer write it back). Quotas: the
//! defaults every tenant without a limit of its own gets, and an explicit "unlimited"
//! (`max_value = -1`) so that a missing limit no longer means unlimited; tenants that exist
//! already keep what they had, as explicit unlimited rows.

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
                    .table(User::Table)
                    .add_column(big_integer(User::SessionsValidAfter).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DefaultQuota::Table)
                    .col(string(DefaultQuota::Resource).primary_key())
                    .col(big_integer(DefaultQuota::MaxValue))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // What a new tenant may use until a provider admin says otherwise: a small team's
        // share: one 8-GPU node and a few CPU-only VMs.
        db.execute_unprepared(
            "INSERT INTO default_quota (resource, max_value) VALUES \
             ('instances', 10), ('vcpus', 256), ('memory_gib', 2048), ('gpus:H100-SXM5-80GB', 8)",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO quota (tenant_id, resource, max_value) \
             SELECT t.id, r.resource, -1 FROM tenant t CROSS JOIN ( \
               SELECT 'instances' AS resource UNION SELECT 'vcpus' UNION SELECT 'memory_gib' \
               UNION SELECT DISTINCT 'gpus:' || gpu_model FROM instance_type WHERE gpu_count > 0 \
             ) r \
             WHERE NOT EXISTS (SELECT 1 FROM quota q WHERE q.tenant_id = t.id AND q.resource = r.resource)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(DefaultQuota::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter().table(User::Table).drop_column(User::SessionsValidAfter).to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum User {
    #[sea_orm(iden = "users")]
    Table,
    SessionsValidAfter,
}

#[derive(DeriveIden)]
enum DefaultQuota {
    Table,
    Resource,
    MaxValue,
}
