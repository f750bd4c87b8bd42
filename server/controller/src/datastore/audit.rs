//! The audit log's rows: written for every mutating call, read newest first a page at a
//! time (keyset pagination in SQL), a tenant admin's reads scoped to their tenant.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::page::{Page, PageQuery};
use portal_types::views::AuditEntry;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use super::entity::audit_log;
use super::{DataStore, StoreError, now_ms, rfc3339};
use crate::authz::Action;
use crate::context::OpContext;

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

    /// One page of the log, newest first: by time, entries of the same millisecond by id.
    /// `action` filters by prefix (e.g. `instance.`), `actor_name` by username. The page is
    /// cut in SQL after the entry `page.page_token` names (keyset pagination), so entries
    /// written while a caller walks the pages do not shift them: nothing is seen twice or
    /// skipped.
    pub async fn audit_list(
        &self,
        opctx: &OpContext,
        action: Option<&str>,
        actor_name: Option<&str>,
        page: &PageQuery,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let actor = opctx.authorize(Action::AuditRead)?;
        let limit = page.limit()?;
        let after = page.page_token.as_deref().map(Cursor::parse).transpose()?;
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
        if let Some(Cursor { at, id }) = after {
            // Older than the last entry of the previous page: (at, id) < (its at, its id).
            query = query.filter(
                Condition::any().add(audit_log::Column::At.lt(at)).add(
                    Condition::all()
                        .add(audit_log::Column::At.eq(at))
                        .add(audit_log::Column::Id.lt(id)),
                ),
            );
        }
        // One more than the page holds tells whether another page follows.
        let mut rows = query
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await?;
        let next_page_token = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| Cursor { at: r.at, id: r.id }.to_string())
        } else {
            None
        };
        let items = rows
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
            .collect();
        Ok(Page { items, next_page_token })
    }
}

/// Where a page of the log ends: its last entry's time (ms) and id, `<at>.<id>` in a
/// `page_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    at: i64,
    id: Uuid,
}

impl Cursor {
    fn parse(token: &str) -> Result<Cursor, Error> {
        let parsed = token.split_once('.').and_then(|(at, id)| {
            Some(Cursor { at: at.parse().ok()?, id: Uuid::try_parse(id).ok()? })
        });
        parsed.ok_or_else(|| {
            Error::invalid(
                "The page_token is not one the audit log gave; pass a next_page_token as it \
                 came, or none for the newest entries.",
            )
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.id.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_others_are_refused() {
        let cursor = Cursor { at: 1_764_000_000_123, id: Uuid::new_v4() };
        assert_eq!(Cursor::parse(&cursor.to_string()).unwrap(), cursor);
        for bad in ["", "x", "12", "12.", ".12", "a.00000000000000000000000000000000", "1.xyz"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
