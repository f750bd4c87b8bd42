//! Tenants: provider admins create, suspend, resume and delete them. A suspended tenant's
//! members cannot sign in (their sessions end) while its VMs keep running; a tenant is
//! deleted only once it has no instances left, so nothing is orphaned.

use portal_types::Error;
use portal_types::ids::TenantUuid;
use portal_types::params::validate_name;
use portal_types::views::{TenantDeletion, TenantView};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

impl Controller {
    pub async fn tenant_list(&self, opctx: &OpContext) -> Result<Vec<TenantView>, Error> {
        Ok(self.datastore.tenant_list(opctx).await?)
    }

    pub async fn tenant_create(&self, opctx: &OpContext, name: &str) -> Result<TenantView, Error> {
        let result = async {
            opctx.authorize(Action::TenantWrite)?;
            validate_name(name)?;
            Ok(self.datastore.tenant_create(opctx, name).await?)
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
            let view = self.datastore.tenant_set_suspended(opctx, id, suspended).await?;
            if suspended {
                self.datastore.tenant_sessions_end(id).await?;
            }
            Ok(view)
        }
        .await;
        let verb = if suspended { "tenant.suspend" } else { "tenant.resume" };
        self.audited_in(opctx, Some(id), verb, "tenant", &id.to_string(), result).await
    }

    /// What deleting the tenant would take away (nothing is changed).
    pub async fn tenant_deletion_preview(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
    ) -> Result<TenantDeletion, Error> {
        Ok(self.datastore.tenant_deletion_preview(opctx, id).await?)
    }

    /// Deletes a tenant with its memberships and quotas. `confirm_name` must repeat its name;
    /// a tenant with instances is refused with their count.
    pub async fn tenant_delete(
        &self,
        opctx: &OpContext,
        id: TenantUuid,
        confirm_name: &str,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::TenantWrite)?;
            let view = self.datastore.tenant_fetch(opctx, id).await?;
            if id == actor.tenant_id {
                return Err(Error::Conflict {
                    message: "You cannot delete your own tenant.".into(),
                });
            }
            if confirm_name != view.name {
                return Err(Error::invalid(format!(
                    "Type the tenant's name, {}, to confirm the deletion.",
                    view.name
                )));
            }
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
            self.datastore.tenant_sessions_end(id).await?;
            Ok(self.datastore.tenant_delete(opctx, id).await?)
        }
        .await;
        self.audited_in(opctx, Some(id), "tenant.delete", "tenant", &id.to_string(), result).await
    }
}
