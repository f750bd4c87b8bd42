//! Open serial consoles, counted across replicas: one row per console, refreshed by the
//! replica serving it. A row not refreshed since `stale_before` belongs to a replica that
//! died with the console open; it no longer counts and is deleted by the next opening.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::entity::{console_session, user};
use super::{DataStore, StoreError};

impl DataStore {
    /// Records a console of `user` unless they hold `limit` fresh ones; its id, or `None`
    /// at the limit. On PostgreSQL the user's row is locked first, so two replicas cannot
    /// both take the last slot; SQLite's write transactions are serial already.
    pub(crate) async fn console_slot_take(
        &self,
        user_id: Uuid,
        limit: u64,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        let txn = self.db.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            user::Entity::find_by_id(user_id).lock_exclusive().one(&txn).await?;
        }
        let mine = console_session::Column::UserId.eq(user_id);
        console_session::Entity::delete_many()
            .filter(mine.clone())
            .filter(console_session::Column::SeenAt.lt(stale_before))
            .exec(&txn)
            .await?;
        let open = console_session::Entity::find().filter(mine).count(&txn).await?;
        if open >= limit {
            return Ok(None);
        }
        let id = Uuid::new_v4();
        let row = console_session::ActiveModel {
            id: sea_orm::Set(id),
            user_id: sea_orm::Set(user_id),
            seen_at: sea_orm::Set(now),
        };
        console_session::Entity::insert(row).exec(&txn).await?;
        txn.commit().await?;
        Ok(Some(id))
    }

    /// Keeps a console counting.
    pub(crate) async fn console_slot_refresh(&self, id: Uuid, now: i64) -> Result<(), StoreError> {
        console_session::Entity::update_many()
            .col_expr(console_session::Column::SeenAt, Expr::value(now))
            .filter(console_session::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A console closed.
    pub(crate) async fn console_slot_release(&self, id: Uuid) -> Result<(), StoreError> {
        console_session::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(())
    }
}
