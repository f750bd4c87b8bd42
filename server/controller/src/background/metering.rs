//! Metering: one task per replica that turns the instance state log into usage records and
//! raises budget alerts. Every replica may run it at once: records are keyed, alerts raised
//! once (see `app::billing`). Pages meter on demand too, so they never wait for it.

use std::sync::Arc;
use std::time::Duration;

use crate::Controller;
use crate::datastore::now_ms;

/// How often it runs.
const PERIOD: Duration = Duration::from_secs(30);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = now_ms().div_euclid(1000);
            if let Err(e) = controller.meter(now).await {
                tracing::warn!(error = %e, "metering failed; retrying");
            } else if let Err(e) = controller.budget_check_all(now).await {
                tracing::warn!(error = %e, "budget alerts failed; retrying");
            }
            tokio::time::sleep(PERIOD).await;
        }
    })
}
