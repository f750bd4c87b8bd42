//! The `host-agent` binary: started with a config and certificates from the PKI helpers, it
//! answers GetInventory over mutual TLS and stops cleanly on SIGTERM; a bad config is one
//! sentence and exit status 2.

use agent_common::program::testing::TestDir;
use agent_proto::v1 as pb;
use agent_proto::v1::host_agent_client::HostAgentClient;

const BINARY: &str = env!("CARGO_BIN_EXE_host-agent");
const ID: &str = "lab-h1";
const HOST: &str = r#"
[backend.sim.host]
host_id = "lab-h1"
system_model = "HGX H100 8-GPU"
scalable_unit = 1
dpu_ids = []
partitions = [{ id = 0, module_ids = [1] }]
numa_nodes = [{ id = 0, cpus = [0, 1, 2, 3, 4, 5, 6, 7], memory_mib = 65536, hugepages_1g_total = 32 }]
gpus = [{ index = 0, module_id = 1, uuid = "GPU-1", model = "H100-SXM5-80GB", memory_mib = 81920, pci_address = "0000:18:00.0", numa_node = 0, pcie_switch = "sw0" }]
nics = [{ index = 0, name = "mlx5_0", pci_address = "0000:19:00.0", numa_node = 0, pcie_switch = "sw0", rail = 0, leaf_switch_id = "su1-leaf0", speed_gbps = 400 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_inventory_over_mtls_and_stops_on_sigterm() {
    let dir = TestDir::new("host-agent-serve", "host", ID);
    let agent = dir.start(BINARY, &dir.write_config(HOST)).await;
    let inventory = HostAgentClient::new(agent.channel.clone())
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!(inventory.host_id, ID);
    assert_eq!(inventory.gpus.len(), 1);
    assert_eq!(inventory.gpus[0].health(), pb::GpuHealth::Ok);
    agent.stop();
}

/// A `[backend.libvirt]` table on libvirt's test driver over the HGX H100 sysfs fixture.
fn libvirt_config(sysfs_root: &str) -> String {
    let images = env!("CARGO_MANIFEST_DIR");
    format!(
        r#"
[backend.libvirt]
uri = "test:///default"
domain_type = "qemu"
image_dir = "{images}"
state_dir = "/nonexistent-state"
sysfs_root = "{sysfs_root}"
[backend.libvirt.host]
host_id = "lab-h1"
system_model = "HGX H100 8-GPU"
scalable_unit = 1
partitions = [{{ id = 0, module_ids = [1, 2, 3, 4, 5, 6, 7, 8] }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_a_libvirt_host_read_from_sysfs() {
    let dir = TestDir::new("host-agent-libvirt", "host", ID);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hgx-h100-2numa");
    let agent = dir.start(BINARY, &dir.write_config(&libvirt_config(fixture))).await;
    let inventory = HostAgentClient::new(agent.channel.clone())
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!(inventory.host_id, ID);
    assert_eq!((inventory.gpus.len(), inventory.nics.len()), (8, 8));
    assert_eq!(inventory.numa_nodes.len(), 2);
    assert_eq!(inventory.numa_nodes[1].hugepages_1g_total, 960);
    agent.stop();
}

#[test]
fn test_a_bad_config_is_one_sentence_and_status_2() {
    let dir = TestDir::new("host-agent-bad", "host", ID);
    for (backend, expected) in [
        ("[backend.kvm]\n", "at line 7: unknown variant `kvm`"),
        (&libvirt_config("/nonexistent-sysfs")[..], "/nonexistent-sysfs/devices/system/node"),
        (&HOST.replace("host_id = \"lab-h1\"", "host_id = \"lab-h2\"")[..], "differs from"),
    ] {
        let output = dir.run(BINARY, &dir.write_config(backend));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with("host-agent: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}
