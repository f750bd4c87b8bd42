//! Online backup of a SQLite database, and the check a restore makes first. (PostgreSQL is
//! backed up with its own tools, `pg_dump` and `pg_restore`; see the server's `backup`.)

use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Writes a consistent copy of the SQLite database at `url` to `to` while the portal may
/// be running (`VACUUM INTO`: one read transaction, writers go on). `to` must not exist.
pub async fn sqlite_backup(url: &str, to: &std::path::Path) -> Result<(), String> {
    if to.exists() {
        return Err(format!("{} exists already; choose a new file", to.display()));
    }
    let db = super::connect(url).await.map_err(|e| format!("cannot open the database: {e}"))?;
    let vacuum = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "VACUUM INTO ?",
        [to.to_string_lossy().into_owned().into()],
    );
    let result = db.execute_raw(vacuum).await.map_err(|e| format!("the backup failed: {e}"));
    let _ = db.close().await;
    result.map(|_| ())
}

/// Checks that `file` is an intact SQLite database of this portal (its integrity, and a
/// migrations table) before it replaces the live one. Opening it may convert its journal:
/// check a copy, not the backup itself.
pub async fn sqlite_check(file: &std::path::Path) -> Result<(), String> {
    let url = format!("sqlite://{}?mode=rw", file.display());
    let db = super::connect(&url)
        .await
        .map_err(|e| format!("{} cannot be opened as SQLite: {e}", file.display()))?;
    let checked = async {
        let row = db
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA integrity_check"))
            .await
            .map_err(|e| format!("{} is not a SQLite database: {e}", file.display()))?
            .ok_or("the integrity check returned nothing")?;
        let verdict: String = row.try_get_by_index(0).map_err(|e| e.to_string())?;
        if verdict != "ok" {
            return Err(format!("{} is damaged: {verdict}", file.display()));
        }
        let migrations =
            Statement::from_string(DbBackend::Sqlite, "SELECT count(*) FROM seaql_migrations");
        db.query_one_raw(migrations)
            .await
            .map_err(|_| format!("{} is not a portal database (no migrations)", file.display()))?;
        Ok(())
    }
    .await;
    let _ = db.close().await;
    checked
}
