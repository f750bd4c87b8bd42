//! PostgreSQL LISTEN/NOTIFY, how replicas tell each other that something changed (SQLite
//! has a single process, which re-reads instead).

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::{DataStore, StoreError};

/// A connection listening on one channel.
pub(crate) struct Listener(PgListener);

fn listen_error(e: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Query(DbErr::Custom(format!("LISTEN: {e}")))
}

impl DataStore {
    pub(crate) fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Announces `payload` on `channel` to every listening replica (PostgreSQL only).
    pub(crate) async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        );
        self.db.execute_raw(notify).await?;
        Ok(())
    }

    /// Starts listening on `channel` with a connection of its own (PostgreSQL only).
    pub(crate) async fn listen(&self, channel: &str) -> Result<Listener, StoreError> {
        let pool = self.db.get_postgres_connection_pool().clone();
        let mut listener = PgListener::connect_with(&pool).await.map_err(listen_error)?;
        listener.listen(channel).await.map_err(listen_error)?;
        Ok(Listener(listener))
    }
}

impl Listener {
    /// The next payload; `None` when the connection was lost (the next call reconnects, and
    /// what was announced meanwhile is lost).
    pub(crate) async fn recv(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self.0.try_recv().await.map_err(listen_error)?.map(|n| n.payload().to_owned()))
    }
}
