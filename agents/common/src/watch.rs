//! The stream behind every agent's `Watch`: first the full current state, then every change.
//!
//! Changes travel on a bounded broadcast channel ([`EventHub`]). A subscriber that falls more
//! than the channel's capacity behind does not silently skip events: it takes a fresh snapshot
//! and, for every resource it had been told about that the snapshot no longer lists, first
//! receives that resource's "gone" event (e.g. VM DELETED). After a resynchronisation the
//! subscriber's view is exactly the agent's state, as it would be without the lag.
//!
//! Consistency rule for the owner of the state: publish while holding the state's lock, and
//! take snapshots (with [`EventHub::subscribe`]) under the same lock. Then no change falls
//! between a snapshot and the first event after it, and none is seen twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::Pin;

use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};

/// An event describing the whole current state of one resource.
pub trait WatchEvent: Clone + Send + 'static {
    /// Identifies the resource the event is about.
    type Key: Ord + Clone + Send + 'static;

    fn key(&self) -> Self::Key;

    /// Whether this event says the resource is gone for good (removed, deleted).
    fn is_gone(&self) -> bool;

    /// The event announcing that the resource last described by `self` is gone; `None` for
    /// resources that cannot disappear (a GPU).
    fn gone(&self) -> Option<Self>;

    /// The event that ends every full snapshot, for streams that mark it (it describes no
    /// resource): after it, whatever the snapshot did not list does not exist.
    fn snapshot_end() -> Option<Self> {
        None
    }

    fn is_snapshot_end(&self) -> bool {
        false
    }
}

/// A receiver of every change from now on, and the state when it was taken.
pub type Subscription<E> = (broadcast::Receiver<E>, Vec<E>);

/// A boxed stream of events, as managers hand them to the gRPC layer.
pub type EventStream<E> = Pin<Box<dyn Stream<Item = E> + Send>>;

/// The sending side of an agent's change feed. Lives inside the agent's locked state.
#[derive(Debug)]
pub struct EventHub<E> {
    sender: Option<broadcast::Sender<E>>,
}

impl<E: Clone> EventHub<E> {
    /// `capacity` is how many events a subscriber may fall behind before it resynchronises.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        EventHub { sender: Some(sender) }
    }

    /// Sends `event` to every subscriber; without subscribers the event is simply dropped.
    pub fn publish(&self, event: E) {
        if let Some(sender) = &self.sender {
            // An error only means nobody is listening right now.
            let _ = sender.send(event);
        }
    }

    /// A receiver of every event published from now on; `None` once the hub is closed.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<E>> {
        self.sender.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Ends every subscriber's stream after the events already sent (used at shutdown).
    pub fn close(&mut self) {
        self.sender = None;
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_none()
    }
}

/// Builds a watch stream. `subscribe` must atomically subscribe to the hub and snapshot the
/// state (one event per resource), returning `None` once the source has shut down; it is
/// called once now and again after every lag. Returns `None` if the source is already closed.
pub fn snapshot_then_changes<E, F>(subscribe: F) -> Option<EventStream<E>>
where
    E: WatchEvent,
    F: Fn() -> Option<(broadcast::Receiver<E>, Vec<E>)> + Send + 'static,
{
    let (receiver, snapshot) = subscribe()?;
    let pending = snapshot.into_iter().chain(E::snapshot_end()).collect();
    let watcher = Watcher { subscribe, receiver, pending, seen: BTreeMap::new() };
    Some(Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let event = watcher.next().await?;
        Some((event, watcher))
    })))
}

struct Watcher<E: WatchEvent, F> {
    subscribe: F,
    receiver: broadcast::Receiver<E>,
    /// Snapshot events not yet handed out.
    pending: VecDeque<E>,
    /// The last event this subscriber received per live resource.
    seen: BTreeMap<E::Key, E>,
}

