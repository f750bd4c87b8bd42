//! Fault injection for the agents' backends: one plan per device, consulted by the
//! fault-injecting backend wrapper at the start of every device operation, settable at
//! runtime through the device's in-process handle.
//!
//! ```text
//! faults.fail_nth(HostOp::DomainDefine, 2);      // the 2nd define from now fails, once
//! faults.fail_always(HostOp::DomainStop);        // every stop fails until cleared
//! faults.delay(HostOp::DomainDefine, 2 * SECOND); // every define takes 2 s longer
//! faults.chaos(0.05, 42);                        // 5 % of all calls fail, reproducibly
//! faults.clear();
//! ```
//!
//! An injected failure is [`InjectedFault`], which the agents return as gRPC `UNAVAILABLE`
//! with the message "injected fault: ..." and metadata `x-fault: injected`: the caller should
//! treat it exactly like a transient device error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hash::SeededRng;
use crate::lock;

/// What a fault plan is keyed by: the operations of one kind of device (an enum per agent).
pub trait FaultOp: Copy + Ord + fmt::Display + Send + 'static {}

impl<T: Copy + Ord + fmt::Display + Send + 'static> FaultOp for T {}

/// A failure the fault plan decided to inject.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("injected fault: {op} call {call} failed ({rule}); clear the fault plan to stop it")]
pub struct InjectedFault {
    /// The operation's name, e.g. `ensure_vm`.
    pub op: String,
    /// The 1-based number of this call of `op` since the plan was created.
    pub call: u64,
    /// Which rule fired: `fail_nth`, `fail_always` or `chaos`.
    pub rule: &'static str,
}

/// The fault rules of one simulated device. Cloning gives another handle to the same plan.
#[derive(Clone)]
pub struct FaultPlan<Op: FaultOp> {
    inner: Arc<Mutex<Plan<Op>>>,
}

struct Plan<Op> {
    calls: BTreeMap<Op, u64>,
    /// Absolute call numbers (per operation) that fail once.
    fail_at: BTreeMap<Op, BTreeSet<u64>>,
    always: BTreeSet<Op>,
    delays: BTreeMap<Op, Duration>,
    chaos: Option<Chaos<Op>>,
    injected: u64,
}

struct Chaos<Op> {
    probability: f64,
    rng: SeededRng,
    /// `None`: every operation.
    only: Option<BTreeSet<Op>>,
}

impl<Op: FaultOp> Default for FaultPlan<Op> {
    fn default() -> Self {
        FaultPlan {
            inner: Arc::new(Mutex::new(Plan {
                calls: BTreeMap::new(),
                fail_at: BTreeMap::new(),
                always: BTreeSet::new(),
                delays: BTreeMap::new(),
                chaos: None,
                injected: 0,
            })),
        }
    }
}

impl<Op: FaultOp> fmt::Debug for FaultPlan<Op> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = lock(&self.inner);
        f.debug_struct("FaultPlan")
            .field("always", &plan.always.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("injected", &plan.injected)
            .finish_non_exhaustive()
    }
}

impl<Op: FaultOp> FaultPlan<Op> {
    /// An empty plan: nothing fails, nothing is delayed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`th call of `op` from now (1 = the next one) fails, once. `n = 0` counts as 1.
    /// Several `fail_nth` rules for the same operation add up.
    pub fn fail_nth(&self, op: Op, n: u64) {
        let mut plan = lock(&self.inner);
        let seen = plan.calls.get(&op).copied().unwrap_or(0);
        plan.fail_at.entry(op).or_default().insert(seen + n.max(1));
    }

    /// Every call of `op` fails until [`clear_op`](Self::clear_op) or [`clear`](Self::clear).
    pub fn fail_always(&self, op: Op) {
        lock(&self.inner).always.insert(op);
    }

    /// Every call of `op` takes `delay` longer (before it fails or succeeds). Zero removes it.
    pub fn delay(&self, op: Op, delay: Duration) {
        let mut plan = lock(&self.inner);
        if delay.is_zero() {
            plan.delays.remove(&op);
        } else {
            plan.delays.insert(op, delay);
        }
    }

    /// Every call of every operation fails with `probability` (clamped to 0..=1), decided by a
    /// generator seeded with `seed`: the same seed and call sequence fail the same calls.
    pub fn chaos(&self, probability: f64, seed: u64) {
        self.set_chaos(probability, seed, None);
    }

    /// Like [`chaos`](Self::chaos), for the listed operations only.
    pub fn chaos_on(&self, ops: &[Op], probability: f64, seed: u64) {
        self.set_chaos(probability, seed, Some(ops.iter().copied().collect()));
    }

    fn set_chaos(&self, probability: f64, seed: u64, only: Option<BTreeSet<Op>>) {
        // NaN compares false everywhere; treat it as "never".
        let probability = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
        lock(&self.inner).chaos = Some(Chaos { probability, rng: SeededRng::new(seed), only });
    }

    /// Removes every rule for `op` (chaos, which is not per operation, stays).
    pub fn clear_op(&self, op: Op) {
        let mut plan = lock(&self.inner);
        plan.fail_at.remove(&op);
        plan.always.remove(&op);
        plan.delays.remove(&op);
    }

    /// Removes every rule. Call counters and the injected count keep counting.
    pub fn clear(&self) {
        let mut plan = lock(&self.inner);
        plan.fail_at.clear();
        plan.always.clear();
        plan.delays.clear();
        plan.chaos = None;
    }

