//! The `sim-fleet` binary: argument errors, and a real run stopped with SIGINT.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_proto::AgentList;

const BIN: &str = env!("CARGO_BIN_EXE_sim-fleet");

fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BIN).args(args).output().expect("run sim-fleet");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn test_bad_arguments_exit_2_with_one_sentence() {
    let bad_topology =
        std::env::temp_dir().join(format!("sim-fleet-bad-{}.toml", std::process::id()));
    std::fs::write(&bad_topology, "[fleet]\nscalable_units = 1\n").expect("write");
    let bad_topology = bad_topology.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (&["--scalable-units", "0"], "0 is not in 1..=500"),
        (&["--scalable-units", "many"], "invalid value 'many'"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["--topology", "/nonexistent.toml"], "cannot read topology file /nonexistent.toml"),
        (&["--topology", &bad_topology], "missing field"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("sim-fleet: "), "{stderr:?}");
        assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr:?}");
    }
    let (code, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
}

#[test]
fn test_serves_writes_agents_file_and_stops_on_sigint() {
    let agents_file: PathBuf =
        std::env::temp_dir().join(format!("sim-fleet-agents-{}.toml", std::process::id()));
    let pki_dir = std::env::temp_dir().join(format!("sim-fleet-cli-pki-{}", std::process::id()));
    let _ = std::fs::remove_file(&agents_file);
    let _ = std::fs::remove_dir_all(&pki_dir);
    let mut child = Command::new(BIN)
        .args(["--scalable-units", "1", "--agents-file"])
        .arg(&agents_file)
        .arg("--pki-dir")
        .arg(&pki_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sim-fleet");

    let deadline = Instant::now() + Duration::from_secs(20);
    let agents = loop {
        if let Ok(text) = std::fs::read_to_string(&agents_file) {
            break toml::from_str::<AgentList>(&text).expect("agents file is an AgentList");
        }
        assert!(Instant::now() < deadline, "no agents file written");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(agents.agents.len(), 32 + 64 + 8);
    assert_eq!(agents.agents[0].id, "su1-h01");
    assert!(agents.agents.iter().all(|a| a.url.starts_with("https://")), "TLS only");
    for file in
        ["ca.pem", "control-plane.pem", "agents/host/su1-h01.key", "agents/switch/su1-leaf1.pem"]
    {
        assert!(pki_dir.join(file).exists(), "{file} created in --pki-dir");
    }

    let status =
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("send SIGINT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sim-fleet did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_file(&agents_file);
    let _ = std::fs::remove_dir_all(&pki_dir);
}
