//! `PortCounters` over gRPC against the `dpu-agent` binary with the simulated backend: the
//! counters of an ensured port grow (simulated traffic, flagged so) with one counter per
//! rule in the spec's order; an unknown port is NOT_FOUND, a malformed id INVALID_ARGUMENT.

use std::time::Duration;

use agent_common::program::testing::TestDir;
use agent_proto::v1 as pb;
use agent_proto::v1::dpu_agent_client::DpuAgentClient;

const BINARY: &str = env!("CARGO_BIN_EXE_dpu-agent");
const ID: &str = "lab-h2-dpu0";
const DPU: &str = r#"
[backend.sim]
apply_delay_ms = 0
[backend.sim.dpu]
dpu_id = "lab-h2-dpu0"
host_id = "lab-h2"
model = "BlueField-3 B3220"
pci_address = "0000:c1:00.0"
vtep_ip = "10.0.0.8"
max_ports = 16
"#;
const PORT: &str = "00000000-0000-4000-8000-0000000000b1";

fn rule(direction: &str, protocol: &str, port: u32) -> pb::SecurityRule {
    pb::SecurityRule {
        direction: direction.into(),
        protocol: protocol.into(),
        port_min: port,
        port_max: port,
        cidr: "0.0.0.0/0".into(),
    }
}

fn packets(count: &Option<pb::PacketCount>) -> u64 {
    count.as_ref().map_or(0, |c| c.packets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_port_counters_over_grpc() {
    let dir = TestDir::new("dpu-agent-counters", "dpu", ID);
    let agent = dir.start(BINARY, &dir.write_config(DPU)).await;
    let mut client = DpuAgentClient::new(agent.channel.clone());
    let request = |port_id: &str| pb::PortCountersRequest { port_id: port_id.into() };

    let missing = client.port_counters(request(PORT)).await.expect_err("not held yet");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let bad = client.port_counters(request("p1")).await.expect_err("malformed");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let spec = pb::PortSpec {
        port_id: PORT.into(),
        vm_id: "00000000-0000-4000-8000-00000000000a".into(),
        gateway: String::new(),
        prefix_len: 0,
        public_ip: String::new(),
        generation: 4,
        vni: 100,
        mac: "02:00:0a:00:00:06".into(),
        ip: "10.0.0.6".into(),
        rules: vec![rule("ingress", "tcp", 22), rule("egress", "any", 0)],
    };
    client.ensure_port(pb::EnsurePortRequest { spec: Some(spec) }).await.expect("ensure");
    let first = client.port_counters(request(PORT)).await.expect("counters").into_inner();
    assert_eq!((first.port_id.as_str(), first.generation), (PORT, 4));
    assert!(first.simulated, "the sim backend says its traffic is synthetic");
    assert_eq!((first.rules.len(), first.rule_changes), (2, 1), "{first:?}");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = client.port_counters(request(PORT)).await.expect("counters").into_inner();
    let ingress = later.ingress.expect("ingress");
    let egress = later.egress.expect("egress");
    assert!(packets(&ingress.allowed) >= 11, "10 packets a second through the SSH rule: {later:?}");
    assert!(packets(&ingress.allowed) > packets(&first.ingress.expect("ingress").allowed));
    assert!(packets(&ingress.dropped) >= 1, "the simulated probe is dropped");
    assert_eq!(packets(&egress.allowed), later.rules[1].packets, "egress is rule 1 alone");
    assert_eq!(later.rules[0].bytes, later.rules[0].packets * 800, "TCP packets of 800 bytes");
    assert_eq!(packets(&later.spoofed), 0);

    client
        .remove_port(pb::RemovePortRequest { port_id: PORT.into(), generation: 4 })
        .await
        .expect("remove");
    let gone = client.port_counters(request(PORT)).await.expect_err("removed");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    agent.stop();
}
