//! The state of an agent whose resources are specs applied as a whole (a DPU's tenant ports,
//! a switch's VPCs): the specs held by id, the removals remembered, and every change sent to
//! the watch streams. The generation rules are those of [`crate::generation`]; what a
//! resource must not collide with stays with its agent.

use std::collections::BTreeMap;

use crate::DriverError;
use crate::generation::{Applied, EnsureAction, Tombstones, decide_ensure};
use crate::watch::{EventHub, Subscription, WatchEvent};

/// A spec an agent applies, and the statuses it reports about it.
pub trait Resource: Clone + Send + 'static {
    type Status: WatchEvent;
    /// How errors name it: "port", "VPC".
    const KIND: &'static str;

    fn id(&self) -> &str;
    fn generation(&self) -> u64;
    /// Equal but for the generation.
    fn same_as(&self, other: &Self) -> bool;
    /// The status of the applied spec.
    fn ready(&self) -> Self::Status;
    /// The status of a removed resource, last applied at `generation` (0: not held).
    fn removed(id: &str, generation: u64) -> Self::Status;
}

#[derive(Debug)]
pub struct Store<R: Resource> {
    held: BTreeMap<String, R>,
    removed: Tombstones,
    events: EventHub<R::Status>,
}

impl<R: Resource> Store<R> {
    /// `event_capacity`: how far a watcher may fall behind before it is resynchronised.
    pub fn new(event_capacity: usize) -> Self {
        Store {
            held: BTreeMap::new(),
            removed: Tombstones::default(),
            events: EventHub::new(event_capacity),
        }
    }

    pub fn get(&self, id: &str) -> Option<&R> {
        self.held.get(id)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Every spec held, by id.
    pub fn specs(&self) -> impl Iterator<Item = &R> {
        self.held.values()
    }

    /// What an ensure of `spec` should do: refused for a removed resource (up to its removal
    /// generation) and by the generation rules; the agent checks its own limits before
    /// [`Store::apply`] for `Create` and `Replace`, and answers `Unchanged` with `ready()`.
    pub fn decide(&self, spec: &R) -> Result<EnsureAction, DriverError> {
        self.removed.check_ensure(R::KIND, spec.id(), spec.generation())?;
        let applied = self
            .held
            .get(spec.id())
            .map(|held| Applied { generation: held.generation(), same_spec: held.same_as(spec) });
        decide_ensure(R::KIND, spec.id(), applied, spec.generation())
    }

    /// Holds `spec` and tells the watchers.
    pub fn apply(&mut self, spec: R) -> R::Status {
        let status = spec.ready();
        self.held.insert(spec.id().to_owned(), spec);
        self.events.publish(status.clone());
        status
    }

    /// Removes `id` (remembering the removal's `generation`, see [`Tombstones`]); the
    /// status, and whether it was held.
    pub fn remove(&mut self, id: &str, generation: u64) -> (R::Status, bool) {
        self.removed.record(id, generation);
        match self.held.remove(id) {
            Some(held) => {
                let status = R::removed(id, held.generation());
                self.events.publish(status.clone());
                (status, true)
            }
            None => (R::removed(id, 0), false),
        }
    }

    /// A receiver of every change from now on and the current state, taken together (see
    /// `watch`); `None` once closed.
    pub fn subscribe(&self) -> Option<Subscription<R::Status>> {
        let receiver = self.events.subscribe()?;
        Some((receiver, self.held.values().map(R::ready).collect()))
    }

    /// Ends every watch stream (agent shutdown).
    pub fn close(&mut self) {
        self.events.close();
    }
}
