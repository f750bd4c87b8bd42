//! The audit log: every mutating call records who, what, which object, from where and the
//! outcome, refusals included. Provider admins read all of it; a tenant admin reads their
//! tenant's entries only. An entry is filed under the tenant of the object acted on (see
//! [`filed_under`]), so a tenant's admins see what a provider admin did to their tenant.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::views::AuditEntry;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use crate::Controller;
use crate::authz::{Action, Actor};
use crate::context::OpContext;
use crate::datastore::entity::audit_log;
use crate::datastore::{now_ms, rfc3339};

/// Entries a single read returns at most.
const MAX_ENTRIES: u64 = 500;

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
        let mut row = entry_of(opctx.actor(), action, object_kind, object_id, outcome(&result));
        row.tenant_id = Set(filed_under(opctx, object_tenant));
        self.audit_write(row).await;
        result
    }

    /// Writes one entry; a failure to write is logged, never hidden from operators.
    pub(crate) async fn audit_write(&self, row: audit_log::ActiveModel) {
        let action = row.action.clone().take().unwrap_or_default();
        if let Err(e) = audit_log::Entity::insert(row).exec_without_returning(&self.db).await {
            tracing::error!(error = %e, %action, "cannot write the audit log");
        }
    }

    /// Newest first; `action` filters by prefix (e.g. `instance.`), `actor` by username.
    pub async fn audit_list(
        &self,
        opctx: &OpContext,
        action: Option<&str>,
        actor_name: Option<&str>,
    ) -> Result<Vec<AuditEntry>, Error> {
        let actor = opctx.authorize(Action::AuditRead)?;
        let mut query = audit_log::Entity::find();
        if !actor.provider_admin {
            query =
                query.filter(audit_log::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()));
        }
        if let Some(prefix) = action.filter(|a| !a.is_empty()) {
            query = query.filter(audit_log::Column::Action.starts_with(prefix));
        }
        if let Some(name) = actor_name.filter(|a| !a.is_empty()) {
            query = query.filter(audit_log::Column::ActorName.eq(name));
        }
        let rows = query
            .order_by_desc(audit_log::Column::At)
            .limit(MAX_ENTRIES)
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at: rfc3339(r.at),
                actor: r.actor_name,
                action: r.action,
                object_kind: r.object_kind,
                object_id: r.object_id,
                client: r.client_addr,
                outcome: r.outcome,
            })
            .collect())
    }
}

/// The tenant an entry is filed under: the object's, so that its tenant admins see what was
/// done to their tenant, also by a provider admin acting from another tenant. The actor's
/// own when the object belongs to no tenant, or to one the actor may not see: a refused
/// attempt on another tenant's object must not tell that tenant who tried.
fn filed_under(opctx: &OpContext, object_tenant: Option<TenantUuid>) -> Option<Uuid> {
    let actor = opctx.actor()?;
    let tenant = match object_tenant {
        Some(t) if actor.provider_admin || t == actor.tenant_id => t,
        _ => actor.tenant_id,
    };
    Some(tenant.into_untyped_uuid())
}

/// One entry of a call by `actor` (anonymous when `None`), filed under the actor's tenant.
pub(crate) fn entry_of(
    actor: Option<&Actor>,
    action: &str,
    object_kind: &str,
    object_id: &str,
    outcome: String,
) -> audit_log::ActiveModel {
    entry(
        actor.map(|a| a.user_id.into_untyped_uuid()),
        actor.map_or("anonymous", |a| a.username.as_str()),
        actor.map(|a| a.tenant_id.into_untyped_uuid()),
        actor.and_then(|a| a.client),
        action,
        object_kind,
        object_id,
        outcome,
    )
}

/// One entry, for callers that are not (yet) an actor, such as a sign-in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn entry(
    actor_id: Option<Uuid>,
    actor_name: &str,
    tenant_id: Option<Uuid>,
    client: Option<std::net::IpAddr>,
    action: &str,
    object_kind: &str,
    object_id: &str,
    outcome: String,
) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        id: Set(Uuid::new_v4()),
        at: Set(now_ms()),
        actor_id: Set(actor_id),
        actor_name: Set(actor_name.to_owned()),
        tenant_id: Set(tenant_id),
        action: Set(action.to_owned()),
        object_kind: Set(object_kind.to_owned()),
        object_id: Set(object_id.to_owned()),
        client_addr: Set(client.map(|c| c.to_string()).unwrap_or_default()),
        outcome: Set(outcome),
    }
}

/// How a call ended, as the log shows it: `ok` or the status and the sentence.
pub(crate) fn outcome<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{} {e}", e.status_code()),
    }
}
