//! The `identity_provider` table: providers as provider admins configure them, the lookups
//! the sign-in flow needs (by name at the start of a sign-in, by id on the provider's
//! redirect back), and re-sealing client secrets at start.

use std::collections::HashMap;

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::entity::{identity_provider, tenant};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::authz::Action;
use crate::context::OpContext;

/// A provider to store, validated by the caller; its client secret already sealed for `id`.
pub struct NewIdentityProvider<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub display_name: &'a str,
    pub issuer_url: &'a str,
    pub client_id: &'a str,
    pub sealed_client_secret: String,
    /// The name of the tenant the provider's users land in.
    pub tenant: &'a str,
    pub email_domains: String,
    pub group_claim: &'a str,
    /// The role rules as JSON.
    pub role_rules: String,
    pub default_role: &'a str,
}

/// A provider's new settings, validated by the caller; its name and id stay.
pub struct IdentityProviderChange<'a> {
    pub display_name: &'a str,
    pub issuer_url: &'a str,
    pub client_id: &'a str,
    /// The new client secret sealed for the provider's id; none: the stored one stays.
    pub sealed_client_secret: Option<String>,
    /// The name of the tenant the provider's users land in.
    pub tenant: &'a str,
    pub email_domains: String,
    pub group_claim: &'a str,
    /// The role rules as JSON.
    pub role_rules: String,
    pub default_role: &'a str,
}

fn name_taken(name: &str) -> Error {
    Error::Conflict {
        message: format!("An identity provider named {name} already exists; pick another name."),
    }
}

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

    /// Every provider by name, each with the name of its tenant, for provider admins.
    pub async fn identity_provider_list(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<(identity_provider::Model, String)>, StoreError> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let rows = identity_provider::Entity::find()
            .order_by_asc(identity_provider::Column::Name)
            .all(&self.db)
            .await?;
        let tenants: HashMap<Uuid, String> = tenant::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| {
                let tenant = tenants.get(&r.tenant_id).cloned().unwrap_or_default();
                (r, tenant)
            })
            .collect())
    }

    /// The provider called `name` with the name of its tenant, for provider admins.
    pub async fn identity_provider_fetch(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(identity_provider::Model, String), StoreError> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let row = self
            .identity_provider_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found("identity provider", name))?;
        let tenant = self.tenant_lookup_by_id(row.tenant_id).await?.map(|t| t.name);
        Ok((row, tenant.unwrap_or_default()))
    }

    /// Changes the provider with this id to `change`, in the tenant it names.
    pub async fn identity_provider_update(
        &self,
        opctx: &OpContext,
        id: Uuid,
        change: IdentityProviderChange<'_>,
    ) -> Result<(identity_provider::Model, String), StoreError> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let tenant = self
            .tenant_lookup_by_name(change.tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant", change.tenant))?;
        let txn = begin_write(&self.db).await?;
        let Some(row) = identity_provider::Entity::find_by_id(id).one(&txn).await? else {
            return Err(Error::not_found("identity provider", id).into());
        };
        let mut row = row.into_active_model();
        row.display_name = Set(change.display_name.to_owned());
        row.issuer_url = Set(change.issuer_url.to_owned());
        row.client_id = Set(change.client_id.to_owned());
        if let Some(sealed) = change.sealed_client_secret {
            row.client_secret = Set(sealed);
            row.client_secret_sealed = Set(true);
        }
        row.tenant_id = Set(tenant.id);
        row.email_domains = Set(change.email_domains);
        row.group_claim = Set(change.group_claim.to_owned());
        row.role_rules = Set(change.role_rules);
        row.default_role = Set(change.default_role.to_owned());
        let row = row.update(&txn).await?;
        txn.commit().await?;
        Ok((row, tenant.name))
    }

    /// Stores a new provider in the tenant it names; a name in use is a conflict.
    pub async fn identity_provider_create(
        &self,
        opctx: &OpContext,
        new: NewIdentityProvider<'_>,
    ) -> Result<(identity_provider::Model, String), StoreError> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let tenant = self
            .tenant_lookup_by_name(new.tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant", new.tenant))?;
        if self.identity_provider_by_name(new.name).await?.is_some() {
            return Err(name_taken(new.name).into());
        }
        let row = identity_provider::ActiveModel {
            id: Set(new.id),
            name: Set(new.name.to_owned()),
            display_name: Set(new.display_name.to_owned()),
            issuer_url: Set(new.issuer_url.to_owned()),
            client_id: Set(new.client_id.to_owned()),
            client_secret: Set(new.sealed_client_secret),
            client_secret_sealed: Set(true),
            tenant_id: Set(tenant.id),
            email_domains: Set(new.email_domains),
            group_claim: Set(new.group_claim.to_owned()),
            role_rules: Set(new.role_rules),
            default_role: Set(new.default_role.to_owned()),
            created_at: Set(now_ms()),
        }
        .insert(&self.db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => name_taken(new.name).into(),
            _ => StoreError::Query(e),
        })?;
        Ok((row, tenant.name))
    }

    /// The tenant of the provider called `name`, for filing audit entries.
    pub(crate) async fn identity_provider_tenant(
        &self,
        name: &str,
    ) -> Result<Option<TenantUuid>, StoreError> {
        let provider = self.identity_provider_by_name(name).await?;
        Ok(provider.map(|p| TenantUuid::from_untyped_uuid(p.tenant_id)))
    }

    /// Removes the provider called `name`.
    pub async fn identity_provider_delete(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let res = identity_provider::Entity::delete_many()
            .filter(identity_provider::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("identity provider", name).into());
        }
        Ok(())
    }

    /// Every provider by display name, for the sign-in page (public: no actor yet).
    pub(crate) async fn identity_provider_list_by_display_name(
        &self,
    ) -> Result<Vec<identity_provider::Model>, StoreError> {
        Ok(identity_provider::Entity::find()
            .order_by_asc(identity_provider::Column::DisplayName)
            .all(&self.db)
            .await?)
    }

    /// Rewrites client secrets in one transaction: `reseal` gets each provider and returns
    /// its newly sealed secret, or `None` to leave it; its error rolls everything back.
    pub(crate) async fn identity_provider_secrets_reseal<E: From<StoreError>>(
        &self,
        mut reseal: impl FnMut(&identity_provider::Model) -> Result<Option<String>, E>,
    ) -> Result<(), E> {
        let txn = begin_write(&self.db).await.map_err(StoreError::from)?;
        let rows = identity_provider::Entity::find().all(&txn).await.map_err(StoreError::from)?;
        for row in rows {
            let Some(sealed) = reseal(&row)? else { continue };
            let mut row = row.into_active_model();
            row.client_secret = Set(sealed);
            row.client_secret_sealed = Set(true);
            row.update(&txn).await.map_err(StoreError::from)?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}
