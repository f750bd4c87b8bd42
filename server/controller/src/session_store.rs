//! tower-sessions 0.15 store over our database (SQLite or PostgreSQL). No published store
//! implements the 0.15 trait, so this is ours; `create` retries on an id collision instead
//! of overwriting someone else's session.

use async_trait::async_trait;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::datastore::entity::session;
use crate::datastore::now_ms;

#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: DatabaseConnection,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Removes expired sessions; run periodically.
    pub async fn delete_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let res = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lt(now_ms()))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    fn row(record: &Record) -> session_store::Result<session::ActiveModel> {
        let data = serde_json::to_vec(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expires_at = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
        let user_id = record
            .data
            .get(USER_KEY)
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        Ok(session::ActiveModel {
            id: Set(record.id.to_string()),
            data: Set(data),
            expires_at: Set(expires_at),
            user_id: Set(user_id),
        })
    }
}

fn backend(e: sea_orm::DbErr) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let inserted = session::Entity::insert(Self::row(record)?)
                .on_conflict(OnConflict::column(session::Column::Id).do_nothing().to_owned())
                .exec_without_returning(&self.db)
                .await
                .map_err(backend)?;
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Updates a session that exists; never re-creates one that was deleted meanwhile (a
    /// sign-out or revocation racing a request of the same session). New sessions and new
    /// ids after `cycle_id` go through `create`.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let row = Self::row(record)?;
        session::Entity::update_many()
            .set(session::ActiveModel { id: sea_orm::ActiveValue::NotSet, ..row })
            .filter(session::Column::Id.eq(record.id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let Some(row) = session::Entity::find_by_id(session_id.to_string())
            .filter(session::Column::ExpiresAt.gt(now_ms()))
            .one(&self.db)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_slice(&row.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.expires_at) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record { id: *session_id, data, expiry_date }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        session::Entity::delete_by_id(session_id.to_string())
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The session key holding the signed-in user's id.
const USER_KEY: &str = "user_id";
/// The session key holding the tenant the user chose to act in.
const TENANT_KEY: &str = "tenant_id";
/// The session key holding when the user signed in (Unix seconds).
const SIGNED_IN_AT_KEY: &str = "signed_in_at";
/// The same in Unix milliseconds, compared with the user's `sessions_valid_after`.
const SIGNED_IN_AT_MS_KEY: &str = "signed_in_at_ms";
/// A session ends this long after sign-in however active it is (the idle timeout is set on
/// the cookie layer).
pub const ABSOLUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

fn session_error(e: tower_sessions::session::Error) -> portal_types::Error {
    portal_types::Error::internal(e)
}

impl crate::Controller {
    /// Signs a user in on this session: a fresh session id (no fixation), then the user.
    pub async fn session_sign_in(
        &self,
        session: &tower_sessions::Session,
        user_id: portal_types::ids::UserUuid,
    ) -> Result<(), portal_types::Error> {
        session.cycle_id().await.map_err(session_error)?;
        // Back to the usual lifetime if it was an anonymous visitor's short one.
        session.set_expiry(None);
        session.insert(USER_KEY, user_id).await.map_err(session_error)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        session.insert(SIGNED_IN_AT_KEY, now).await.map_err(session_error)?;
        session.insert(SIGNED_IN_AT_MS_KEY, now_ms()).await.map_err(session_error)?;
        Ok(())
    }

    /// Ends the session on the server: the row is deleted, so a copied cookie is worthless.
    pub async fn session_sign_out(
        &self,
        session: &tower_sessions::Session,
    ) -> Result<(), portal_types::Error> {
        session.flush().await.map_err(session_error)
    }

    /// The actor behind a session, if it is signed in and the user may still sign in;
    /// `client` is the request's address, recorded with what the actor does.
    pub async fn session_actor(
        &self,
        session: &tower_sessions::Session,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<crate::authz::Actor>, portal_types::Error> {
        let user: Option<portal_types::ids::UserUuid> =
            session.get(USER_KEY).await.map_err(session_error)?;
        let signed_in_at: Option<i64> =
            session.get(SIGNED_IN_AT_KEY).await.map_err(session_error)?;
        let age = time::OffsetDateTime::now_utc().unix_timestamp() - signed_in_at.unwrap_or(0);
        if user.is_some() && age > ABSOLUTE_TIMEOUT.as_secs() as i64 {
            session.flush().await.map_err(session_error)?;
            return Ok(None);
        }
        match user {
            Some(user_id) => {
                let tenant: Option<portal_types::ids::TenantUuid> =
                    session.get(TENANT_KEY).await.map_err(session_error)?;
                let signed_in_ms: Option<i64> =
                    session.get(SIGNED_IN_AT_MS_KEY).await.map_err(session_error)?;
                let signed_in_ms = signed_in_ms.unwrap_or(signed_in_at.unwrap_or(0) * 1000);
                let actor = self.datastore.actor_load(user_id, tenant, Some(signed_in_ms)).await?;
                Ok(actor.map(|actor| crate::authz::Actor { client, ..actor }))
            }
            None => Ok(None),
        }
    }

    /// Acts in another of the user's tenants from now on; the session id is rotated since
    /// the role changes with it. A tenant the user is not in is not found.
    pub async fn session_switch_tenant(
        &self,
        session: &tower_sessions::Session,
        opctx: &crate::context::OpContext,
        tenant: portal_types::ids::TenantUuid,
    ) -> Result<(), portal_types::Error> {
        let actor = opctx.authorize(crate::authz::Action::InstanceRead)?;
        if self.actor_in(actor.user_id, Some(tenant)).await?.map(|a| a.tenant_id) != Some(tenant) {
            return Err(portal_types::Error::not_found("tenant", tenant));
        }
        session.cycle_id().await.map_err(session_error)?;
        session.insert(TENANT_KEY, tenant).await.map_err(session_error)
    }

    /// The user's sessions, labelled by a hash of their id (ids are bearer secrets).
    pub async fn session_list(
        &self,
        opctx: &crate::context::OpContext,
        current: &tower_sessions::Session,
    ) -> Result<Vec<portal_types::views::SessionView>, portal_types::Error> {
        let actor = opctx.authorize(crate::authz::Action::AccountRead)?;
        let current = current.id().map(|id| session_label(&id.to_string()));
        let rows = session::Entity::find()
            .filter(
                session::Column::UserId
                    .eq(portal_types::ids::GenericUuid::into_untyped_uuid(actor.user_id)),
            )
            .filter(session::Column::ExpiresAt.gt(now_ms()))
            .all(&self.db)
            .await
            .map_err(portal_types::Error::internal)?;
        Ok(rows
            .iter()
            .map(|r| {
                let label = session_label(&r.id);
                portal_types::views::SessionView {
                    current: current.as_deref() == Some(label.as_str()),
                    label,
                    expires_at: crate::datastore::rfc3339(r.expires_at),
                }
            })
            .collect())
    }

    /// Ends one of the user's sessions by its label; another user's is not found.
    pub async fn session_end(
        &self,
        opctx: &crate::context::OpContext,
        label: &str,
    ) -> Result<(), portal_types::Error> {
        let result = async {
            let actor = opctx.authorize(crate::authz::Action::AccountWrite)?;
            let rows = session::Entity::find()
                .filter(
                    session::Column::UserId
                        .eq(portal_types::ids::GenericUuid::into_untyped_uuid(actor.user_id)),
                )
                .all(&self.db)
                .await
                .map_err(portal_types::Error::internal)?;
            let row = rows
                .iter()
                .find(|r| session_label(&r.id) == label)
                .ok_or_else(|| portal_types::Error::not_found("session", label))?;
            session::Entity::delete_by_id(row.id.clone())
                .exec(&self.db)
                .await
                .map_err(portal_types::Error::internal)?;
            Ok(())
        }
        .await;
        self.audited(opctx, "session.end", "session", label, result).await
    }
}

/// A short stable label for a session: the first 12 hex digits of its id's SHA-256.
fn session_label(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}
