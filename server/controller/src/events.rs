//! The event bus: control-plane changes fan out to every live browser stream. Each event
//! names the tenant it belongs to so subscribers only pass on what their viewer may see.

use portal_types::ids::TenantUuid;
use portal_types::views::LiveEvent;
use tokio::sync::broadcast;

#[derive(Debug, Clone)]
pub struct BusEvent {
    /// `None` for fleet-wide events every signed-in user may see.
    pub tenant_id: Option<TenantUuid>,
    pub event: LiveEvent,
}

#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<BusEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { sender: broadcast::channel(4096).0 }
    }
}

impl EventBus {
    pub fn publish(&self, tenant_id: Option<TenantUuid>, event: LiveEvent) {
        // No subscribers is normal (no browser open); nothing to do then.
        let _ = self.sender.send(BusEvent { tenant_id, event });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.sender.subscribe()
    }
}
