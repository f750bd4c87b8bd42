//! A whole fleet: start-up, every endpoint answering, the agents file, shutdown.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agent_proto::v1 as pb;
use agent_proto::v1::dpu_agent_client::DpuAgentClient;
use agent_proto::v1::host_agent_client::HostAgentClient;
use agent_proto::v1::switch_agent_client::SwitchAgentClient;
use agent_proto::{AgentKind, AgentList};
use sim_fleet::{SimFleet, SimOptions, Topology};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Asks one agent for its inventory and returns the id it reports.
async fn reported_id(kind: AgentKind, channel: Channel) -> String {
    match kind {
        AgentKind::Host => {
            let mut client = HostAgentClient::new(channel);
            client
                .get_inventory(pb::InventoryRequest {})
                .await
                .expect("inventory")
                .into_inner()
                .host_id
        }
        AgentKind::Dpu => {
            let mut client = DpuAgentClient::new(channel);
            client
                .get_inventory(pb::InventoryRequest {})
                .await
                .expect("inventory")
                .into_inner()
                .dpu_id
        }
        AgentKind::Switch => {
            let mut client = SwitchAgentClient::new(channel);
            client
                .get_inventory(pb::InventoryRequest {})
                .await
                .expect("inventory")
                .into_inner()
                .switch_id
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_two_scalable_units_start_and_every_endpoint_answers() {
    let topology = Topology::hgx_h100(2);
    let started = Instant::now();
    let pki = common::temp_pki("two-units");
    let fleet =
        SimFleet::start(&topology, SimOptions::default(), &pki).await.expect("fleet starts");
    let took = started.elapsed();
    eprintln!("started 64 hosts, 128 DPUs and 16 switches (and their certificates) in {took:?}");
    // A generous bound so a busy machine does not fail the test; the target is far below.
    assert!(took < Duration::from_secs(3), "start took {took:?}");

    let endpoints = fleet.endpoints();
    let count = |kind| endpoints.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        (count(AgentKind::Host), count(AgentKind::Dpu), count(AgentKind::Switch)),
        (64, 128, 16)
    );
    let urls: BTreeSet<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
    assert_eq!(urls.len(), 208, "every agent has its own port");
    assert!(endpoints.iter().all(|e| e.url.starts_with("https://127.0.0.1:")));

    let mut calls = JoinSet::new();
    for endpoint in endpoints {
        let (kind, id) = (endpoint.kind, endpoint.id.clone());
        let channel = fleet.control_plane_channel(&id).await.expect("connect");
        calls.spawn(async move { (id, reported_id(kind, channel).await) });
    }
    let mut answered = 0;
    while let Some(result) = calls.join_next().await {
        let (expected, reported) = result.expect("call task");
        assert_eq!(reported, expected);
        answered += 1;
    }
    assert_eq!(answered, 208);

    assert!(fleet.host("su2-h32").is_some());
    assert!(fleet.dpu("su2-h32-dpu1").is_some());
    assert!(fleet.switch("su2-leaf7").is_some());
    assert!(fleet.host("su3-h01").is_none());

    // The agents file round-trips through TOML.
    let text = toml::to_string(&fleet.agent_list()).expect("encode");
    let parsed: AgentList = toml::from_str(&text).expect("decode");
    assert_eq!(parsed.agents, endpoints);
    fleet.shutdown().await;
}

#[tokio::test]
async fn test_shutdown_ends_open_watch_streams_promptly() {
    let fleet = common::fleet().await;
    let url = fleet.endpoint("su1-h01").expect("host").url.clone();
    let mut client = common::host_client(&fleet, "su1-h01").await;
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    common::snapshot(&mut events, 0).await;

    let started = Instant::now();
    fleet.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    // The stream ended (cleanly or with a transport error), and the port is closed.
    let ended =
        tokio::time::timeout(Duration::from_secs(2), events.message()).await.expect("stream ends");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
    let port = url.rsplit(':').next().expect("port");
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(), "port closed");
}
