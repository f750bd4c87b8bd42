//! The `dpu-agent` binary: answers GetInventory over mutual TLS, stops cleanly on SIGTERM;
//! a bad config is one sentence and exit status 2.

use std::process::Command;

use agent_common::program::testing::TestDir;
use agent_proto::v1 as pb;
use agent_proto::v1::dpu_agent_client::DpuAgentClient;

const BINARY: &str = env!("CARGO_BIN_EXE_dpu-agent");
const ID: &str = "lab-h1-dpu0";
const DPU: &str = r#"
[backend.sim.dpu]
dpu_id = "lab-h1-dpu0"
host_id = "lab-h1"
model = "BlueField-3 B3220"
pci_address = "0000:c1:00.0"
vtep_ip = "10.0.0.7"
max_ports = 16
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_inventory_over_mtls_and_stops_on_sigterm() {
    let dir = TestDir::new("dpu-agent-serve", "dpu", ID);
    let agent = dir.start(BINARY, &dir.write_config(DPU)).await;
    let inventory = DpuAgentClient::new(agent.channel.clone())
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!((inventory.dpu_id.as_str(), inventory.max_ports), (ID, 16));
    agent.stop();
}

#[test]
fn test_a_bad_config_is_one_sentence_and_status_2() {
    let dir = TestDir::new("dpu-agent-bad", "dpu", ID);
    let output = dir.run(BINARY, &dir.write_config(&DPU.replace("max_ports = 16", "")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("dpu-agent: "), "{stderr}");
    assert!(stderr.contains("missing field `max_ports`"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

const LINUX_DPU: &str = r#"
[backend.linux.dpu]
dpu_id = "lab-h1-dpu0"
host_id = "lab-h1"
model = "veth"
pci_address = "0000:00:00.0"
vtep_ip = "192.0.2.1"
max_ports = 4
"#;

#[test]
fn test_the_linux_backend_names_a_missing_namespace_in_one_sentence() {
    let dir = TestDir::new("dpu-agent-no-netns", "dpu", ID);
    let backend =
        format!("[backend.linux]\nnetns = \"dpt-absent-{}\"\n{LINUX_DPU}", std::process::id());
    let output = dir.run(BINARY, &dir.write_config(&backend));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot open network namespace /run/netns/dpt-absent-"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// `[backend.linux]` end to end: a port sent over gRPC appears as devices and nftables chains
/// in a namespace this test makes and removes. Needs root, `ip` and `nft`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_linux_backend_programs_a_port_sent_over_grpc() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    let tools = ["ip", "nft"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok_and(|o| o.status.success()));
    if !root || !tools {
        eprintln!("skipped: the Linux backend needs root, ip and nft");
        return;
    }
    let netns = Netns::new(format!("dpt{}-agent", std::process::id()));
    let dir = TestDir::new("dpu-agent-linux", "dpu", ID);
    let backend = format!("[backend.linux]\nnetns = \"{}\"\n{LINUX_DPU}", netns.0);
    let agent = dir.start(BINARY, &dir.write_config(&backend)).await;
    let mut client = DpuAgentClient::new(agent.channel.clone());
    let port_id = "00000000-0000-4000-8000-0000000000a1";
    let spec = pb::PortSpec {
        port_id: port_id.into(),
        vm_id: "00000000-0000-4000-8000-00000000000a".into(),
        gateway: String::new(),
        prefix_len: 0,
        public_ip: String::new(),
        generation: 1,
        vni: 100,
        mac: "02:00:0a:00:00:05".into(),
        ip: "10.0.0.5".into(),
        rules: vec![],
    };
    let status = client
        .ensure_port(pb::EnsurePortRequest { spec: Some(spec) })
        .await
        .expect("ensure")
        .into_inner();
    assert_eq!(status.state, pb::PortState::Ready as i32);
    let vm_side = dpu_agent::vm_device_name(port_id);
    assert!(netns.ip(&["link", "show", &vm_side]).contains("02:00:0a:00:00:05"));
    let ingress_chain = format!("chain in_{}", &vm_side[2..]);
    assert!(netns.nft().contains(&ingress_chain), "the port's ingress chain");
    let counters = client
        .port_counters(pb::PortCountersRequest { port_id: port_id.into() })
        .await
        .expect("counters")
        .into_inner();
    assert!(!counters.simulated, "nftables' counters are measured");
    assert_eq!((counters.rules.len(), counters.rule_changes), (0, 0), "{counters:?}");
    assert!(counters.ingress.is_some() && counters.spoofed.is_some());

    client
        .remove_port(pb::RemovePortRequest { port_id: port_id.into(), generation: 1 })
        .await
        .expect("remove");
    assert!(!netns.ip(&["link", "show"]).contains(&vm_side));
    assert!(!netns.ip(&["link", "show"]).contains("br100"), "the VNI went with its last port");
    assert!(!netns.nft().contains(&ingress_chain));
    agent.stop();
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip");
        assert!(status.success());
        Netns(name)
    }

    fn ip(&self, args: &[&str]) -> String {
        let output = Command::new("ip").arg("-n").arg(&self.0).args(args).output().expect("ip");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn nft(&self) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "list", "ruleset"])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
