//! Work that runs on its own for the life of a replica: the reconciler (stray VMs), the
//! fleet flags other replicas record, and the stray VMs themselves.

pub(crate) mod fleet_sync;
pub(crate) mod reconciler;
pub(crate) mod strays;
