//! Exponential backoff between retries, the one used everywhere in the control plane.

use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    first: Duration,
    cap: Duration,
}

/// Retries inside a saga step or a database call: 100 ms doubling to 5 s.
impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Waits `first`, then twice as long each time, never more than `cap`.
    pub(crate) const fn new(first: Duration, cap: Duration) -> Self {
        Backoff { next: first, first, cap }
    }

    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.cap);
    }

    /// After a success: the next failure waits `first` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}
