//! Opening the database, migrating it once per start, write transactions, and the time
//! format of its columns.

use portal_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// The key of the PostgreSQL advisory lock replicas take turns on at startup ("gpcstart").
const STARTUP_LOCK: i64 = 0x6770_6373_7461_7274;

/// Runs `first_steps` (migrations, then whatever a start must do once: the first admin, the
/// seed catalog) with the database to itself. On PostgreSQL, replicas starting together take
/// turns on an advisory lock, held by a connection of its own for the whole run; on SQLite
/// one process owns the file.
/// `store_error` turns a database failure into the caller's error.
pub async fn with_startup_lock<T, E, F>(
    url: &str,
    store_error: impl Fn(super::StoreError) -> E,
    first_steps: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&super::DataStore) -> Result<T, E>,
{
    let db_error = |e: sea_orm::DbErr| store_error(super::StoreError::Query(e));
    if !url.starts_with("postgres") {
        let db = connect(url).await.map_err(&db_error)?;
        Migrator::up(&db, None).await.map_err(&db_error)?;
        return first_steps(&super::DataStore::new(db)).await;
    }
    // One connection: the lock belongs to the session that runs every step.
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false).max_connections(1).min_connections(1);
    let own = Database::connect(options).await.map_err(&db_error)?;
    let lock = format!("SELECT pg_advisory_lock({STARTUP_LOCK})");
    own.execute_unprepared(&lock).await.map_err(&db_error)?;
    let result = async {
        Migrator::up(&own, None).await.map_err(&db_error)?;
        first_steps(&super::DataStore::new(own.clone())).await
    }
    .await;
    // Closing the session releases the lock too; unlocking first hands it on at once.
    let unlock = format!("SELECT pg_advisory_unlock({STARTUP_LOCK})");
    let _ = own.execute_unprepared(&unlock).await;
    let _ = own.close().await;
    result
}

/// Opens the database at `url` (`sqlite://…?mode=rwc` or `postgres://…`); see
/// [`with_startup_lock`] for the migrations.
pub async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // SQLite serialises writers; a few connections are enough and a busy timeout turns
        // lock contention into waiting instead of errors.
        // Every pooled connection: WAL with NORMAL sync (durable at checkpoints, never
        // corrupt), a 64 MiB page cache and reads through a memory map, so that scans of
        // usage and events are not a system call per page.
        options.max_connections(4).map_sqlx_sqlite_opts(|o| {
            o.busy_timeout(std::time::Duration::from_secs(10))
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "268435456")
                .foreign_keys(true)
        });
    } else {
        options.max_connections(16);
    }
    Database::connect(options).await
}

impl super::DataStore {
    /// Opens the database at `url` (see [`connect`]).
    pub async fn open(url: &str) -> Result<Self, super::StoreError> {
        Ok(Self::new(connect(url).await?))
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
/// "database is locked" when another writer got in between, instead of waiting its turn.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    let mut options = TransactionOptions::default();
    if db.get_database_backend() == DbBackend::Sqlite {
        options.sqlite_transaction_mode = Some(SqliteTransactionMode::Immediate);
    }
    db.begin_with_options(options).await
}

/// Begins a write transaction that changes ports' generations in bulk (a port made or
/// released, a rule added or deleted, a DPU's ports marked for sending again). On
/// PostgreSQL two of them would lock overlapping port rows in different orders and deadlock
/// (seen with a few dozen deletes at once), so they take one transaction-scoped advisory
/// lock first and run one after the other; SQLite's write transactions are serial already.
pub async fn begin_port_write(
    db: &DatabaseConnection,
) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    let txn = begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        /// The advisory lock's key: any constant no other lock uses.
        const PORT_GENERATIONS: i64 = 0x706f_7274_6765_6e73; // "portgens"
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PORT_GENERATIONS})"))
            .await?;
    }
    Ok(txn)
}

/// Milliseconds since the Unix epoch, the unit of every `*_at` column.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 for a `*_at` column, for views.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
