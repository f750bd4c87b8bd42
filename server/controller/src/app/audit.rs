//! The audit log: every mutating call records who, what, which object, from where and the
//! outcome, refusals included. Provider admins read all of it; a tenant admin reads their
//! tenant's entries only. An entry is filed under the tenant of the object acted on (see
//! [`filed_under`]), so a tenant's admins see what a provider admin did to their tenant.

use portal_types::Error;
use portal_types::ids::TenantUuid;
use portal_types::page::{Page, PageQuery};
use portal_types::views::AuditEntry;

use crate::Controller;
use crate::authz::Actor;
use crate::context::OpContext;
use crate::datastore::audit::AuditRecord;

impl Controller {
    /// Records one call on an object of the actor's own tenant, or of none (a host, the
    /// catalog), and passes its result through, so a method ends with
    /// `self.audited(opctx, "instance.create", "instance", &name, result).await`.
    pub(crate) async fn audited<T>(
        &self,
        opctx: &OpContext,
        action: &str,
        object_kind: &str,
        object_id: &str,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        self.audited_in(opctx, None, action, object_kind, object_id, result).await
    }

    /// Like [`audited`](Self::audited) for an object of `object_tenant`: the entry is filed
    /// under that tenant (see [`filed_under`]).
    pub(crate) async fn audited_in<T>(
        &self,
        opctx: &OpContext,
        object_tenant: Option<TenantUuid>,
        action: &str,
        object_kind: &str,
        object_id: &str,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        let mut record = entry_of(opctx.actor(), action, object_kind, object_id, outcome(&result));
        record.tenant_id = filed_under(opctx, object_tenant);
        self.audit_write(&record).await;
        result
    }

    /// Writes one entry; a failure to write is logged, never hidden from operators.
    pub(crate) async fn audit_write(&self, record: &AuditRecord) {
        if let Err(e) = self.datastore.audit_insert(record).await {
            tracing::error!(error = %e, action = %record.action, "cannot write the audit log");
        }
    }

    /// One page of the log, newest first; `action` filters by prefix (e.g. `instance.`),
    /// `actor` by username; `page.page_token` is the previous page's `next_page_token`.
    pub async fn audit_list(
        &self,
        opctx: &OpContext,
        action: Option<&str>,
        actor_name: Option<&str>,
        page: &PageQuery,
    ) -> Result<Page<AuditEntry>, Error> {
        Ok(self.datastore.audit_list(opctx, action, actor_name, page).await?)
    }
}

/// The tenant an entry is filed under: the object's, so that its tenant admins see what was
/// done to their tenant, also by a provider admin acting from another tenant. The actor's
/// own when the object belongs to no tenant, or to one the actor may not see: a refused
/// attempt on another tenant's object must not tell that tenant who tried.
fn filed_under(opctx: &OpContext, object_tenant: Option<TenantUuid>) -> Option<TenantUuid> {
    let actor = opctx.actor()?;
    Some(match object_tenant {
        Some(t) if actor.provider_admin || t == actor.tenant_id => t,
        _ => actor.tenant_id,
    })
}

/// One entry of a call by `actor` (anonymous when `None`), filed under the actor's tenant.
pub(crate) fn entry_of(
    actor: Option<&Actor>,
    action: &str,
    object_kind: &str,
    object_id: &str,
    outcome: String,
) -> AuditRecord {
    AuditRecord {
        actor_id: actor.map(|a| a.user_id),
        actor_name: actor.map_or("anonymous", |a| a.username.as_str()).to_owned(),
        tenant_id: actor.map(|a| a.tenant_id),
        client: actor.and_then(|a| a.client),
        action: action.to_owned(),
        object_kind: object_kind.to_owned(),
        object_id: object_id.to_owned(),
        outcome,
    }
}

/// How a call ended, as the log shows it: `ok` or the status and the sentence.
pub(crate) fn outcome<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{} {e}", e.status_code()),
    }
}
