//! Suspending tenants, sessions findable by user (to end them on role change or disable),
//! and the audit log of every mutating call.

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
                    .table(Tenant::Table)
                    .add_column(boolean(Tenant::Suspended).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Session::Table)
                    .add_column(uuid_null(Session::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("session_user")
                    .table(Session::Table)
                    .col(Session::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(pk_uuid(AuditLog::Id))
                    .col(big_integer(AuditLog::At))
                    .col(uuid_null(AuditLog::ActorId))
                    .col(string(AuditLog::ActorName))
                    .col(uuid_null(AuditLog::TenantId))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::ObjectKind))
                    .col(string(AuditLog::ObjectId))
                    .col(string(AuditLog::ClientAddr))
                    .col(string(AuditLog::Outcome))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_tenant_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::TenantId)
                    .col(AuditLog::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_log_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await?;
        manager
            .drop_index(Index::drop().name("session_user").table(Session::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter().table(Session::Table).drop_column(Session::UserId).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Tenant::Table).drop_column(Tenant::Suspended).to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Suspended,
}

#[derive(DeriveIden)]
enum Session {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    ActorName,
    TenantId,
    Action,
    ObjectKind,
    ObjectId,
    ClientAddr,
    Outcome,
}
