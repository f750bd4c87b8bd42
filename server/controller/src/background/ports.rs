//! Ports, for the network reconciler (`network`): DPUs brought up to date with the ports the
//! database holds. A rule change, a VM joining or leaving a group another group's rule
//! names, or a DPU agent attaching bumps or resets ports' generations in the database; a
//! pass sends every port whose DPU has not confirmed its latest generation (EnsurePort is
//! idempotent). It also sweeps the ports of deleted instances that a delete saga stopped
//! short of removing.

use std::sync::Arc;

use futures::StreamExt;

use crate::Controller;

/// Ports read per pass, and how many EnsurePort calls are in flight at once.
const BATCH: u64 = 512;
const IN_FLIGHT: usize = 32;

/// Sends one batch; whether to pause before the next pass: yes unless a full batch was all
/// confirmed and more may be waiting (a DPU that failed is retried after the pause, not
/// hammered).
pub(super) async fn pass(c: &Arc<Controller>) -> bool {
    sweep(c).await;
    let behind = match c.datastore.ports_behind(BATCH).await {
        Ok(ports) => ports,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the ports DPUs have not confirmed");
            return true;
        }
    };
    let full = behind.len() as u64 == BATCH;
    let failures = futures::stream::iter(behind)
        .map(async |port| {
            let (id, dpu) = (port.id, port.dpu_name.clone().unwrap_or_default());
            c.port_push(port).await.map_err(|status| (id, dpu, status))
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(async |result| result.err())
        .collect::<Vec<_>>()
        .await;
    for (port, dpu, status) in &failures {
        tracing::warn!(%port, %dpu, error = %status.message(), "EnsurePort failed; retrying");
        // A refusal is shown with the port; a DPU out of reach is the agent link's to show.
        if !matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
            let message = format!("DPU {dpu} refused it: {}", status.message());
            if let Err(e) = c.datastore.port_set_message(*port, &message).await {
                tracing::warn!(%port, error = %e, "cannot record why the DPU refused the port");
            }
        }
    }
    !full || !failures.is_empty()
}

/// Removes the ports of deleted instances from their DPUs and the database.
async fn sweep(c: &Arc<Controller>) {
    let orphaned = match c.datastore.ports_orphaned(BATCH).await {
        Ok(ports) => ports,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the ports of deleted instances");
            return;
        }
    };
    for port in orphaned {
        tracing::info!(port = %port.id, instance = %port.instance_id, "removing the port of a deleted instance");
        match c.port_unplug(&port).await {
            Ok(()) => {
                if let Err(e) = c.port_release(port.instance_id).await {
                    tracing::warn!(port = %port.id, error = %e, "cannot release the port");
                }
            }
            Err(status) => {
                tracing::warn!(port = %port.id, error = %status.message(), "RemovePort failed; retrying")
            }
        }
    }
}
