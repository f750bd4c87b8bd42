//! OpenID Connect identity providers, and which external identity (provider + `sub`) is
//! which portal user. The link lives in its own table instead of new `users` columns: a
//! subject is unique per provider only, and a user created by one provider must never be
//! signed in by another that happens to assert the same e-mail address.

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
                    .table(IdentityProvider::Table)
                    .col(pk_uuid(IdentityProvider::Id))
                    .col(string_uniq(IdentityProvider::Name))
                    .col(string(IdentityProvider::DisplayName))
                    .col(string(IdentityProvider::IssuerUrl))
                    .col(string(IdentityProvider::ClientId))
                    .col(string(IdentityProvider::ClientSecret))
                    .col(uuid(IdentityProvider::TenantId))
                    // Comma-separated, lower case; empty: any e-mail address (or none).
                    .col(string(IdentityProvider::EmailDomains).default(""))
                    .col(string(IdentityProvider::GroupClaim).default("groups"))
                    // JSON: [{"group": "...", "role": "member"}, ...]
                    .col(text(IdentityProvider::RoleRules))
                    .col(string(IdentityProvider::DefaultRole))
                    .col(big_integer(IdentityProvider::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdentityProvider::Table, IdentityProvider::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExternalIdentity::Table)
                    .col(uuid(ExternalIdentity::ProviderId))
                    .col(string(ExternalIdentity::Subject))
                    .col(uuid(ExternalIdentity::UserId))
                    .col(big_integer(ExternalIdentity::CreatedAt))
                    .col(big_integer(ExternalIdentity::LastSignInAt))
                    .primary_key(
                        Index::create()
                            .col(ExternalIdentity::ProviderId)
                            .col(ExternalIdentity::Subject),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExternalIdentity::Table, ExternalIdentity::ProviderId)
                            .to(IdentityProvider::Table, IdentityProvider::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExternalIdentity::Table, ExternalIdentity::UserId)
                            .to(User::Table, User::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("external_identity_user")
                    .table(ExternalIdentity::Table)
                    .col(ExternalIdentity::UserId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ExternalIdentity::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(IdentityProvider::Table).to_owned()).await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum IdentityProvider {
    Table,
    Id,
    Name,
    DisplayName,
    IssuerUrl,
    ClientId,
    ClientSecret,
    TenantId,
    EmailDomains,
    GroupClaim,
    RoleRules,
    DefaultRole,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ExternalIdentity {
    Table,
    ProviderId,
    Subject,
    UserId,
    CreatedAt,
    LastSignInAt,
}

#[derive(DeriveIden)]
enum Tenant {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum User {
    #[sea_orm(iden = "users")]
    Table,
    Id,
}
