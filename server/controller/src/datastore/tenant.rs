//! Tenants' rows, and what a tenant's deletion would take with it.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::views::{InstanceState, TenantDeletion, TenantView};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{
    api_token, identity_provider, instance, membership, quota, ssh_key, tenant, user,
};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::authz::Action;
use crate::context::OpContext;

impl DataStore {
    pub async fn tenant_list(&self, opctx: &OpContext) -> Result<Vec<TenantView>, StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let rows = tenant::Entity::find().order_by_asc(tenant::Column::Name).all(&self.db).await?;
        let mut out = Vec::with_capacity(rows.len());
        for t in rows {
            out.push(self.tenant_view(t).await?);
        }
        Ok(out)
    }

    /// One tenant with its counts of live instances and members.
    pub async fn tenant_fetch(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
    ) -> Result<TenantView, StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let t = self.tenant_row(id).await?;
        self.tenant_view(t).await
    }

    async fn tenant_view(&self, t: tenant::Model) -> Result<TenantView, StoreError> {
        let instances = instance::Entity::find()
            .filter(instance::Column::TenantId.eq(t.id))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .count(&self.db)
            .await?;
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(t.id))
            .count(&self.db)
            .await?;
        Ok(TenantView {
            id: TenantUuid::from_untyped_uuid(t.id),
            name: t.name,
            suspended: t.suspended,
            instances,
            members,
        })
    }

    async fn tenant_row(&self, id: TenantUuid) -> Result<tenant::Model, StoreError> {
        tenant::Entity::find_by_id(id.into_untyped_uuid())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("tenant", id).into())
    }

    /// Creates a tenant with a validated name; a taken name is a conflict.
    pub async fn tenant_create(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<TenantView, StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let exists =
            tenant::Entity::find().filter(tenant::Column::Name.eq(name)).one(&self.db).await?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!("A tenant named \"{name}\" already exists; pick another name."),
            }
            .into());
        }
        let row = tenant::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            created_at: Set(now_ms()),
            suspended: Set(false),
        }
        .insert(&self.db)
        .await?;
        self.tenant_view(row).await
    }

    pub async fn tenant_set_suspended(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
        suspended: bool,
    ) -> Result<TenantView, StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let mut row: tenant::ActiveModel = self.tenant_row(id).await?.into();
        row.suspended = Set(suspended);
        let t = row.update(&self.db).await?;
        self.tenant_view(t).await
    }

    /// What deleting the tenant would take away (nothing is changed).
    pub async fn tenant_deletion_preview(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
    ) -> Result<TenantDeletion, StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let t = self.tenant_row(id).await?;
        let db = &self.db;
        let history = instance::Entity::find()
            .filter(instance::Column::TenantId.eq(t.id))
            .filter(instance::Column::State.eq(InstanceState::Deleted.as_str()))
            .count(db)
            .await?;
        let member_ids: Vec<Uuid> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::TenantId.eq(t.id))
            .into_tuple()
            .all(db)
            .await?;
        let members = user::Entity::find()
            .filter(user::Column::Id.is_in(member_ids.clone()))
            .order_by_asc(user::Column::Username)
            .all(db)
            .await?;
        // Members with a membership elsewhere keep signing in there.
        let elsewhere: Vec<Uuid> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::UserId.is_in(member_ids))
            .filter(membership::Column::TenantId.ne(t.id))
            .into_tuple()
            .all(db)
            .await?;
        let stranded = members
            .iter()
            .filter(|u| !u.provider_admin && !elsewhere.contains(&u.id))
            .map(|u| u.username.clone())
            .collect();
        let api_tokens = api_token::Entity::find()
            .filter(api_token::Column::TenantId.eq(t.id))
            .count(db)
            .await?;
        let ssh_keys =
            ssh_key::Entity::find().filter(ssh_key::Column::TenantId.eq(t.id)).count(db).await?;
        let quotas =
            quota::Entity::find().filter(quota::Column::TenantId.eq(t.id)).count(db).await?;
        let identity_providers = identity_provider::Entity::find()
            .filter(identity_provider::Column::TenantId.eq(t.id))
            .order_by_asc(identity_provider::Column::Name)
            .all(db)
            .await?
            .into_iter()
            .map(|p| p.display_name)
            .collect();
        let view = self.tenant_view(t).await?;
        Ok(TenantDeletion {
            tenant_id: id,
            name: view.name,
            instances: view.instances,
            members: members.into_iter().map(|u| u.username).collect(),
            stranded,
            api_tokens,
            ssh_keys,
            quotas,
            identity_providers,
            instance_history: history,
        })
    }

    /// Deletes the tenant with its memberships and quotas (ON DELETE CASCADE) and its
    /// deleted instances' history rows, in one transaction. The caller checked that no live
    /// instance is left.
    pub async fn tenant_delete(&self, opctx: &OpContext, id: TenantUuid) -> Result<(), StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let txn = begin_write(&self.db).await?;
        instance::Entity::delete_many()
            .filter(instance::Column::TenantId.eq(id.into_untyped_uuid()))
            .exec(&txn)
            .await?;
        tenant::Entity::delete_by_id(id.into_untyped_uuid()).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The tenant called `name`, if any (for filing audit entries and configuring providers).
    pub(crate) async fn tenant_lookup_by_name(
        &self,
        name: &str,
    ) -> Result<Option<tenant::Model>, StoreError> {
        Ok(tenant::Entity::find().filter(tenant::Column::Name.eq(name)).one(&self.db).await?)
    }

    /// The tenant with this id, if it still exists.
    pub(crate) async fn tenant_lookup_by_id(
        &self,
        id: Uuid,
    ) -> Result<Option<tenant::Model>, StoreError> {
        Ok(tenant::Entity::find_by_id(id).one(&self.db).await?)
    }
}