impl<E, F> Watcher<E, F>
where
    E: WatchEvent,
    F: Fn() -> Option<(broadcast::Receiver<E>, Vec<E>)>,
{
    async fn next(&mut self) -> Option<E> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(self.record(event));
            }
            match self.receiver.recv().await {
                Ok(event) => return Some(self.record(event)),
                Err(RecvError::Lagged(_)) => {
                    let (receiver, snapshot) = (self.subscribe)()?;
                    self.receiver = receiver;
                    self.resynchronise(snapshot);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn record(&mut self, event: E) -> E {
        if event.is_snapshot_end() {
            return event;
        }
        if event.is_gone() {
            self.seen.remove(&event.key());
        } else {
            self.seen.insert(event.key(), event.clone());
        }
        event
    }

    /// Queues "gone" events for what vanished while we lagged, then the fresh snapshot.
    fn resynchronise(&mut self, snapshot: Vec<E>) {
        let present: BTreeSet<E::Key> = snapshot.iter().map(WatchEvent::key).collect();
        self.pending = self
            .seen
            .iter()
            .filter(|(key, _)| !present.contains(*key))
            .filter_map(|(_, last)| last.gone())
            .chain(snapshot)
            .chain(E::snapshot_end())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};

    /// (resource, value); value 0 means gone.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Ev(u32, u32);

    impl WatchEvent for Ev {
        type Key = u32;
        fn key(&self) -> u32 {
            self.0
        }
        fn is_gone(&self) -> bool {
            self.1 == 0
        }
        fn gone(&self) -> Option<Self> {
            Some(Ev(self.0, 0))
        }
    }

    struct Source {
        state: BTreeMap<u32, u32>,
        hub: EventHub<Ev>,
    }

    fn set(source: &Mutex<Source>, key: u32, value: u32) {
        let mut s = crate::lock(source);
        if value == 0 {
            s.state.remove(&key);
        } else {
            s.state.insert(key, value);
        }
        s.hub.publish(Ev(key, value));
    }

    fn stream(source: &Arc<Mutex<Source>>) -> EventStream<Ev> {
        let source = Arc::clone(source);
        snapshot_then_changes(move || {
            let s = crate::lock(&source);
            let rx = s.hub.subscribe()?;
            Some((rx, s.state.iter().map(|(k, v)| Ev(*k, *v)).collect()))
        })
        .expect("source is open")
    }

    fn source(capacity: usize) -> Arc<Mutex<Source>> {
        Arc::new(Mutex::new(Source { state: BTreeMap::new(), hub: EventHub::new(capacity) }))
    }

    #[tokio::test]
    async fn test_snapshot_then_changes_for_each_subscriber() {
        let src = source(16);
        set(&src, 1, 10);
        set(&src, 2, 20);
        let mut a = stream(&src);
        set(&src, 3, 30);
        let mut b = stream(&src);
        set(&src, 1, 11);
        assert_eq!(a.next().await, Some(Ev(1, 10)));
        assert_eq!(a.next().await, Some(Ev(2, 20)));
        assert_eq!(a.next().await, Some(Ev(3, 30)));
        assert_eq!(a.next().await, Some(Ev(1, 11)));
        assert_eq!(b.next().await, Some(Ev(1, 10)));
        assert_eq!(b.next().await, Some(Ev(2, 20)));
        assert_eq!(b.next().await, Some(Ev(3, 30)));
        assert_eq!(b.next().await, Some(Ev(1, 11)));
    }

    #[tokio::test]
    async fn test_lagging_subscriber_resynchronises_with_gone_events() {
        let src = source(2);
        set(&src, 1, 10);
        set(&src, 2, 20);
        let mut s = stream(&src);
        assert_eq!(s.next().await, Some(Ev(1, 10)));
        assert_eq!(s.next().await, Some(Ev(2, 20)));
        // Five changes overflow a capacity of 2: the subscriber lags.
        set(&src, 1, 0);
        set(&src, 3, 30);
        set(&src, 3, 31);
        set(&src, 4, 40);
        set(&src, 2, 21);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(s.next().await.expect("event"));
        }
        // Resource 1 vanished during the lag: announced as gone, then the snapshot.
        assert_eq!(got, [Ev(1, 0), Ev(2, 21), Ev(3, 31), Ev(4, 40)]);
        set(&src, 4, 41);
        assert_eq!(s.next().await, Some(Ev(4, 41)));
    }

    #[tokio::test]
    async fn test_close_ends_streams() {
        let src = source(4);
        set(&src, 1, 10);
        let mut s = stream(&src);
        crate::lock(&src).hub.close();
        assert_eq!(s.next().await, Some(Ev(1, 10)));
        assert_eq!(s.next().await, None);
        let src2 = Arc::clone(&src);
        let closed = snapshot_then_changes(move || {
            let s = crate::lock(&src2);
            Some((s.hub.subscribe()?, Vec::new()))
        });
        assert!(closed.is_none());
    }
}
