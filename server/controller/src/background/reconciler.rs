//! Periodic work that no saga owns: removing stray VMs past their grace period (see
//! `strays`). Launches and deletes converge through their sagas (see `sagas`), which retry
//! their agent calls and enforce their deadlines themselves.

use std::sync::Arc;
use std::time::Duration;

use crate::Controller;

/// How often the reconciler looks.
const PERIOD: Duration = Duration::from_secs(5);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            controller.strays_remove().await;
        }
    })
}
