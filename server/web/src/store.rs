//! The tower-sessions 0.15 store over the control plane's datastore (SQLite or PostgreSQL).
//! No published store implements the 0.15 trait, so this is ours; `create` retries on an id
//! collision instead of overwriting someone else's session, and `save` only updates (a
//! session deleted meanwhile stays deleted).

use async_trait::async_trait;
use portal_controller::datastore::{DataStore, SessionRow, StoreError};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::session::USER_KEY;

#[derive(Clone)]
pub struct DbSessionStore {
    store: DataStore,
}

impl std::fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSessionStore").finish_non_exhaustive()
    }
}

impl DbSessionStore {
    pub fn new(store: DataStore) -> Self {
        Self { store }
    }

    /// Removes expired sessions; run periodically. How many were removed.
    pub async fn delete_expired(&self) -> Result<u64, portal_types::Error> {
        Ok(self.store.session_delete_expired().await?)
    }

    fn row(record: &Record) -> session_store::Result<SessionRow> {
        let data = serde_json::to_vec(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expires_at = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
        let user_id = record
            .data
            .get(USER_KEY)
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok());
        Ok(SessionRow { id: record.id.to_string(), data, expires_at, user_id })
    }
}

fn backend(e: StoreError) -> session_store::Error {
    // The whole cause chain, for the log.
    let e = portal_types::Error::from(e);
    session_store::Error::Backend(e.internal_detail().map_or_else(|| e.to_string(), str::to_owned))
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            if self.store.session_create(Self::row(record)?).await.map_err(backend)? {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Updates a session that exists; never re-creates one that was deleted meanwhile (a
    /// sign-out or revocation racing a request of the same session). New sessions and new
    /// ids after `cycle_id` go through `create`.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.store.session_save(Self::row(record)?).await.map_err(backend)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let Some(row) = self.store.session_load(&session_id.to_string()).await.map_err(backend)?
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
        self.store.session_delete(&session_id.to_string()).await.map_err(backend)
    }
}
