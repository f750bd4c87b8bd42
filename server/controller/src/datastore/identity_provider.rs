//! Queries on the `identity_provider` table that the sign-in flow needs: a provider by its
//! name (the start of a sign-in) or by its id (the provider's redirect back).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entity::identity_provider;
use super::{DataStore, StoreError};

impl DataStore {
    /// The provider called `name`, if configured.
    pub async fn identity_provider_by_name(
        &self,
        name: &str,
    ) -> Result<Option<identity_provider::Model>, StoreError> {
        Ok(identity_provider::Entity::find()
            .filter(identity_provider::Column::Name.eq(name))
            .one(self.connection())
            .await?)
    }

    /// The provider with this id, if it still exists.
    pub async fn identity_provider_by_id(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<identity_provider::Model>, StoreError> {
        Ok(identity_provider::Entity::find_by_id(id).one(self.connection()).await?)
    }
}