    /// How many failures this plan has injected so far.
    pub fn injected_count(&self) -> u64 {
        lock(&self.inner).injected
    }

    /// How many times `op` has been called (consulted the plan) so far.
    pub fn call_count(&self, op: Op) -> u64 {
        lock(&self.inner).calls.get(&op).copied().unwrap_or(0)
    }

    /// Called by a fault-injecting backend at the start of `op`: waits for any injected delay, then
    /// returns the injected failure, if one is due.
    pub async fn check(&self, op: Op) -> Result<(), InjectedFault> {
        let (delay, outcome) = self.decide(op);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        outcome
    }

    /// Counts the call and decides its fate without waiting.
    fn decide(&self, op: Op) -> (Option<Duration>, Result<(), InjectedFault>) {
        let mut plan = lock(&self.inner);
        let call = {
            let counter = plan.calls.entry(op).or_insert(0);
            *counter += 1;
            *counter
        };
        let delay = plan.delays.get(&op).copied();

        let mut rule = None;
        if let Some(due) = plan.fail_at.get_mut(&op)
            && due.remove(&call)
        {
            rule = Some("fail_nth");
        }
        if rule.is_none() && plan.always.contains(&op) {
            rule = Some("fail_always");
        }
        if rule.is_none()
            && let Some(chaos) = plan.chaos.as_mut()
            && chaos.only.as_ref().is_none_or(|only| only.contains(&op))
            // Roll the dice on every applicable call so the sequence depends only on the seed
            // and the call order.
            && chaos.rng.next_f64() < chaos.probability
        {
            rule = Some("chaos");
        }
        // Drop fail_nth targets that can no longer fire.
        if let Some(due) = plan.fail_at.get_mut(&op) {
            due.retain(|at| *at > call);
            if due.is_empty() {
                plan.fail_at.remove(&op);
            }
        }

        let outcome = match rule {
            Some(rule) => {
                plan.injected += 1;
                Err(InjectedFault { op: op.to_string(), call, rule })
            }
            None => Ok(()),
        };
        (delay, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Op {
        Ensure,
        Remove,
    }

    impl fmt::Display for Op {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Op::Ensure => "ensure",
                Op::Remove => "remove",
            })
        }
    }

    fn outcomes(plan: &FaultPlan<Op>, op: Op, n: usize) -> Vec<bool> {
        (0..n).map(|_| plan.decide(op).1.is_err()).collect()
    }

    #[test]
    fn test_fail_nth_counts_from_now_and_fires_once() {
        let plan = FaultPlan::new();
        assert_eq!(outcomes(&plan, Op::Ensure, 2), [false, false]);
        plan.fail_nth(Op::Ensure, 2);
        assert_eq!(outcomes(&plan, Op::Ensure, 4), [false, true, false, false]);
        assert_eq!(outcomes(&plan, Op::Remove, 3), [false, false, false]);
        assert_eq!(plan.injected_count(), 1);
        assert_eq!(plan.call_count(Op::Ensure), 6);
    }

    #[test]
    fn test_fail_always_until_cleared() {
        let plan = FaultPlan::new();
        plan.fail_always(Op::Remove);
        assert_eq!(outcomes(&plan, Op::Remove, 3), [true, true, true]);
        assert_eq!(outcomes(&plan, Op::Ensure, 1), [false]);
        plan.clear_op(Op::Remove);
        assert_eq!(outcomes(&plan, Op::Remove, 2), [false, false]);
    }

    #[test]
    fn test_injected_message_names_operation_and_rule() {
        let plan = FaultPlan::new();
        plan.fail_nth(Op::Ensure, 1);
        let err = plan.decide(Op::Ensure).1.expect_err("first call must fail");
        let message = err.to_string();
        assert!(message.starts_with("injected fault: ensure call 1 failed (fail_nth)"));
    }

    #[test]
    fn test_chaos_is_reproducible_and_roughly_calibrated() {
        let a = FaultPlan::new();
        let b = FaultPlan::new();
        a.chaos(0.3, 99);
        b.chaos(0.3, 99);
        let run_a = outcomes(&a, Op::Ensure, 1000);
        assert_eq!(run_a, outcomes(&b, Op::Ensure, 1000));
        let failures = run_a.iter().filter(|failed| **failed).count();
        assert!((200..400).contains(&failures), "{failures} failures at p = 0.3");

        let c = FaultPlan::new();
        c.chaos(0.3, 100);
        assert_ne!(run_a, outcomes(&c, Op::Ensure, 1000));
    }

    #[test]
    fn test_chaos_on_limits_operations() {
        let plan = FaultPlan::new();
        plan.chaos_on(&[Op::Remove], 1.0, 1);
        assert_eq!(outcomes(&plan, Op::Ensure, 3), [false, false, false]);
        assert_eq!(outcomes(&plan, Op::Remove, 3), [true, true, true]);
        plan.clear();
        assert_eq!(outcomes(&plan, Op::Remove, 1), [false]);
    }

    #[tokio::test(start_paused = true)]
    async fn test_delay_applies_before_outcome() {
        let plan = FaultPlan::new();
        plan.delay(Op::Ensure, Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        assert!(plan.check(Op::Ensure).await.is_ok());
        assert!(start.elapsed() >= Duration::from_secs(2));
        plan.delay(Op::Ensure, Duration::ZERO);
        let start = tokio::time::Instant::now();
        assert!(plan.check(Op::Ensure).await.is_ok());
        assert!(start.elapsed() < Duration::from_millis(1));
    }
}
