//! One server-streaming `Watch` per host agent for the life of the controller: its events go
//! to the controller; a broken stream marks the host unreachable (so the scheduler skips it)
//! and is opened again with backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::v1::{WatchRequest, host_event};

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
                                        controller.reconcile_host_snapshot(&host_id, &listed).await;
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
