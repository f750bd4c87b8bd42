//! The `switch-agent` binary: answers GetInventory over mutual TLS, stops cleanly on
//! SIGTERM; a bad config is one sentence and exit status 2.

use agent_common::program::testing::TestDir;
use agent_proto::v1 as pb;
use agent_proto::v1::switch_agent_client::SwitchAgentClient;

const BINARY: &str = env!("CARGO_BIN_EXE_switch-agent");
const ID: &str = "lab-leaf0";
const SWITCH: &str = r#"
[backend.sim.switch]
switch_id = "lab-leaf0"
model = "Spectrum-4 SN5600"
role = "rail_leaf"
scalable_unit = 1
rail = 0
asn = 65100
loopback_ip = "10.255.0.1"
ports = [{ name = "swp1", peer_host_id = "lab-h1", peer_nic_index = 0, speed_gbps = 400 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_inventory_over_mtls_and_stops_on_sigterm() {
    let dir = TestDir::new("switch-agent-serve", "switch", ID);
    let agent = dir.start(BINARY, &dir.write_config(SWITCH)).await;
    let inventory = SwitchAgentClient::new(agent.channel.clone())
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!((inventory.switch_id.as_str(), inventory.ports.len()), (ID, 1));
    // A simulated switch holding no VPC: no VNI, no peer, and it says it is simulated.
    let evpn = SwitchAgentClient::new(agent.channel.clone())
        .evpn_status(pb::EvpnStatusRequest {})
        .await
        .expect("evpn status")
        .into_inner();
    assert_eq!(evpn, pb::EvpnStatusReply { peers: vec![], vnis: vec![], simulated: true });
    agent.stop();
}

#[test]
fn test_a_bad_config_is_one_sentence_and_status_2() {
    let dir = TestDir::new("switch-agent-bad", "switch", ID);
    let output = dir.run(BINARY, &dir.write_config(&SWITCH.replace("rail_leaf", "core")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("switch-agent: "), "{stderr}");
    assert!(stderr.contains("unknown variant `core`"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

/// The `frr` backend starts from its table alone (FRR is touched only when a VPC is applied)
/// and reports the switch its table describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_frr_backend_serves_its_switch() {
    let dir = TestDir::new("switch-agent-frr", "switch", ID);
    let frr = SWITCH.replace(
        "[backend.sim.switch]",
        "[backend.frr]\nvrf_mode = \"kernel\"\n[backend.frr.switch]",
    );
    let agent = dir.start(BINARY, &dir.write_config(&frr)).await;
    let inventory = SwitchAgentClient::new(agent.channel.clone())
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!((inventory.switch_id.as_str(), inventory.asn), (ID, 65100));
    agent.stop();
}
