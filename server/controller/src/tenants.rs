//! Tenants: provider admins create, suspend, resume and delete them. A suspended tenant's
//! members cannot sign in (their sessions end) while its VMs keep running; a tenant is
//! deleted only once it has no instances left, so nothing is orphaned.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::params::validate_name;
use portal_types::views::{InstanceState, TenantDeletion, TenantView};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::{
    api_token, identity_provider, instance, membership, quota, tenant, user,
};
use crate::datastore::now_ms;

impl Controller {
    pub async fn tenant_list(&self, opctx: &OpContext) -> Result<Vec<TenantView>, Error> {
        opctx.authorize(Action::TenantWrite)?;
        let rows = tenant::Entity::find()
            .order_by_asc(tenant::Column::Name)
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        let mut out = Vec::with_capacity(rows.len());
        for t in rows {
            out.push(self.tenant_view(t).await?);
        }
        Ok(out)
    }

    async fn tenant_view(&self, t: tenant::Model) -> Result<TenantView, Error> {
        let instances = instance::Entity::find()
            .filter(instance::Column::TenantId.eq(t.id))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .count(&self.db)
            .await
            .map_err(Error::internal)?;
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(t.id))
            .count(&self.db)
            .await
            .map_err(Error::internal)?;
        Ok(TenantView {
            id: TenantUuid::from_untyped_uuid(t.id),
            name: t.name,
            suspended: t.suspended,
            instances,
            members,
        })
    }

    async fn tenant_find(&self, id: TenantUuid) -> Result<tenant::Model, Error> {
        tenant::Entity::find_by_id(id.into_untyped_uuid())
            .one(&self.db)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("tenant", id))
    }

    pub async fn tenant_create(&self, opctx: &OpContext, name: &str) -> Result<TenantView, Error> {
        let result = async {
            opctx.authorize(Action::TenantWrite)?;
            validate_name(name)?;
            let exists = tenant::Entity::find()
                .filter(tenant::Column::Name.eq(name))
                .one(&self.db)
                .await
                .map_err(Error::internal)?;
            if exists.is_some() {
                return Err(Error::Conflict {
                    message: format!(
                        "A tenant named \"{name}\" already exists; pick another name."
                    ),
                });
            }
            let row = tenant::ActiveModel {
                id: Set(Uuid::new_v4()),
                name: Set(name.to_owned()),
                created_at: Set(now_ms()),
                suspended: Set(false),
            }
            .insert(&self.db)
            .await
            .map_err(Error::internal)?;
            self.tenant_view(row).await
        }
        .await;
        // Filed under the new tenant: its admins see who made it.
        let created = result.as_ref().ok().map(|t| t.id);
        self.audited_in(opctx, created, "tenant.create", "tenant", name, result).await
    }

    pub async fn tenant_set_suspended(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
        suspended: bool,
    ) -> Result<TenantView, Error> {
        let result = async {
            let actor = opctx.authorize(Action::TenantWrite)?;
            if suspended && id == actor.tenant_id {
                return Err(Error::Conflict {
                    message: "You cannot suspend your own tenant; sign in from another.".into(),
                });
            }
            let t = self.tenant_find(id).await?;
            let mut row: tenant::ActiveModel = t.into();
            row.suspended = Set(suspended);
            let t = row.update(&self.db).await.map_err(Error::internal)?;
            if suspended {
                self.sessions_end_for_tenant(id).await?;
            }
            self.tenant_view(t).await
        }
        .await;
        let verb = if suspended { "tenant.suspend" } else { "tenant.resume" };
        self.audited_in(opctx, Some(id), verb, "tenant", &id.to_string(), result).await
    }

    /// Deletes a tenant with its memberships and quotas. `confirm_name` must repeat its name;
    /// a tenant with instances is refused with their count.
    /// What deleting the tenant would take away (nothing is changed).
    pub async fn tenant_deletion_preview(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
    ) -> Result<TenantDeletion, Error> {
        opctx.authorize(Action::TenantWrite)?;
        let t = self.tenant_find(id).await?;
        let db = &self.db;
        let history = instance::Entity::find()
            .filter(instance::Column::TenantId.eq(t.id))
            .filter(instance::Column::State.eq(InstanceState::Deleted.as_str()))
            .count(db)
            .await
            .map_err(Error::internal)?;
        let member_ids: Vec<Uuid> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::TenantId.eq(t.id))
            .into_tuple()
            .all(db)
            .await
            .map_err(Error::internal)?;
        let members = user::Entity::find()
            .filter(user::Column::Id.is_in(member_ids.clone()))
            .order_by_asc(user::Column::Username)
            .all(db)
            .await
            .map_err(Error::internal)?;
        // Members with a membership elsewhere keep signing in there.
        let elsewhere: Vec<Uuid> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .filter(membership::Column::UserId.is_in(member_ids))
            .filter(membership::Column::TenantId.ne(t.id))
            .into_tuple()
            .all(db)
            .await
            .map_err(Error::internal)?;
        let stranded = members
            .iter()
            .filter(|u| !u.provider_admin && !elsewhere.contains(&u.id))
            .map(|u| u.username.clone())
            .collect();
        let api_tokens = api_token::Entity::find()
            .filter(api_token::Column::TenantId.eq(t.id))
            .count(db)
            .await
            .map_err(Error::internal)?;
        let quotas = quota::Entity::find()
            .filter(quota::Column::TenantId.eq(t.id))
            .count(db)
            .await
            .map_err(Error::internal)?;
        let identity_providers = identity_provider::Entity::find()
            .filter(identity_provider::Column::TenantId.eq(t.id))
            .order_by_asc(identity_provider::Column::Name)
            .all(db)
            .await
            .map_err(Error::internal)?
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
            quotas,
            identity_providers,
            instance_history: history,
        })
    }

    pub async fn tenant_delete(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
        confirm_name: &str,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::TenantWrite)?;
            let t = self.tenant_find(id).await?;
            if id == actor.tenant_id {
                return Err(Error::Conflict {
                    message: "You cannot delete your own tenant.".into(),
                });
            }
            if confirm_name != t.name {
                return Err(Error::invalid(format!(
                    "Type the tenant's name, {}, to confirm the deletion.",
                    t.name
                )));
            }
            let view = self.tenant_view(t).await?;
            if view.instances > 0 {
                return Err(Error::Conflict {
                    message: format!(
                        "{} still has {} instance{}; delete them first.",
                        view.name,
                        view.instances,
                        if view.instances == 1 { "" } else { "s" }
                    ),
                });
            }
            self.sessions_end_for_tenant(id).await?;
            // Memberships and quotas go with the tenant (ON DELETE CASCADE); deleted
            // instances' rows keep it referenced, so remove those history rows first.
            let txn = crate::datastore::begin_write(&self.db).await.map_err(Error::internal)?;
            instance::Entity::delete_many()
                .filter(instance::Column::TenantId.eq(id.into_untyped_uuid()))
                .exec(&txn)
                .await
                .map_err(Error::internal)?;
            tenant::Entity::delete_by_id(id.into_untyped_uuid())
                .exec(&txn)
                .await
                .map_err(Error::internal)?;
            txn.commit().await.map_err(Error::internal)?;
            Ok(())
        }
        .await;
        self.audited_in(opctx, Some(id), "tenant.delete", "tenant", &id.to_string(), result).await
    }
}
