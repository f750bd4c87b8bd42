//! The idempotency and generation rules every `Ensure` follows, in one place:
//!
//! | held by the agent            | request                       | outcome                     |
//! |------------------------------|-------------------------------|-----------------------------|
//! | nothing                      | any generation                | create                      |
//! | generation g, spec S         | generation g, spec S          | unchanged (a retry)         |
//! | generation g, spec S         | generation g, spec S' ≠ S     | refused: FAILED_PRECONDITION|
//! | generation g                 | generation < g                | refused: FAILED_PRECONDITION|
//! | generation g                 | generation > g                | replace                     |
//!
//! Refusing a lower generation means a delayed retry can never roll state back.

use crate::DriverError;

/// What an `Ensure` should do with the resource it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureAction {
    /// The agent holds nothing under this id: create it.
    Create,
    /// The same spec at the same generation is already applied: answer with the current status.
    Unchanged,
    /// A newer generation: apply the new spec in place of the old one.
    Replace,
}

/// The generation and spec equality of what the agent holds under an id.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub generation: u64,
    /// Whether the held spec equals the requested one (ignoring the generation).
    pub same_spec: bool,
}

/// Applies the table above. `kind` and `id` only shape the error message ("VM 3f2a…").
pub fn decide_ensure(
    kind: &str,
    id: &str,
    applied: Option<Applied>,
    requested_generation: u64,
) -> Result<EnsureAction, DriverError> {
    let Some(applied) = applied else {
        return Ok(EnsureAction::Create);
    };
    if requested_generation < applied.generation {
        return Err(DriverError::FailedPrecondition(format!(
            "{kind} {id} is already at generation {}, newer than the requested generation \
             {requested_generation}; read the current state and send a newer generation",
            applied.generation
        )));
    }
    if requested_generation > applied.generation {
        return Ok(EnsureAction::Replace);
    }
    if applied.same_spec {
        Ok(EnsureAction::Unchanged)
    } else {
        Err(DriverError::FailedPrecondition(format!(
            "{kind} {id} already has a different spec at generation {requested_generation}; \
             send the change with a higher generation"
        )))
    }
}

/// Refuses generation 0, which is what an unset proto3 field decodes to.
pub fn require_generation(kind: &str, generation: u64) -> Result<u64, DriverError> {
    if generation == 0 {
        Err(DriverError::InvalidArgument(format!(
            "{kind} spec has generation 0; generations start at 1"
        )))
    } else {
        Ok(generation)
    }
}

/// How many removals an agent remembers; a launch retry arrives within seconds, not after
/// this many later removals.
const TOMBSTONES: usize = 65_536;

/// The generations at which resources were removed, so a late `Ensure` retry of a removed
/// resource (at a generation up to its removal's) is refused instead of recreating it.
#[derive(Debug, Default)]
pub struct Tombstones {
    by_id: std::collections::HashMap<String, u64>,
    /// Oldest first, to forget the oldest beyond [`TOMBSTONES`].
    order: std::collections::VecDeque<String>,
}

impl Tombstones {
    /// Remembers a removal at `generation` (0: a removal without that guard).
    pub fn record(&mut self, id: &str, generation: u64) {
        if generation == 0 {
            return;
        }
        if let Some(held) = self.by_id.get_mut(id) {
            *held = (*held).max(generation);
            return;
        }
        self.by_id.insert(id.to_owned(), generation);
        self.order.push_back(id.to_owned());
        if self.order.len() > TOMBSTONES
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_id.remove(&oldest);
        }
    }

    /// Every tombstone, oldest first: `record` them in this order to rebuild the same set.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64)> {
        self.order.iter().filter_map(|id| Some((id.as_str(), *self.by_id.get(id)?)))
    }

    /// The highest generation `id` was removed at, if it was.
    pub fn get(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Refuses an `Ensure` of `kind` `id` at `generation` when the resource was removed at
    /// that generation or a later one: a late retry must not bring it back.
    pub fn check_ensure(&self, kind: &str, id: &str, generation: u64) -> Result<(), DriverError> {
        match self.get(id) {
            Some(removed_at) if generation <= removed_at => {
                Err(DriverError::FailedPrecondition(format!(
                    "{kind} {id} was removed at generation {removed_at}; a retry of generation \
                     {generation} cannot bring it back"
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(generation: u64, same_spec: bool) -> Option<Applied> {
        Some(Applied { generation, same_spec })
    }

    #[test]
    fn test_generation_table() {
        assert_eq!(decide_ensure("VM", "a", None, 1), Ok(EnsureAction::Create));
        assert_eq!(decide_ensure("VM", "a", held(2, true), 2), Ok(EnsureAction::Unchanged));
        assert_eq!(decide_ensure("VM", "a", held(2, false), 3), Ok(EnsureAction::Replace));
        assert_eq!(decide_ensure("VM", "a", held(2, true), 3), Ok(EnsureAction::Replace));
        let stale = decide_ensure("VM", "a", held(2, true), 1).expect_err("stale");
        assert!(matches!(stale, DriverError::FailedPrecondition(_)));
        assert!(stale.to_string().contains("generation 2"));
        let conflict = decide_ensure("VM", "a", held(2, false), 2).expect_err("conflict");
        assert!(conflict.to_string().contains("different spec"));
    }

    #[test]
    fn test_generation_zero_refused() {
        assert!(require_generation("VM", 0).is_err());
        assert_eq!(require_generation("VM", 5), Ok(5));
    }

    #[test]
    fn tombstones_keep_the_highest_removal_and_forget_the_oldest() {
        let mut t = Tombstones::default();
        t.record("a", 0);
        assert_eq!(t.get("a"), None, "generation 0 leaves no tombstone");
        t.record("a", 3);
        t.record("a", 2);
        assert_eq!(t.get("a"), Some(3));
        for i in 0..TOMBSTONES {
            t.record(&format!("vm-{i}"), 1);
        }
        assert_eq!(t.get("a"), None, "the oldest was forgotten");
        assert_eq!(t.get("vm-0"), Some(1));
    }
}
