//! Mutual TLS at a running host agent: only the control plane's certificate from the fleet's
//! CA gets an answer, and the control plane accepts only the agent it meant to reach.

mod common;

use agent_common::tls::{ControlPlaneCredentials, PkiDir};
use agent_proto::v1 as pb;
use agent_proto::v1::host_agent_client::HostAgentClient;
use sim_fleet::SimFleet;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Dials `url` with `tls` (or in plain text) and asks for the inventory: the reported host id,
/// or why it failed.
async fn inventory_at(url: &str, tls: Option<ClientTlsConfig>) -> Result<String, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| agent_common::error::error_chain(&e))?;
    let reply = HostAgentClient::new(channel)
        .get_inventory(pb::InventoryRequest {})
        .await
        .map_err(|s| format!("{s}"))?;
    Ok(reply.into_inner().host_id)
}

fn url(fleet: &SimFleet, id: &str) -> String {
    fleet.endpoint(id).expect("agent in fleet").url.clone()
}

fn control_plane(fleet: &SimFleet) -> ControlPlaneCredentials {
    fleet.pki().control_plane().expect("control-plane certificate")
}

/// A client that trusts the fleet's CA and expects host `id`, without a certificate of its own.
fn anonymous_client(fleet: &SimFleet, id: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(control_plane(fleet).ca_pem))
        .domain_name(agent_common::tls::agent_server_name("host", id).unwrap())
}

/// Asserts the call failed, and with `reason` in the error (the TLS alert or check).
fn assert_refused(result: Result<String, String>, what: &str, reason: &str) {
    match result {
        Ok(id) => panic!("{what}: the agent answered (host {id})"),
        Err(e) => assert!(e.contains(reason), "{what}: refused, but not for {reason:?}: {e}"),
    }
}

#[tokio::test]
async fn test_the_control_plane_certificate_gets_an_answer() {
    let fleet = common::fleet().await;
    let tls = control_plane(&fleet).client_config("host", "su1-h01").unwrap();
    assert_eq!(inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await.unwrap(), "su1-h01");
}

#[tokio::test]
async fn test_plain_text_and_callers_without_a_certificate_are_refused() {
    let fleet = common::fleet().await;
    let plain = url(&fleet, "su1-h01").replace("https://", "http://");
    assert_refused(inventory_at(&plain, None).await, "plain text", "transport error");
    let tls = anonymous_client(&fleet, "su1-h01");
    let result = inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await;
    assert_refused(result, "no certificate", "CertificateRequired");
}

#[tokio::test]
async fn test_a_client_certificate_from_another_ca_is_refused() {
    let fleet = common::fleet().await;
    let other = common::temp_pki("other-ca");
    other.ensure(&[], false).unwrap();
    // Trusts the right CA, so only the agent's check of the client can refuse.
    let forged = ControlPlaneCredentials {
        ca_pem: control_plane(&fleet).ca_pem,
        identity: other.control_plane().unwrap().identity,
    };
    let tls = forged.client_config("host", "su1-h01").unwrap();
    // The signature does not verify against the fleet's CA.
    let result = inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await;
    assert_refused(result, "another CA", "DecryptError");
}

#[tokio::test]
async fn test_an_agent_certificate_cannot_call_another_agent() {
    let fleet = common::fleet().await;
    let pki: &PkiDir = fleet.pki();
    let agent = pki.agent(agent_common::tls::AgentName { kind: "host", id: "su1-h02" }).unwrap();
    let impostor = ControlPlaneCredentials { ca_pem: agent.ca_pem, identity: agent.identity };
    let tls = impostor.client_config("host", "su1-h01").unwrap();
    // Its extended key usage is serverAuth only.
    let result = inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await;
    assert_refused(result, "agent as client", "UnsupportedCertificate");
}

#[tokio::test]
async fn test_the_control_plane_refuses_an_agent_with_another_name() {
    let fleet = common::fleet().await;
    // su1-h01's port, with su1-h01's valid certificate, while expecting su1-h02.
    let tls = control_plane(&fleet).client_config("host", "su1-h02").unwrap();
    let result = inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await;
    assert_refused(result, "another id", "not valid for name \"su1-h02.host.agents.gpucloud\"");
    // The same id of another kind is another name too.
    let tls = control_plane(&fleet).client_config("dpu", "su1-h01").unwrap();
    let result = inventory_at(&url(&fleet, "su1-h01"), Some(tls)).await;
    assert_refused(result, "another kind", "not valid for name");
}
