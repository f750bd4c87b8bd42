//! Bad configuration ends the portal with one sentence on stderr and exit code 1, never a
//! panic or a backtrace. (An agent that does not answer is named, but the portal starts.)

use std::process::Command;

fn portal(test: &str, args: &[&str]) -> (i32, String) {
    let data = std::env::temp_dir().join(format!("portal-badcfg-{test}-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(args)
        .env("PORTAL_LOG", "error")
        .env_remove("PORTAL_AGENTS_FILE")
        .env_remove("PORTAL_DATABASE_URL")
        .output()
        .expect("portal-server runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn last_line(stderr: &str) -> &str {
    stderr.trim_end().lines().last().unwrap_or_default()
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = portal("port", &["--listen", &addr]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        format!(
            "error: the address {addr} is already in use; stop the program using it or pass \
             --listen with another port"
        )
    );
}

#[test]
fn an_unusable_data_dir_is_named() {
    let file = std::env::temp_dir().join(format!("portal-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(["--data-dir", bad.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let line = last_line(&stderr);
    assert!(line.starts_with("error: cannot create the data directory"), "{stderr}");
    assert!(line.ends_with("pass --data-dir with a writable path"), "{stderr}");
}

/// An agents file with one host at `url`, and the PKI for it in the test's data directory
/// (made by `portal-server pki`).
fn agents_file_with_pki(test: &str, url: &str) -> std::path::PathBuf {
    let agents =
        std::env::temp_dir().join(format!("portal-agents-{test}-{}.toml", std::process::id()));
    std::fs::write(
        &agents,
        format!("[[agent]]\nkind = \"host\"\nid = \"su1-h01\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let data = std::env::temp_dir().join(format!("portal-badcfg-{test}-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(["--data-dir", data.to_str().unwrap(), "pki", "--agents-file"])
        .arg(&agents)
        .output()
        .expect("portal-server pki runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("pki/agents/host/su1-h01.key").exists());
    agents
}

/// An agent that does not answer is not bad configuration: the portal starts, names it in
/// its banner and keeps trying.
#[test]
fn an_unreachable_agent_is_named_and_the_portal_starts_anyway() {
    use std::io::BufRead;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agents = agents_file_with_pki("agent", &format!("https://127.0.0.1:{closed}"));
    let data = std::env::temp_dir().join(format!("portal-badcfg-agent-{}", std::process::id()));
    // An (empty) browser bundle: pages are not the point here.
    let site = data.join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/portal_bg.wasm"), b"").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(["--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0", "--agents-file"])
        .arg(&agents)
        .arg("--site-root")
        .arg(&site)
        .env("PORTAL_LOG", "error")
        .env_remove("PORTAL_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("portal-server runs");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let named = line.contains("cannot reach the host agent su1-h01");
        banner.push(line);
        if named {
            break;
        }
    }
    // The portal is still running, serving, when it names the agent.
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let banner = banner.join("\n");
    assert!(running, "{banner}{}", String::from_utf8_lossy(&out.stderr));
    assert!(banner.contains("GPU cloud portal is running at"), "{banner}");
    assert!(banner.contains("1 of the 1 agents are not attached yet"), "{banner}");
    let line = banner.lines().last().unwrap().trim();
    assert!(
        line.starts_with(&format!(
            "- cannot reach the host agent su1-h01 at https://127.0.0.1:{closed}"
        )),
        "{banner}"
    );
    assert!(line.ends_with("start it, or remove it from the agents file"), "{banner}");
}

#[test]
fn a_plain_text_agent_url_is_named() {
    let agents = agents_file_with_pki("plain", "http://127.0.0.1:1");
    let (code, stderr) =
        portal("plain", &["--listen", "127.0.0.1:0", "--agents-file", agents.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        last_line(&stderr),
        "error: cannot dial the host agent su1-h01 at http://127.0.0.1:1: agents serve only \
         mutual TLS, so write its URL as https://host:port"
    );
}

#[test]
fn missing_agent_certificates_are_named() {
    let agents =
        std::env::temp_dir().join(format!("portal-agents-nopki-{}.toml", std::process::id()));
    std::fs::write(
        &agents,
        "[[agent]]\nkind = \"host\"\nid = \"su1-h01\"\nurl = \"https://127.0.0.1:1\"\n",
    )
    .unwrap();
    let (code, stderr) =
        portal("nopki", &["--listen", "127.0.0.1:0", "--agents-file", agents.to_str().unwrap()]);
    assert_eq!(code, 1);
    let line = last_line(&stderr);
    assert!(line.starts_with("error: cannot read "), "{stderr}");
    assert!(line.contains("pki/ca.pem"), "{stderr}");
    assert!(line.contains("portal-server pki --agents-file FILE --pki-dir DIR"), "{stderr}");
}

#[test]
fn a_malformed_agents_file_is_named() {
    let agents =
        std::env::temp_dir().join(format!("portal-agents-bad-{}.toml", std::process::id()));
    std::fs::write(&agents, "[[agent]]\nkind = \"toaster\"\n").unwrap();
    let (code, stderr) =
        portal("file", &["--listen", "127.0.0.1:0", "--agents-file", agents.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(last_line(&stderr).starts_with("error: the agents file"), "{stderr}");
    assert!(last_line(&stderr).contains("is not valid"), "{stderr}");
}

#[test]
fn a_missing_browser_bundle_is_named() {
    let site = std::env::temp_dir().join(format!("portal-no-site-{}", std::process::id()));
    let (code, stderr) = portal(
        "site",
        &[
            "--listen",
            "127.0.0.1:0",
            "--sim-scalable-units",
            "1",
            "--site-root",
            site.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    let line = last_line(&stderr);
    assert!(line.starts_with("error: the browser bundle"), "{stderr}");
    assert!(line.contains("is missing; build it with the README's run command"), "{stderr}");
}

#[test]
fn the_config_file_is_read_below_the_environment_and_bad_keys_are_named() {
    let file = std::env::temp_dir().join(format!("portal-config-{}.toml", std::process::id()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let from_file = taken.local_addr().unwrap().to_string();
    std::fs::write(&file, format!("listen = \"{from_file}\"\n")).unwrap();
    let (code, stderr) = portal("cfgfile", &["--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(last_line(&stderr).contains(&from_file), "the file's address is used: {stderr}");

    // The environment wins over the file.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let from_env = other.local_addr().unwrap().to_string();
    let data = std::env::temp_dir().join(format!("portal-badcfg-env-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_portal-server"))
        .args(["--data-dir", data.to_str().unwrap()])
        .env("PORTAL_CONFIG", &file)
        .env("PORTAL_LISTEN", &from_env)
        .env("PORTAL_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(last_line(&stderr).contains(&from_env), "{stderr}");

    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let (code, stderr) = portal("cfgkey", &["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(last_line(&stderr).starts_with("error: `lisen` in "), "{stderr}");
    assert!(last_line(&stderr).contains("is not a setting; use the long flags"), "{stderr}");
    let _ = std::fs::remove_file(file);
}
