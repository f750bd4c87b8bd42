//! Every query on the `session` table: the rows behind the web layer's session store
//! (create, update-only save, load, delete, delete expired) and a user's own sessions
//! (list, end one by label).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::entity::session;
use super::{DataStore, StoreError, now_ms, rfc3339};
use crate::authz::Action;
use crate::context::OpContext;

/// One stored session: the web layer's serialized data, when it expires (Unix ms) and the
/// signed-in user, if any (so a user's sessions can be listed and ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub data: Vec<u8>,
    pub expires_at: i64,
    pub user_id: Option<uuid::Uuid>,
}

impl SessionRow {
    fn active(self) -> session::ActiveModel {
        session::ActiveModel {
            id: Set(self.id),
            data: Set(self.data),
            expires_at: Set(self.expires_at),
            user_id: Set(self.user_id),
        }
    }
}

/// A short stable label for a session: the first 12 hex digits of its id's SHA-256 (ids
/// are bearer secrets and are never shown).
pub fn session_label(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl DataStore {
    /// Inserts a new session; `false` (and nothing written) if the id is taken.
    pub async fn session_create(&self, row: SessionRow) -> Result<bool, StoreError> {
        let inserted = session::Entity::insert(row.active())
            .on_conflict(OnConflict::column(session::Column::Id).do_nothing().to_owned())
            .exec_without_returning(self.connection())
            .await?;
        Ok(inserted == 1)
    }

    /// Updates a session that exists; never re-creates one that was deleted meanwhile (a
    /// sign-out or revocation racing a request of the same session).
    pub async fn session_save(&self, row: SessionRow) -> Result<(), StoreError> {
        let id = row.id.clone();
        session::Entity::update_many()
            .set(session::ActiveModel { id: sea_orm::ActiveValue::NotSet, ..row.active() })
            .filter(session::Column::Id.eq(id))
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// The session `id` unless it expired.
    pub async fn session_load(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = session::Entity::find_by_id(id.to_owned())
            .filter(session::Column::ExpiresAt.gt(now_ms()))
            .one(self.connection())
            .await?;
        Ok(row.map(|r| SessionRow {
            id: r.id,
            data: r.data,
            expires_at: r.expires_at,
            user_id: r.user_id,
        }))
    }

    pub async fn session_delete(&self, id: &str) -> Result<(), StoreError> {
        session::Entity::delete_by_id(id.to_owned()).exec(self.connection()).await?;
        Ok(())
    }

    /// Removes expired sessions; run periodically. How many were removed.
    pub async fn session_delete_expired(&self) -> Result<u64, StoreError> {
        let res = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lt(now_ms()))
            .exec(self.connection())
            .await?;
        Ok(res.rows_affected)
    }

    /// The caller's live sessions by label; `current` is the label of the session asking.
    pub async fn session_list(
        &self,
        opctx: &OpContext,
        current: Option<&str>,
    ) -> Result<Vec<portal_types::views::SessionView>, StoreError> {
        let actor = opctx.authorize(Action::AccountRead)?;
        let rows = session::Entity::find()
            .filter(
                session::Column::UserId
                    .eq(portal_types::ids::GenericUuid::into_untyped_uuid(actor.user_id)),
            )
            .filter(session::Column::ExpiresAt.gt(now_ms()))
            .all(self.connection())
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let label = session_label(&r.id);
                portal_types::views::SessionView {
                    current: current == Some(label.as_str()),
                    label,
                    expires_at: rfc3339(r.expires_at),
                }
            })
            .collect())
    }

    /// Ends one of the caller's sessions by its label; another user's is not found.
    pub async fn session_end(&self, opctx: &OpContext, label: &str) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::AccountWrite)?;
        let rows = session::Entity::find()
            .filter(
                session::Column::UserId
                    .eq(portal_types::ids::GenericUuid::into_untyped_uuid(actor.user_id)),
            )
            .all(self.connection())
            .await?;
        let row = rows
            .iter()
            .find(|r| session_label(&r.id) == label)
            .ok_or_else(|| portal_types::Error::not_found("session", label))?;
        session::Entity::delete_by_id(row.id.clone()).exec(self.connection()).await?;
        Ok(())
    }
}
