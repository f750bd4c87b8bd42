//! The `host-agent` binary: started with a config and certificates from the PKI helpers, it
//! answers GetInventory over mutual TLS and stops cleanly on SIGTERM; a bad config is one
//! sentence and exit status 2.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agent_common::tls::{AgentName, PkiDir};
use agent_proto::v1 as pb;
use agent_proto::v1::host_agent_client::HostAgentClient;
use tonic::transport::Endpoint;

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("host-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Certificates for the agent and the control plane, and a config naming them.
fn write_config(dir: &Path, backend: &str) -> (PkiDir, PathBuf) {
    let pki = PkiDir::new(dir.join("pki"));
    let name = AgentName { kind: "host", id: ID };
    pki.ensure(&[name], false).expect("certificates");
    let (cert, key) = pki.agent_paths(name);
    let config = format!(
        "listen = \"127.0.0.1:0\"\nid = \"{ID}\"\n[tls]\nca_cert = {:?}\ncert = {:?}\nkey = \
         {:?}\n{backend}",
        pki.ca_cert_path(),
        cert,
        key
    );
    let path = dir.join("host-agent.toml");
    std::fs::write(&path, config).expect("config");
    (pki, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_inventory_over_mtls_and_stops_on_sigterm() {
    let dir = temp_dir("serve");
    let (pki, config) = write_config(&dir, HOST);
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-agent"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start host-agent");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    let addr = line.trim().strip_prefix("listening on ").expect("address line").to_owned();

    let tls = pki.control_plane().and_then(|c| c.client_config("host", ID)).expect("client tls");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(tls))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let inventory = HostAgentClient::new(channel)
        .get_inventory(pb::InventoryRequest {})
        .await
        .expect("inventory")
        .into_inner();
    assert_eq!(inventory.host_id, ID);
    assert_eq!(inventory.gpus.len(), 1);
    assert_eq!(inventory.gpus[0].health(), pb::GpuHealth::Ok);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(killed.expect("kill").success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_a_bad_config_is_one_sentence_and_status_2() {
    let dir = temp_dir("bad");
    for (backend, expected) in [
        ("[backend.libvirt]\n", "unknown variant `libvirt`"),
        (&HOST.replace("host_id = \"lab-h1\"", "host_id = \"lab-h2\"")[..], "differs from"),
    ] {
        let (_, config) = write_config(&dir, backend);
        let output = Command::new(env!("CARGO_BIN_EXE_host-agent"))
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run host-agent");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with("host-agent: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
