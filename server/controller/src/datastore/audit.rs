//! The audit log's rows: written for every mutating call, read newest first, a tenant
//! admin's reads scoped to their tenant.

use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::views::AuditEntry;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use super::entity::audit_log;
use super::{DataStore, StoreError, now_ms, rfc3339};
use crate::authz::Action;
use crate::context::OpContext;

/// Entries a single read returns at most.
const MAX_ENTRIES: u64 = 500;

/// One entry to write.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub actor_id: Option<UserUuid>,
    pub actor_name: String,
    /// The tenant whose admins see the entry (none: provider admins only).
    pub tenant_id: Option<TenantUuid>,
    pub client: Option<std::net::IpAddr>,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    /// `ok`, or the status and the sentence.
    pub outcome: String,
}

impl AuditRecord {
    pub(crate) fn row(&self) -> audit_log::ActiveModel {
        audit_log::ActiveModel {
            id: Set(Uuid::new_v4()),
            at: Set(now_ms()),
            actor_id: Set(self.actor_id.map(GenericUuid::into_untyped_uuid)),
            actor_name: Set(self.actor_name.clone()),
            tenant_id: Set(self.tenant_id.map(GenericUuid::into_untyped_uuid)),
            action: Set(self.action.clone()),
            object_kind: Set(self.object_kind.clone()),
            object_id: Set(self.object_id.clone()),
            client_addr: Set(self.client.map(|c| c.to_string()).unwrap_or_default()),
            outcome: Set(self.outcome.clone()),
        }
    }
}

impl DataStore {
    pub async fn audit_insert(&self, record: &AuditRecord) -> Result<(), StoreError> {
        audit_log::Entity::insert(record.row()).exec_without_returning(&self.db).await?;
        Ok(())
    }

    /// Newest first; `action` filters by prefix (e.g. `instance.`), `actor_name` by username.
    pub async fn audit_list(
        &self,
        opctx: &OpContext,
        action: Option<&str>,
        actor_name: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
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
        let rows =
            query.order_by_desc(audit_log::Column::At).limit(MAX_ENTRIES).all(&self.db).await?;
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
