//! Failed sign-ins, one row per key (`user:<name>` or `ip:<address>`) and time, so every
//! replica counts them all. The rules are in `throttle.rs`.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use super::entity::login_failure;
use super::{DataStore, StoreError};

impl DataStore {
    /// Records a failure for each `(id, key)` at `at`.
    pub(crate) async fn login_failures_insert(
        &self,
        rows: &[(Uuid, String)],
        at: i64,
    ) -> Result<(), StoreError> {
        let rows = rows.iter().map(|(id, key)| login_failure::ActiveModel {
            id: Set(*id),
            key: Set(key.clone()),
            at: Set(at),
        });
        login_failure::Entity::insert_many(rows).exec_without_returning(&self.db).await?;
        Ok(())
    }

    /// `(key, at)` of the failures of `keys` after `since`, oldest first, except `excluding`.
    pub(crate) async fn login_failures_since(
        &self,
        keys: &[String],
        since: i64,
        excluding: &[Uuid],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(login_failure::Entity::find()
            .select_only()
            .column(login_failure::Column::Key)
            .column(login_failure::Column::At)
            .filter(login_failure::Column::Key.is_in(keys.to_vec()))
            .filter(login_failure::Column::At.gt(since))
            .filter(login_failure::Column::Id.is_not_in(excluding.to_vec()))
            .order_by_asc(login_failure::Column::At)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    pub(crate) async fn login_failures_delete(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Id.is_in(ids.to_vec()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Forgets failures at or before `cutoff`.
    pub(crate) async fn login_failures_expire(&self, cutoff: i64) -> Result<(), StoreError> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::At.lte(cutoff))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Forgets every failure of `key`.
    pub(crate) async fn login_failures_clear(&self, key: &str) -> Result<(), StoreError> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Key.eq(key))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
