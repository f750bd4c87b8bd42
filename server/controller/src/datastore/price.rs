//! Prices: versions per item, each effective from a time; a change adds a version and never
//! edits one.

use std::collections::HashMap;

use portal_types::Error;
use portal_types::ids::GenericUuid;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entity::{instance_type, price};
use super::{DataStore, StoreError, now_ms};
use crate::app::metering::{PUBLIC_IP, Prices, STOPPED_DISK, type_item};
use crate::authz::Action;
use crate::context::OpContext;

/// The price in effect at `now_ms` of each of `items` (absent: none yet).
pub(crate) async fn prices_now(
    db: &impl ConnectionTrait,
    items: impl IntoIterator<Item = String>,
    now_ms: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows = price::Entity::find()
        .filter(price::Column::Item.is_in(items))
        .filter(price::Column::EffectiveFromMs.lte(now_ms))
        .order_by_asc(price::Column::EffectiveFromMs)
        .all(db)
        .await?;
    // Ascending: the last version of each item wins.
    Ok(rows.into_iter().map(|r| (r.item, r.micros_per_hour)).collect())
}

/// Adds a price version (the first one of a new instance type, or a change).
pub(crate) async fn price_insert(
    db: &impl ConnectionTrait,
    item: &str,
    micros_per_hour: i64,
    effective_from_ms: i64,
    created_by: Option<uuid::Uuid>,
) -> Result<(), StoreError> {
    price::Entity::insert(price::ActiveModel {
        item: Set(item.to_owned()),
        effective_from_ms: Set(effective_from_ms),
        micros_per_hour: Set(micros_per_hour),
        created_by: Set(created_by),
        created_at: Set(now_ms()),
    })
    .on_conflict(
        OnConflict::columns([price::Column::Item, price::Column::EffectiveFromMs])
            .update_column(price::Column::MicrosPerHour)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

impl DataStore {
    /// Every version of every price, for rating (effective times in seconds).
    pub(crate) async fn prices_all(&self) -> Result<Prices, StoreError> {
        let rows = price::Entity::find()
            .order_by_asc(price::Column::EffectiveFromMs)
            .all(&self.db)
            .await?;
        let mut prices = Prices::default();
        for r in rows {
            // Versions start on whole seconds; one set within a second starts at the next.
            let from = (r.effective_from_ms + 999).div_euclid(1000);
            prices.0.entry(r.item).or_default().push((from, r.micros_per_hour));
        }
        Ok(prices)
    }

    /// The items that can be priced: the catalog's types, the stopped disk and public IPs.
    pub(crate) async fn price_items(&self) -> Result<Vec<String>, StoreError> {
        let mut items: Vec<String> = instance_type::Entity::find()
            .all(&self.db)
            .await?
            .iter()
            .map(|t| type_item(&t.name))
            .collect();
        items.sort();
        items.extend([STOPPED_DISK, PUBLIC_IP].map(str::to_owned));
        Ok(items)
    }

    /// Adds a version of an item's price (provider admins); a second change with the same
    /// start replaces the first (it never rewrites billed time: starts are never past).
    pub async fn price_set(
        &self,
        opctx: &OpContext,
        item: &str,
        micros_per_hour: i64,
        effective_from_ms: i64,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::PriceWrite)?;
        if !self.price_items().await?.iter().any(|i| i == item) {
            return Err(Error::not_found("price item", item).into());
        }
        let by = Some(actor.user_id.into_untyped_uuid());
        price_insert(&self.db, item, micros_per_hour, effective_from_ms, by).await
    }
}
