//! Users' SSH public keys, to be put into the VMs they launch: one row per key of a user in
//! a tenant, with its name, type, SHA-256 fingerprint and the public key line.

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
                    .table(SshKey::Table)
                    .col(pk_uuid(SshKey::Id))
                    .col(uuid(SshKey::UserId))
                    .col(uuid(SshKey::TenantId))
                    .col(string(SshKey::Name))
                    .col(string(SshKey::Algorithm))
                    .col(string(SshKey::Fingerprint))
                    .col(text(SshKey::PublicKey))
                    .col(string(SshKey::Comment))
                    .col(big_integer(SshKey::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SshKey::Table, SshKey::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SshKey::Table, SshKey::TenantId)
                            .to(Tenant::Table, Tenant::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Names and keys are unique per user and tenant; the indexes settle concurrent adds.
        for (name, column) in
            [("ssh_key_user_name", SshKey::Name), ("ssh_key_user_fingerprint", SshKey::Fingerprint)]
        {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(SshKey::Table)
                        .col(SshKey::UserId)
                        .col(SshKey::TenantId)
                        .col(column)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SshKey::Table).to_owned()).await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum SshKey {
    Table,
    Id,
    UserId,
    TenantId,
    Name,
    /// The OpenSSH algorithm name, e.g. `ssh-ed25519`.
    Algorithm,
    /// `SHA256:…` of the key.
    Fingerprint,
    /// The key as one OpenSSH line (`type base64 comment`), never a private key.
    PublicKey,
    Comment,
    CreatedAt,
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
