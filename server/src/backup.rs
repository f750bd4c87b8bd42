//! `portal-server backup --to FILE` and `restore --from FILE`: the database, whichever it
//! is. SQLite is copied online (`VACUUM INTO`, the portal may keep running) and restored
//! only with the portal stopped, after an integrity check, keeping the replaced file.
//! PostgreSQL goes through its own `pg_dump` (custom format) and `pg_restore`. The password
//! of the URL is handed to them in `PGPASSWORD`, never on their command line.
//!
//! The secret key (`PORTAL_SECRET_KEY` or `DATA_DIR/secret.key`) is not in the database:
//! back it up separately, not beside the database.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::anyhow;

use crate::config::Config;

pub async fn backup(config: &Config, to: &Path) -> anyhow::Result<()> {
    let url = config.database_url();
    if is_postgres(&url) {
        if to.exists() {
            return Err(anyhow!("{} exists already; choose a new file", to.display()));
        }
        let file = to.to_string_lossy();
        postgres_tool("pg_dump", &url, &["--format=custom", "--file", &file])?;
    } else {
        portal_controller::datastore::backup::sqlite_backup(&url, to)
            .await
            .map_err(|e| anyhow!(e))?;
    }
    println!(
        "backed up the database to {}; keep the secret key (PORTAL_SECRET_KEY or {}) too, \
         somewhere else",
        to.display(),
        config.data_dir.join("secret.key").display()
    );
    Ok(())
}

pub async fn restore(config: &Config, from: &Path, force: bool) -> anyhow::Result<()> {
    if !from.is_file() {
        return Err(anyhow!("{} is not a file; pass a backup made by `backup`", from.display()));
    }
    let url = config.database_url();
    if is_postgres(&url) {
        let file = from.to_string_lossy();
        let args = ["--clean", "--if-exists", "--no-owner", "--single-transaction", &file];
        postgres_tool("pg_restore", &url, &args)?;
        println!("restored the database from {}", from.display());
        return Ok(());
    }
    let live = sqlite_path(&url)?;
    let wal = with_suffix(&live, "-wal");
    if wal.exists() && !force {
        return Err(anyhow!(
            "{} is in use ({} exists): stop the portal first, or pass --force if it is stopped \
             and crashed",
            live.display(),
            wal.display()
        ));
    }
    let staged = with_suffix(&live, ".restoring");
    std::fs::copy(from, &staged)
        .map_err(|e| anyhow!("cannot copy {} to {}: {e}", from.display(), staged.display()))?;
    if let Err(e) = portal_controller::datastore::backup::sqlite_check(&staged).await {
        let _ = std::fs::remove_file(&staged);
        return Err(anyhow!(e.replace(&staged.display().to_string(), &from.display().to_string())));
    }
    let kept = with_suffix(&live, ".before-restore");
    if live.exists() {
        std::fs::rename(&live, &kept)
            .map_err(|e| anyhow!("cannot keep {} as {}: {e}", live.display(), kept.display()))?;
    }
    for stale in [wal, with_suffix(&live, "-shm")] {
        let _ = std::fs::remove_file(stale);
    }
    std::fs::rename(&staged, &live)
        .map_err(|e| anyhow!("cannot put the backup in place at {}: {e}", live.display()))?;
    println!(
        "restored {} from {} (the replaced database is {})",
        live.display(),
        from.display(),
        kept.display()
    );
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The file of a `sqlite://PATH?options` URL.
fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| anyhow!("the database URL is neither sqlite:// nor postgres://"))?;
    Ok(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Runs `pg_dump`/`pg_restore` on the database of `url`, its password in the environment.
fn postgres_tool(tool: &str, url: &str, args: &[&str]) -> anyhow::Result<()> {
    let (without_password, password) = split_password(url);
    let mut command = Command::new(tool);
    command.args(args).arg("--dbname").arg(&without_password);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let out = command.output().map_err(|e| {
        anyhow!("cannot run {tool}: {e}; install the PostgreSQL client (Debian: postgresql-client)")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("no message");
        return Err(anyhow!("{tool} failed: {first}"));
    }
    Ok(())
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `secret`).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let Some((userinfo, host)) = rest.split_once('@') else { return (url.to_owned(), None) };
    match userinfo.split_once(':') {
        Some((user, password)) => (format!("{scheme}://{user}@{host}"), Some(decode(password))),
        None => (url.to_owned(), None),
    }
}

/// Percent-decoding, as URLs carry passwords with `@`, `:` or `/` in them.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        let (url, password) = split_password("postgres://portal:s3cr%40t@db:5432/portal");
        assert_eq!(url, "postgres://portal@db:5432/portal");
        assert_eq!(password.as_deref(), Some("s3cr@t"));
        assert_eq!(split_password("postgres://db/portal").1, None);
        let path = sqlite_path("sqlite://data/portal.db?mode=rwc").unwrap();
        assert_eq!(path, PathBuf::from("data/portal.db"));
    }
}
