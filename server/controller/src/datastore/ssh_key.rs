//! Users' SSH public keys: rows of one user in one tenant, found only through the actor, so
//! another user's key (in this tenant or another) is never seen, counted or deleted.

use portal_types::Error;
use portal_types::ids::{GenericUuid, SshKeyUuid};
use portal_types::params::MAX_SSH_KEYS;
use portal_types::views::SshKeyView;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Select, Set, SqlErr,
};
use uuid::Uuid;

use super::entity::ssh_key;
use super::{DataStore, StoreError, begin_write, now_ms, rfc3339};
use crate::authz::{Action, Actor};
use crate::context::OpContext;

/// A key decoded and checked by the caller (`app/ssh_keys.rs`).
pub struct NewSshKey<'a> {
    pub name: &'a str,
    pub algorithm: &'a str,
    pub fingerprint: &'a str,
    /// One OpenSSH line: `type base64 comment`.
    pub public_key: &'a str,
    pub comment: &'a str,
}

fn view(row: &ssh_key::Model) -> SshKeyView {
    SshKeyView {
        id: SshKeyUuid::from_untyped_uuid(row.id),
        name: row.name.clone(),
        algorithm: row.algorithm.clone(),
        fingerprint: row.fingerprint.clone(),
        comment: row.comment.clone(),
        created_at: rfc3339(row.created_at),
    }
}

/// The actor's own keys in their current tenant.
fn own(actor: &Actor) -> Select<ssh_key::Entity> {
    ssh_key::Entity::find()
        .filter(ssh_key::Column::UserId.eq(actor.user_id.into_untyped_uuid()))
        .filter(ssh_key::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
}

impl DataStore {
    /// Stores a key of the actor: at most [`MAX_SSH_KEYS`], names and keys unique.
    pub async fn ssh_key_create(
        &self,
        opctx: &OpContext,
        new: NewSshKey<'_>,
    ) -> Result<SshKeyView, StoreError> {
        let actor = opctx.authorize(Action::SshKeyWrite)?;
        // One writer at a time, so that concurrent adds cannot pass the limit together.
        let txn = begin_write(&self.db).await?;
        let existing = own(actor).all(&txn).await?;
        if let Some(same) = existing.iter().find(|k| k.fingerprint == new.fingerprint) {
            return Err(Error::Conflict {
                message: format!(
                    "You already added this key, as \"{}\"; delete that one first to rename it.",
                    same.name
                ),
            }
            .into());
        }
        if existing.iter().any(|k| k.name == new.name) {
            return Err(Error::Conflict {
                message: format!(
                    "You already have a key named \"{}\"; pick another name.",
                    new.name
                ),
            }
            .into());
        }
        if existing.len() >= MAX_SSH_KEYS {
            return Err(Error::Conflict {
                message: format!(
                    "You have {MAX_SSH_KEYS} SSH keys, the most one may keep; delete one you no \
                     longer use first."
                ),
            }
            .into());
        }
        let row = ssh_key::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(actor.user_id.into_untyped_uuid()),
            tenant_id: Set(actor.tenant_id.into_untyped_uuid()),
            name: Set(new.name.to_owned()),
            algorithm: Set(new.algorithm.to_owned()),
            fingerprint: Set(new.fingerprint.to_owned()),
            public_key: Set(new.public_key.to_owned()),
            comment: Set(new.comment.to_owned()),
            created_at: Set(now_ms()),
        }
        .insert(&txn)
        .await
        .map_err(|e| match e.sql_err() {
            // PostgreSQL's read-committed lets a concurrent add slip past the checks above.
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict {
                message: format!(
                    "You already have a key named \"{}\" or this same key; pick another.",
                    new.name
                ),
            }
            .into(),
            _ => StoreError::Query(e),
        })?;
        txn.commit().await?;
        Ok(view(&row))
    }

    /// The actor's keys in their current tenant, oldest first.
    pub async fn ssh_key_list(&self, opctx: &OpContext) -> Result<Vec<SshKeyView>, StoreError> {
        let actor = opctx.authorize(Action::SshKeyRead)?;
        let rows = own(actor)
            .order_by_asc(ssh_key::Column::CreatedAt)
            .order_by_asc(ssh_key::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows.iter().map(view).collect())
    }

    /// Deletes one of the actor's keys and returns it; anyone else's key is not found.
    pub async fn ssh_key_delete(
        &self,
        opctx: &OpContext,
        id: SshKeyUuid,
    ) -> Result<SshKeyView, StoreError> {
        let actor = opctx.authorize(Action::SshKeyWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = own(actor)
            .filter(ssh_key::Column::Id.eq(id.into_untyped_uuid()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("SSH key", id))?;
        ssh_key::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(view(&row))
    }

    /// The actor's keys among `ids` as (id, name, public key line); ids that are not the
    /// actor's are simply absent, the caller decides what that means.
    pub async fn ssh_key_lines(
        &self,
        opctx: &OpContext,
        ids: &[SshKeyUuid],
    ) -> Result<Vec<(SshKeyUuid, String, String)>, StoreError> {
        let actor = opctx.authorize(Action::SshKeyRead)?;
        let rows = own(actor)
            .filter(ssh_key::Column::Id.is_in(ids.iter().map(|id| id.into_untyped_uuid())))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (SshKeyUuid::from_untyped_uuid(r.id), r.name, r.public_key))
            .collect())
    }
}
