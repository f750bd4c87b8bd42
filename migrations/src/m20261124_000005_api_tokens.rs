//! API tokens for scripts and the CLI: stored as SHA-256 hashes, scoped to a tenant and a
//! role, expiring, revocable, with the time they were last used.

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
                    .table(ApiToken::Table)
                    .col(pk_uuid(ApiToken::Id))
                    .col(uuid(ApiToken::UserId))
                    .col(uuid(ApiToken::TenantId))
                    .col(string(ApiToken::Role))
                    .col(string(ApiToken::Name))
                    .col(string_uniq(ApiToken::Prefix))
                    .col(string(ApiToken::Hash))
                    .col(big_integer(ApiToken::CreatedAt))
                    .col(big_integer(ApiToken::ExpiresAt))
                    .col(big_integer_null(ApiToken::LastUsedAt))
                    .col(big_integer_null(ApiToken::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiToken::Table, ApiToken::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiToken::Table, ApiToken::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiToken::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ApiToken {
    Table,
    Id,
    UserId,
    TenantId,
    Role,
    Name,
    /// The token's first characters, shown in lists and used to find it.
    Prefix,
    Hash,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}
