//! `gpuctl`, the command-line client, against a running portal: sign-in stored readable by
//! its owner only, an instance's whole life (launch, stop, start, ssh, delete, each with
//! `--wait`), tables and JSON, and the exit codes scripts rely on. gpuctl runs in-process
//! (`gpuctl::run`); the portal is the real binary (`support::Portal`).

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::Portal;

/// A public key the portal accepts (ed25519, 32 bytes of 7).
const PUBLIC_KEY: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH cli@test";

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.out, self.err)
    }
}

/// Runs `gpuctl --config <config> args…`.
async fn gpuctl(config: &Path, args: &[&str]) -> Run {
    let mut argv = vec!["gpuctl".to_owned(), "--config".to_owned(), config.display().to_string()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = gpuctl::run(argv, &mut out, &mut err).await;
    Run { code, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

/// Runs gpuctl and expects `code`.
async fn expect(config: &Path, code: i32, args: &[&str]) -> Run {
    let run = gpuctl(config, args).await;
    assert_eq!(run.code, code, "gpuctl {args:?}: {run:?}");
    run
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gpuctl_drives_an_instance_through_its_life_and_exits_with_documented_codes() {
    let portal = Portal::start("gpuctl", &[]).await;
    let member = portal.admin_token("member").await;
    let viewer = portal.admin_token("viewer").await;
    let dir = TempDir(std::env::temp_dir().join(format!("gpuctl-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let config = dir.0.join("gpuctl").join("config.toml");
    let cfg = config.as_path();

    // Not signed in yet.
    expect(cfg, 3, &["whoami"]).await;

    // Sign-in: checked, stored readable by its owner only, never printed.
    let login = expect(cfg, 0, &["login", "--url", &portal.url, "--token", &member]).await;
    assert!(login.out.contains("Signed in"), "{login:?}");
    assert!(!login.out.contains(&member) && !login.err.contains(&member), "{login:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the config file's mode is {mode:o}");
    }
    assert!(std::fs::read_to_string(cfg).unwrap().contains(&member));

    let whoami = expect(cfg, 0, &["whoami"]).await;
    assert!(whoami.out.contains("admin") && whoami.out.contains("member"), "{whoami:?}");
    let me: Value = serde_json::from_str(&expect(cfg, 0, &["whoami", "-o", "json"]).await.out)
        .expect("whoami -o json is JSON");
    assert_eq!(me["role"], "member");

    let types = expect(cfg, 0, &["types", "list"]).await;
    assert!(types.out.starts_with("NAME") && types.out.contains("c8m32"), "{types:?}");
    let images = expect(cfg, 0, &["images", "list"]).await;
    assert!(images.out.lines().count() >= 2, "{images:?}");

    // An SSH key: API tokens may not manage keys (the portal says so, exit 4), so the key
    // is added in the admin's browser session; the token lists it and launches with it.
    let key_file = dir.0.join("id_ed25519.pub");
    std::fs::write(&key_file, format!("{PUBLIC_KEY}\n")).unwrap();
    let key_path = key_file.display().to_string();
    let refused = expect(cfg, 4, &["keys", "add", "--name", "cli-key", "--file", &key_path]).await;
    assert!(refused.err.contains("SSH keys"), "{refused:?}");
    let session = portal.signed_in("admin", support::PASSWORD).await;
    let added = session
        .post(format!("{}/api/v1/ssh-keys", portal.url))
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": "cli-key", "public_key": PUBLIC_KEY}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(added.status().as_u16(), 201, "{}", added.text().await.unwrap());
    let keys = expect(cfg, 0, &["keys", "list"]).await;
    assert!(keys.out.contains("cli-key") && keys.out.contains("SHA256:"), "{keys:?}");

    // Launch and wait until it runs.
    let launched = expect(
        cfg,
        0,
        &["instances", "launch", "--type", "c8m32", "--name", "cli-vm", "--key", "cli-key"]
            .into_iter()
            .chain(["--wait", "--timeout", "300"])
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(launched.out.contains("cli-vm") && launched.out.contains("Running"), "{launched:?}");
    assert!(launched.err.contains("Running ("), "progress on stderr: {launched:?}");

    let list = expect(cfg, 0, &["instances", "list"]).await;
    let header = list.out.lines().next().unwrap();
    assert!(header.starts_with("NAME") && header.contains("STATE"), "{list:?}");
    let row = list.out.lines().find(|l| l.starts_with("cli-vm ")).expect("a row for cli-vm");
    assert_eq!(header.find("STATE"), row.find("Running"), "aligned columns: {list:?}");
    let listed: Value =
        serde_json::from_str(&expect(cfg, 0, &["instances", "list", "-o", "json"]).await.out)
            .unwrap();
    let listed = listed.as_array().expect("a JSON array of instances");
    assert!(listed.iter().any(|i| i["name"] == "cli-vm" && i["state"] == "Running"));
    let running =
        expect(cfg, 0, &["instances", "list", "--state", "running", "--name", "cli"]).await;
    assert!(running.out.contains("cli-vm"), "{running:?}");
    let stopped = expect(cfg, 0, &["instances", "list", "--state", "stopped"]).await;
    assert!(!stopped.out.contains("cli-vm"), "{stopped:?}");

    let show = expect(cfg, 0, &["instances", "show", "cli-vm"]).await;
    assert!(show.out.contains("Running") && show.out.contains("c8m32"), "{show:?}");
    let detail: Value = serde_json::from_str(
        &expect(cfg, 0, &["instances", "show", "cli-vm", "-o", "json"]).await.out,
    )
    .unwrap();
    assert_eq!(detail["instance"]["name"], "cli-vm");
    assert_eq!(detail["ssh_keys"][0], "cli-key");
    let id = detail["instance"]["id"].as_str().unwrap().to_owned();
    let user = detail["default_user"].as_str().expect("the image's user").to_owned();
    let address = detail["ports"][0]["ip"].as_str().expect("an address").to_owned();
    // By id too.
    expect(cfg, 0, &["instances", "show", &id]).await;

    // ssh: the image's user at the first address, extra arguments after `--`.
    let ssh = expect(cfg, 0, &["ssh", "--dry-run", "cli-vm", "--", "-p", "22"]).await;
    assert_eq!(ssh.out.trim(), format!("ssh {user}@{address} -p 22"), "{ssh:?}");

    // Power: stop, a conflicting second stop, start.
    let stop = expect(cfg, 0, &["instances", "stop", "cli-vm", "--wait", "--timeout", "120"]).await;
    assert!(stop.out.contains("Stopped"), "{stop:?}");
    let again = expect(cfg, 6, &["instances", "stop", "cli-vm"]).await;
    assert_eq!(again.err.lines().count(), 1, "one sentence: {again:?}");
    let start =
        expect(cfg, 0, &["instances", "start", "cli-vm", "--wait", "--timeout", "120"]).await;
    assert!(start.out.contains("Running"), "{start:?}");

    // The error exits.
    let bogus = "gpc_not-a-real-token-0123456789";
    let bad_token = expect(cfg, 3, &["whoami", "--token", bogus]).await;
    assert!(!bad_token.err.contains(bogus) && !bad_token.out.contains(bogus), "{bad_token:?}");
    expect(cfg, 5, &["instances", "show", "no-such-instance"]).await;
    expect(cfg, 5, &["instances", "show", "00000000-0000-4000-8000-000000000000"]).await;
    // A type not in the catalog is not found; a launch the portal cannot take is invalid.
    expect(cfg, 5, &["instances", "launch", "--type", "no-such-type", "--name", "x"]).await;
    expect(cfg, 6, &["instances", "launch", "--type", "", "--name", "x"]).await;
    expect(cfg, 6, &["instances", "launch", "--type", "c8m32", "--name", "Not A Name!"]).await;
    let forbidden = expect(
        cfg,
        4,
        &["instances", "launch", "--type", "c8m32", "--name", "viewer-vm", "--token", &viewer],
    )
    .await;
    assert!(!forbidden.err.contains(&viewer), "{forbidden:?}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = format!("http://127.0.0.1:{free}");
    let unreachable = expect(cfg, 8, &["whoami", "--url", &nobody]).await;
    assert!(!unreachable.err.contains(&member), "{unreachable:?}");
    expect(cfg, 2, &["instances", "launch", "--name", "no-type"]).await;
    expect(cfg, 2, &["invoice", "2026-13"]).await;

    // Usage and the invoice of this month.
    let usage = expect(cfg, 0, &["usage"]).await;
    assert!(usage.out.contains("total"), "{usage:?}");
    let month = serde_json::from_str::<Value>(&expect(cfg, 0, &["usage", "-o", "json"]).await.out)
        .unwrap()["month"]
        .as_str()
        .unwrap()
        .to_owned();
    let invoice = expect(cfg, 0, &["invoice", &month]).await;
    assert!(invoice.out.starts_with("INSTANCE"), "{invoice:?}");

    // Delete and wait until it is gone.
    expect(cfg, 0, &["instances", "delete", "cli-vm", "--wait", "--timeout", "120"]).await;
    expect(cfg, 5, &["instances", "show", "cli-vm"]).await;
    expect(cfg, 4, &["keys", "delete", "cli-key"]).await;
    expect(cfg, 5, &["keys", "delete", "no-such-key"]).await;

    let completions = expect(cfg, 0, &["completions", "bash"]).await;
    assert!(completions.out.contains("_gpuctl") && completions.out.len() > 1000);
    let help = expect(cfg, 0, &["--help"]).await;
    assert!(help.out.contains("Exit codes") && help.out.contains("507"), "{help:?}");

    // What a person sees (shown with `--nocapture`).
    println!("{launched:?}\n{list:?}\n{show:?}\n{stop:?}\n{usage:?}\n{invoice:?}\n{types:?}");
    println!("{images:?}\n{keys:?}\n{whoami:?}\n{bad_token:?}\n{unreachable:?}");

    let logout = expect(cfg, 0, &["logout"]).await;
    assert!(logout.out.contains("Signed out"), "{logout:?}");
    assert!(!cfg.exists());
    expect(cfg, 3, &["whoami"]).await;
}
