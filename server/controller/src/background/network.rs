//! The network reconciler: one task per replica that brings DPUs (`ports`) and leaves
//! (`fabric`) up to date with what the database says. Sagas and requests write desired
//! state and wake it through [`Controller::network_changed`]; it also looks every few
//! seconds, which is the retry of an agent that did not answer.

use std::sync::Arc;
use std::time::Duration;

use super::{fabric, ports};
use crate::Controller;

/// How often it looks without being woken.
const PERIOD: Duration = Duration::from_secs(5);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let ports_done = ports::pass(&controller).await;
            let fabric_done = fabric::pass(&controller).await;
            if ports_done && fabric_done {
                let _ = tokio::time::timeout(PERIOD, controller.network_changed.notified()).await;
            }
        }
    })
}
