//! The `dpu-agent` binary: answers GetInventory over mutual TLS, stops cleanly on SIGTERM;
//! a bad config is one sentence and exit status 2.

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
