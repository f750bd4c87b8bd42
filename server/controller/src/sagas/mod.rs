//! Persisted sagas: multi-step changes across agents, each step (a DAG node) one externally
//! visible effect with an undo, run by Oxide's `steno`. The log is in the database
//! (`datastore::saga`); a failure at any step unwinds the earlier ones; a restarted or surviving
//! replica resumes or unwinds every unfinished saga (`executor`).
//!
//! Sagas are named `<resource>_<verb>` (`instance_create`, `instance_delete`); their actions
//! are `<saga>.<node>` in one registry. Every action is idempotent (it may run again after a
//! crash); every undo reverses only its own node and retries until it succeeds (steno stops
//! a saga whose undo fails).

pub(crate) mod executor;
pub(crate) mod instance_create;
pub(crate) mod instance_delete;
pub(crate) mod instance_power;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::backoff::Backoff;

use steno::{ActionError, ActionRegistry, SagaType};

use crate::Controller;

/// steno's type for our sagas: every action gets the controller.
#[derive(Debug)]
pub(crate) struct PortalSaga;

impl SagaType for PortalSaga {
    type ExecContextType = SagaContext;
}

/// What actions reach: the controller (its database, agents, event bus).
pub(crate) struct SagaContext(pub(crate) Arc<Controller>);

impl std::fmt::Debug for SagaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SagaContext")
    }
}

pub(crate) type ActionContext = steno::ActionContext<PortalSaga>;

/// Every saga's actions, for starting and for resuming from the log.
pub(crate) fn registry() -> ActionRegistry<PortalSaga> {
    let mut registry = ActionRegistry::new();
    instance_create::register(&mut registry);
    instance_delete::register(&mut registry);
    instance_power::register(&mut registry);
    registry
}

/// An action's failure, as the saga's error: the sentence the user would see.
pub(crate) fn saga_action_failed(e: portal_types::Error) -> ActionError {
    ActionError::action_failed(e.to_string())
}

/// An agent error that may go away by itself (the agent restarting, a network blip): the
/// step retries it; any other fails the step.
pub(crate) fn transient(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
}

/// "N minute(s)", rounded up, for deadline sentences.
pub(crate) fn minutes(d: Duration) -> String {
    let n = d.as_secs().div_ceil(60);
    format!("{n} minute{}", if n == 1 { "" } else { "s" })
}
