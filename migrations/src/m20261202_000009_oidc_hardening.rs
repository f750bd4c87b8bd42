//! Single sign-on hardening. Client secrets are encrypted at rest: the key lives outside the
//! database (a key file or an environment variable), so this migration only marks every
//! existing secret as still plaintext; the control plane encrypts those rows on its first
//! start with the key (see `portal_controller::oidc::secrets`).
//!
//! Single sign-on users get usernames qualified by their provider, `alice@example.com (corp)`:
//! usernames are global, and a bare e-mail address let one tenant's provider, or a tenant
//! admin's invitation, take the name before the owner first signed in through her own
//! provider. Local usernames cannot contain spaces or parentheses, so the qualified names
//! never collide with them; provider names are unique, so neither do two providers' users.
//! A name made from the subject because no e-mail address was sent (`sub@corp`) becomes
//! `sub (corp)`.

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
                    .table(IdentityProvider::Table)
                    .add_column(boolean(IdentityProvider::ClientSecretSealed).default(false))
                    .to_owned(),
            )
            .await?;
        // The same SQL on SQLite and PostgreSQL; a user has at most one link today.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE users SET username = (
                    SELECT CASE WHEN users.username = e.subject || '@' || p.name
                                THEN e.subject ELSE users.username END
                           || ' (' || p.name || ')'
                    FROM external_identity e JOIN identity_provider p ON p.id = e.provider_id
                    WHERE e.user_id = users.id
                    ORDER BY e.created_at LIMIT 1)
                 WHERE id IN (SELECT user_id FROM external_identity)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Qualified usernames stay: they are valid names either way. Encrypted secrets cannot
        // be turned back without the key; a provider admin enters them again.
        manager
            .alter_table(
                Table::alter()
                    .table(IdentityProvider::Table)
                    .drop_column(IdentityProvider::ClientSecretSealed)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum IdentityProvider {
    Table,
    ClientSecretSealed,
}
