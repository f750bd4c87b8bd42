//! One server-streaming `Watch` per agent for the life of the controller, opened again with
//! backoff when it breaks. A host's events go to the controller, and a broken stream marks
//! the host unreachable (so the scheduler skips it). A DPU's or switch's stream is its link
//! for the fleet pages, and each opening asks its boot id: another one than before means the
//! agent restarted and holds nothing, so it gets everything again
//! ([`Controller::network_agent_booted`]).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::AgentKind;
use agent_proto::v1::{InventoryRequest, WatchRequest, host_event};
use futures::{Stream, StreamExt};

use crate::Controller;
use crate::backoff::Backoff;

pub(crate) fn spawn_host_watcher(
    controller: Arc<Controller>,
    host_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let Some(mut client) = controller.agents.host(&host_id) else { return };
            // Rows that changed after this cannot be judged by the snapshot it asks for.
            let asked_at = crate::datastore::now_ms();
            match client.watch(WatchRequest {}).await {
                Ok(response) => {
                    controller.set_host_connected(&host_id, true).await;
                    backoff.reset();
                    let mut stream = response.into_inner();
                    // The VMs of the stream's first snapshot, until its end marker.
                    let mut listed = Some(HashSet::new());
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => match event.event {
                                Some(host_event::Event::Vm(status)) => {
                                    if let Some(listed) = listed.as_mut() {
                                        listed.insert(status.vm_id.clone());
                                    }
                                    controller.apply_vm_status(&host_id, status).await;
                                }
                                Some(host_event::Event::SnapshotEnd(_)) => {
                                    if let Some(listed) = listed.take() {
                                        controller
                                            .reconcile_host_snapshot(&host_id, &listed, asked_at)
                                            .await;
                                    }
                                }
                                Some(host_event::Event::Gpu(status)) => {
                                    controller.apply_gpu_status(&host_id, status).await;
                                }
                                None => {}
                            },
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(host = %host_id, error = %status.message(), "host agent watch stream broke");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(host = %host_id, error = %status.message(), "host agent watch refused");
                }
            }
            controller.set_host_connected(&host_id, false).await;
            backoff.sleep().await;
        }
    })
}

/// Follows one DPU or switch agent: connected while its `Watch` stream is open, and a
/// restart found on every opening.
pub(crate) fn spawn_network_watcher(
    controller: Arc<Controller>,
    kind: AgentKind,
    id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match open_network_watch(&controller, kind, &id).await {
                Ok((boot_id, mut stream)) => {
                    controller.set_agent_connected(kind, &id, true).await;
                    backoff.reset();
                    controller.network_agent_booted(kind, &id, &boot_id).await;
                    // Its status events need nothing: Ensure answers confirm what was sent.
                    // What it holds is compared with the database now and then.
                    let mut drift = tokio::time::interval_at(
                        tokio::time::Instant::now() + controller.drift_check,
                        controller.drift_check,
                    );
                    drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            event = stream.next() => if !matches!(event, Some(Ok(()))) { break },
                            _ = drift.tick() => match kind {
                                AgentKind::Dpu => controller.dpu_drift_check(&id).await,
                                AgentKind::Switch => controller.switch_drift_check(&id).await,
                                AgentKind::Host => {}
                            },
                        }
                    }
                    tracing::warn!(agent = %id, %kind, "agent watch stream ended");
                }
                Err(status) => {
                    tracing::debug!(agent = %id, %kind, error = %status.message(), "agent watch refused");
                }
            }
            controller.set_agent_connected(kind, &id, false).await;
            backoff.sleep().await;
        }
    })
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<(), tonic::Status>> + Send>>;

/// Opens the agent's `Watch`, then asks its boot id (an agent restarting in between
/// answers its new one).
async fn open_network_watch(
    c: &Controller,
    kind: AgentKind,
    id: &str,
) -> Result<(String, StatusStream), tonic::Status> {
    let detached = || tonic::Status::unavailable(format!("the {kind} agent {id} is not attached"));
    match kind {
        AgentKind::Dpu => {
            let mut client = c.agents.dpu(id).ok_or_else(detached)?;
            let stream = client.watch(WatchRequest {}).await?.into_inner();
            let boot_id = client.get_inventory(InventoryRequest {}).await?.into_inner().boot_id;
            Ok((boot_id, Box::pin(stream.map(|event| event.map(drop)))))
        }
        AgentKind::Switch => {
            let mut client = c.agents.switch(id).ok_or_else(detached)?;
            let stream = client.watch(WatchRequest {}).await?.into_inner();
            let boot_id = client.get_inventory(InventoryRequest {}).await?.into_inner().boot_id;
            Ok((boot_id, Box::pin(stream.map(|event| event.map(drop)))))
        }
        AgentKind::Host => Err(tonic::Status::invalid_argument("hosts have their own watcher")),
    }
}
