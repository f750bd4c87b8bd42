//! Work that runs on its own for the life of a replica: the reconciler (stray VMs), the
//! fleet flags other replicas record, the stray VMs themselves, the network reconciler (DPU
//! ports, the leaves' tenant VRFs), metering, and the relay of live events between replicas.

pub(crate) mod event_relay;
mod fabric;
pub(crate) mod fleet_sync;
pub(crate) mod metering;
pub(crate) mod network;
mod ports;
pub(crate) mod reconciler;
pub(crate) mod strays;
