//! The image catalog's rows. Images are never edited or deleted, only retired: an instance
//! records the name and file it booted, and a retired image's file stays in the stores for
//! the instances that use it.

use std::collections::HashMap;

use portal_types::ids::{GenericUuid, ImageUuid};
use portal_types::views::ImageView;
use portal_types::{Error, params};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use super::entity::image;
use super::{DataStore, StoreError, now_ms, rfc3339};
use crate::authz::Action;
use crate::context::OpContext;

fn view(row: &image::Model) -> ImageView {
    ImageView {
        id: ImageUuid::from_untyped_uuid(row.id),
        name: row.name.clone(),
        os: row.os.clone(),
        cuda_version: row.cuda_version.clone(),
        driver_version: row.driver_version.clone(),
        default_user: row.default_user.clone(),
        source: row.source.clone(),
        retired: row.retired,
        created_at: rfc3339(row.created_at),
    }
}

fn row(create: &params::ImageCreate, now: i64) -> image::ActiveModel {
    image::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(create.name.clone()),
        os: Set(create.os.trim().to_owned()),
        cuda_version: Set(create.cuda_version.clone()),
        driver_version: Set(create.driver_version.clone()),
        default_user: Set(create.default_user.clone()),
        source: Set(create.source.clone()),
        retired: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// On an empty catalog, adds `images` (at the first start, with the database to itself), one
/// millisecond apart so that the last one is the newest (the default for launches).
pub(crate) async fn image_seed(
    db: &impl ConnectionTrait,
    images: &[params::ImageCreate],
) -> Result<(), StoreError> {
    if image::Entity::find().count(db).await? > 0 {
        return Ok(());
    }
    let now = now_ms();
    for (i, create) in images.iter().enumerate() {
        image::Entity::insert(row(create, now + i as i64))
            .on_conflict(OnConflict::column(image::Column::Name).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The active images a launch batch names, read in its transaction (so an image retired
/// meanwhile is not launched); the empty name stands for the newest active image.
pub(crate) async fn images_for_launch(
    db: &impl ConnectionTrait,
    names: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, ImageView>, StoreError> {
    let mut names: Vec<String> = names.into_iter().collect();
    let mut found = HashMap::new();
    if names.iter().any(String::is_empty) {
        let newest = image::Entity::find()
            .filter(image::Column::Retired.eq(false))
            .order_by_desc(image::Column::CreatedAt)
            .one(db)
            .await?;
        if let Some(newest) = newest {
            found.insert(String::new(), view(&newest));
        }
        names.retain(|n| !n.is_empty());
    }
    let rows = image::Entity::find()
        .filter(image::Column::Name.is_in(names))
        .filter(image::Column::Retired.eq(false))
        .all(db)
        .await?;
    found.extend(rows.iter().map(|r| (r.name.clone(), view(r))));
    Ok(found)
}

impl DataStore {
    /// The catalog, newest first; retired images only when asked (admins look at them).
    pub async fn image_list(
        &self,
        opctx: &OpContext,
        with_retired: bool,
    ) -> Result<Vec<ImageView>, StoreError> {
        opctx.authorize(Action::CatalogRead)?;
        let mut query = image::Entity::find().order_by_desc(image::Column::CreatedAt);
        if !with_retired {
            query = query.filter(image::Column::Retired.eq(false));
        }
        Ok(query.all(&self.db).await?.iter().map(view).collect())
    }

    /// Adds a validated image; a taken name is a conflict (retired images keep theirs).
    pub async fn image_create(
        &self,
        opctx: &OpContext,
        create: &params::ImageCreate,
    ) -> Result<ImageView, StoreError> {
        opctx.authorize(Action::CatalogWrite)?;
        let exists = image::Entity::find()
            .filter(image::Column::Name.eq(&create.name))
            .one(&self.db)
            .await?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!(
                    "An image named \"{}\" already exists (perhaps retired); pick another name.",
                    create.name
                ),
            }
            .into());
        }
        Ok(view(&row(create, now_ms()).insert(&self.db).await?))
    }

    /// Retires an image: no new launches; instances that booted it keep it. Idempotent.
    pub async fn image_retire(
        &self,
        opctx: &OpContext,
        id: ImageUuid,
    ) -> Result<ImageView, StoreError> {
        opctx.authorize(Action::CatalogWrite)?;
        let found = image::Entity::find_by_id(id.into_untyped_uuid()).one(&self.db).await?;
        let Some(found) = found else { return Err(Error::not_found("image", id).into()) };
        if found.retired {
            return Ok(view(&found));
        }
        let mut active: image::ActiveModel = found.into();
        active.retired = Set(true);
        active.updated_at = Set(now_ms());
        Ok(view(&active.update(&self.db).await?))
    }
}
