//! The event bus: control-plane changes fan out to every live browser stream. Each event
//! names the tenant it belongs to so subscribers only pass on what their viewer may see.
//! On PostgreSQL, events also cross to the other replicas (`background::event_relay`), so
//! a browser on one replica sees a launch another replica runs.

use portal_types::ids::TenantUuid;
use portal_types::views::LiveEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusEvent {
    /// `None` for fleet-wide events every signed-in user may see.
    pub tenant_id: Option<TenantUuid>,
    pub event: LiveEvent,
}

/// Events waiting to be sent to the other replicas; past this many (the database is slow
/// or down), new ones are only seen on this replica.
const RELAY_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<BusEvent>,
    /// To the relay task, when there is one.
    relay: Option<mpsc::Sender<BusEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { sender: broadcast::channel(4096).0, relay: None }
    }
}

impl EventBus {
    /// A bus whose events are also handed to a relay (what it returns) for other replicas.
    pub(crate) fn relayed() -> (Self, mpsc::Receiver<BusEvent>) {
        let (relay, outbox) = mpsc::channel(RELAY_QUEUE);
        (Self { relay: Some(relay), ..Self::default() }, outbox)
    }

    pub fn publish(&self, tenant_id: Option<TenantUuid>, event: LiveEvent) {
        let event = BusEvent { tenant_id, event };
        if let Some(relay) = &self.relay
            && relay.try_send(event.clone()).is_err()
        {
            tracing::warn!("the event relay is behind; other replicas miss an event");
        }
        self.deliver(event);
    }

    /// Hands an event to this replica's subscribers only (one relayed from another replica).
    pub(crate) fn deliver(&self, event: BusEvent) {
        // No subscribers is normal (no browser open); nothing to do then.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.sender.subscribe()
    }
}
