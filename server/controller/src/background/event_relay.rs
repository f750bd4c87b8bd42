//! Carries live events between replicas on PostgreSQL: every event this replica publishes
//! is announced with `NOTIFY portal_events` (tagged with this replica's id), and every
//! replica LISTENs and hands the others' events to its own browsers. Delivery is best
//! effort, like the bus itself: an event announced while a listener reconnects is lost, and
//! browsers refetch what they show when their stream reconnects.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Controller;
use crate::events::BusEvent;

const CHANNEL: &str = "portal_events";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct Relayed {
    from: Uuid,
    event: BusEvent,
}

/// The two halves: this replica's events out, the others' in.
pub(crate) fn spawn(
    controller: Arc<Controller>,
    replica: Uuid,
    outbox: mpsc::Receiver<BusEvent>,
) -> [tokio::task::JoinHandle<()>; 2] {
    let sender = tokio::spawn(send(Arc::clone(&controller), replica, outbox));
    let listener = tokio::spawn(listen(controller, replica));
    [sender, listener]
}

async fn send(controller: Arc<Controller>, replica: Uuid, mut outbox: mpsc::Receiver<BusEvent>) {
    while let Some(event) = outbox.recv().await {
        let Ok(payload) = serde_json::to_string(&Relayed { from: replica, event }) else {
            continue;
        };
        if payload.len() > MAX_PAYLOAD {
            tracing::warn!(
                bytes = payload.len(),
                "an event is too large to relay to other replicas"
            );
            continue;
        }
        match tokio::time::timeout(SEND_TIMEOUT, controller.datastore.notify(CHANNEL, &payload))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot relay an event to other replicas"),
            Err(_) => tracing::warn!("relaying an event to other replicas timed out"),
        }
    }
}

async fn listen(controller: Arc<Controller>, replica: Uuid) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match controller.datastore.listen(CHANNEL).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            match listener.recv().await {
                Ok(Some(payload)) => match serde_json::from_str::<Relayed>(&payload) {
                    Ok(relayed) if relayed.from != replica => {
                        controller.events.deliver(relayed.event);
                    }
                    Ok(_) => {} // our own, already delivered here
                    Err(e) => tracing::warn!(error = %e, "an unreadable relayed event"),
                },
                // The connection was lost; the next recv reconnects.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the event listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
