//! Backup and restore as an operator does them: `portal-server backup` while the portal
//! runs, `restore` into a stopped portal's data directory (refused while one runs), and the
//! restored portal has exactly what was there at the backup, API tokens included. On SQLite,
//! and on PostgreSQL (`pg_dump`/`pg_restore`) when the run has one.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Portal;

/// `portal-server <args>`: exit code and output.
fn portal_command(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(args)
        .env_remove("PORTAL_DATABASE_URL")
        .output()
        .expect("portal-server runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

async fn launch(portal: &Portal, token: &str, name: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/instances", portal.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"name": name, "instance_type": "c8m32"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

/// The names of the instances the token's tenant has (waiting for the portal to answer).
async fn names(portal: &Portal, token: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/instances", portal.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let page: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            let mut names: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            return names;
        }
        assert!(Instant::now() < deadline, "the token no longer works: {}", response.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("portal-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_while_running_restores_into_a_stopped_portal() {
    let file = temp("sqlite.db");
    let token;
    {
        let portal = Portal::start("backup-sqlite", &[]).await;
        token = portal.admin_token("member").await;
        launch(&portal, &token, "kept").await;
        let data = portal.data_dir().to_str().unwrap().to_owned();
        let (code, out) =
            portal_command(&["--data-dir", &data, "backup", "--to", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("secret key"), "{out}");
        // Not over an existing file, and not into a running portal.
        let (code, out) =
            portal_command(&["--data-dir", &data, "backup", "--to", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}");
        let (code, out) =
            portal_command(&["--data-dir", &data, "restore", "--from", file.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(out.contains("stop the portal first"), "{out}");
        launch(&portal, &token, "after-backup").await;
        assert_eq!(names(&portal, &token).await, ["after-backup", "kept"]);
    }

    // A bad file is refused before anything is replaced.
    let data = temp("sqlite-restored");
    std::fs::create_dir_all(&data).unwrap();
    let junk = data.join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let data_arg = data.to_str().unwrap();
    let (code, out) =
        portal_command(&["--data-dir", data_arg, "restore", "--from", junk.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(!data.join("portal.db").exists());

    let (code, out) =
        portal_command(&["--data-dir", data_arg, "restore", "--from", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let restored = Portal::start_on("backup-sqlite-restored", data.clone(), &[]).await;
    assert_eq!(names(&restored, &token).await, ["kept"], "what the backup held, token included");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_restores_into_another_database() {
    let Ok(admin_url) = std::env::var("PORTAL_TEST_POSTGRES_URL") else {
        eprintln!("PORTAL_TEST_POSTGRES_URL is not set; skipping the PostgreSQL backup test");
        return;
    };
    let database = |name: &str| {
        let name = format!("portal_backup_{name}_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            let out =
                Command::new("psql").args([admin_url.as_str(), "-q", "-c", &sql]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0)
    };
    let (source, target) = (database("source"), database("target"));
    let file = temp("pg.dump");
    let token;
    {
        let portal = Portal::start("backup-pg", &["--database-url", &source]).await;
        token = portal.admin_token("member").await;
        launch(&portal, &token, "kept").await;
        let data = portal.data_dir().to_str().unwrap().to_owned();
        let args = ["--data-dir", &data, "--database-url", &source, "backup", "--to"];
        let (code, out) = portal_command(&[&args[..], &[file.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{out}");
        assert!(
            !out.contains("leadpw") && !out.contains("@127.0.0.1:5432/"),
            "no URL in the output"
        );
        launch(&portal, &token, "after-backup").await;
    }
    let data = temp("pg-restored");
    std::fs::create_dir_all(&data).unwrap();
    let args =
        ["--data-dir", data.to_str().unwrap(), "--database-url", &target, "restore", "--from"];
    let (code, out) = portal_command(&[&args[..], &[file.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{out}");
    let restored = Portal::start_on("backup-pg-restored", data, &["--database-url", &target]).await;
    assert_eq!(names(&restored, &token).await, ["kept"]);
    let _ = std::fs::remove_file(Path::new(&file));
}
