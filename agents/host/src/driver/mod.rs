//! The [`HostDriver`] trait: what the host agent needs from whatever runs its VMs. The gRPC
//! service talks only to this trait; backends are chosen at run time (`Arc<dyn HostDriver>`).
//!
//! Backends: [`sim::SimHostDriver`], an in-memory HGX H100 host with timed state transitions
//! and fault injection. A libvirt backend (domain XML with VFIO hostdevs, CPU pinning, NUMA
//! tuning, hugepages, Fabric Manager partition activation) implements the same contract and
//! reuses [`crate::allocation`] for the rules.
//!
//! Every error is a [`DriverError`]; its variant says who is at fault (see each method).

pub mod sim;

use async_trait::async_trait;

use agent_common::{DriverError, EventStream};

use crate::model::{HostEvent, HostInventory, PartitionStatus, VmSpec, VmStatus};

#[async_trait]
pub trait HostDriver: Send + Sync + 'static {
    /// The host's hardware, current GPU health, free hugepages and active partitions.
    ///
    /// Read-only and always safe to repeat. Errors: `Unavailable` when the device layer cannot
    /// be read right now (nobody's fault; retry).
    async fn inventory(&self) -> Result<HostInventory, DriverError>;

    /// Creates, adopts or updates the VM `spec.vm_id`, and returns its status at once: a new
    /// VM is `PROVISIONING` (partition activated, devices bound, domain starting) and becomes
    /// `RUNNING` later, reported on [`watch`](Self::watch).
    ///
    /// Idempotent by `vm_id`: the same spec at the same generation returns the VM's current
    /// status and changes nothing. A higher generation replaces the spec (re-provisioning the
    /// VM if anything but the generation changed, or if it had FAILED).
    ///
    /// Errors, all the caller's fault unless noted:
    /// - `InvalidArgument`: the spec is malformed or names GPUs, partitions, NICs, CPUs or
    ///   NUMA nodes this host does not have, or places them on nodes the spec does not list;
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, a partition overlapping an active one, a NIC or CPU held by another VM,
    ///   a GPU with FAILED health;
    /// - `ResourceExhausted`: not enough free 1 GiB hugepages on a listed NUMA node;
    /// - `Unavailable`: the VM is still being removed, or the device is busy (retry);
    /// - `Internal`: the backend misbehaved (an operator must look).
    async fn vm_ensure(&self, spec: VmSpec) -> Result<VmStatus, DriverError>;

    /// Activates Fabric Manager partition `partition_id` for VM `vm_id` (before the VM is
    /// ensured; `vm_ensure` activates a VM's partition itself if this was not called).
    ///
    /// Idempotent: a partition already active for `vm_id` returns its status. `generation` is
    /// the VM's: a VM removed at a generation at or above it is refused, like `vm_ensure`.
    /// Errors, all the caller's fault unless noted:
    /// - `InvalidArgument`: the partition is not in the host's table;
    /// - `FailedPrecondition`: it (or an overlapping one) is active for another VM, one of
    ///   its GPUs has FAILED health, or the VM was removed at this generation or later;
    /// - `Unavailable`: the device is busy (retry).
    async fn partition_activate(
        &self,
        vm_id: &str,
        partition_id: u32,
        generation: u64,
    ) -> Result<PartitionStatus, DriverError>;

    /// Deactivates partition `partition_id` if it is active for `vm_id`. Idempotent: an
    /// inactive partition returns `active = false`; one active for another VM is left alone
    /// and returned with that VM's id (never an error, so an undo that lost a race succeeds
    /// without touching someone else's partition).
    /// Errors: `InvalidArgument` for a partition not in the table (caller's fault);
    /// `FailedPrecondition` while VM `vm_id` is still defined on it (remove it first);
    /// `Unavailable` when the device is busy (retry).
    async fn partition_deactivate(
        &self,
        vm_id: &str,
        partition_id: u32,
    ) -> Result<PartitionStatus, DriverError>;

    /// Stops and undefines the VM, then deactivates its partition and frees everything it
    /// held. Returns `STOPPING` while that happens (reported as `DELETED` on the watch stream
    /// when done) and `DELETED` for a VM this host does not hold.
    ///
    /// Idempotent: removing a stopping VM returns `STOPPING` again; removing an absent VM
    /// succeeds. A `generation` above 0 is remembered: a later `vm_ensure` of this id with a
    /// generation up to it is refused with `FailedPrecondition` (a late launch retry must not
    /// bring the VM back). Errors: `InvalidArgument` for a malformed id (caller's fault);
    /// `Unavailable` when the device is busy (retry); `Internal` when the backend misbehaved.
    async fn vm_remove(&self, vm_id: &str, generation: u64) -> Result<VmStatus, DriverError>;

    /// The full current state (one `Vm` event per VM held, one `Gpu` event per GPU), then
    /// every change. Any number of subscribers; one that falls behind receives a fresh
    /// snapshot, preceded by `DELETED` for VMs that vanished meanwhile, instead of missing
    /// events. The stream ends when the agent shuts down.
    ///
    /// Errors: `Unavailable` when the agent is shutting down or the device is busy (retry).
    async fn watch(&self) -> Result<EventStream<HostEvent>, DriverError>;
}
