//! The [`HostBackend`] trait: the device operations the host agent's manager needs, and
//! nothing else. Desired state, generations, tombstones, the allocation ledger, VM states and
//! watch streams live in [`crate::manager`], once for every backend; a backend only does
//! what it is told, on the hardware.
//!
//! Backends: [`sim::SimHostBackend`] (an in-memory HGX H100 host) and
//! [`libvirt::LibvirtBackend`] (domain XML with VFIO hostdevs, CPU pinning, NUMA tuning,
//! hugepages; hardware from sysfs; Fabric Manager partition activation). [`faulty::FaultyBackend`] wraps any backend to
//! inject errors and delays per [`HostOp`].
//!
//! Every operation is idempotent: defining an identical defined domain, starting a running
//! one, stopping a stopped one, undefining an absent one, activating an active partition and
//! deactivating an inactive one all succeed. Errors are [`DriverError`]s; `Unavailable` is
//! always "the device is busy or unreachable, retry", `Internal` always "the device
//! misbehaved, an operator must look"; other variants are listed per method.

pub mod faulty;
pub mod libvirt;
pub mod sim;
pub mod sim_console;

use std::fmt;

use async_trait::async_trait;

use agent_common::DriverError;

use crate::console::ConsoleSession;
use crate::model::{HostDescription, Partition, VmSpec};

#[async_trait]
pub trait HostBackend: Send + Sync + 'static {
    /// Reads the host's hardware (CPUs, memory, GPUs and their health at start, NICs, the
    /// Fabric Manager partition table). Read-only.
    async fn hardware(&self) -> Result<HostDescription, DriverError>;

    /// The files in the host's image store (what `VmSpec::image` may name), sorted; `None`:
    /// any image boots (a simulated host).
    async fn images(&self) -> Result<Option<Vec<String>>, DriverError>;

    /// Activates a Fabric Manager partition, connecting its GPUs over NVSwitch. The manager
    /// has checked it against the others; `FailedPrecondition` if the fabric refuses it
    /// anyway (a GPU fell off the bus: not the caller's fault, the GPU's).
    async fn partition_activate(&self, partition: &Partition) -> Result<(), DriverError>;

    /// Deactivates a partition (its GPUs are no longer in use by any domain).
    async fn partition_deactivate(&self, partition: &Partition) -> Result<(), DriverError>;

    /// Defines (or redefines) the domain `spec.vm_id` as `spec` says, GPUs and NICs bound to
    /// vfio-pci; does not start it. The manager has checked the spec against the hardware.
    async fn domain_define(&self, spec: &VmSpec) -> Result<(), DriverError>;

    /// Starts the defined domain `vm_id` and returns once it runs. `FailedPrecondition` if it
    /// is not defined (the manager's fault: an `Internal` bug upstream).
    async fn domain_start(&self, vm_id: &str) -> Result<(), DriverError>;

    /// Stops the domain `vm_id` (the guest is asked to shut down, then powered off).
    async fn domain_stop(&self, vm_id: &str) -> Result<(), DriverError>;

    /// Reboots the running domain `vm_id` (the guest is asked to restart; its devices stay
    /// bound). `FailedPrecondition` if it is not running or not defined.
    async fn domain_reboot(&self, vm_id: &str) -> Result<(), DriverError>;

    /// Powers the domain `vm_id` off at once, without asking the guest. A stopped or absent
    /// domain is fine.
    async fn domain_power_off(&self, vm_id: &str) -> Result<(), DriverError>;

    /// Undefines the stopped domain `vm_id`, freeing its devices. `FailedPrecondition` if it
    /// is still running (stop it first).
    async fn domain_undefine(&self, vm_id: &str) -> Result<(), DriverError>;

    /// A session on the serial console of the defined domain `vm_id` (see
    /// [`crate::console`]): output since the guest last started, then live; keystrokes in.
    /// `FailedPrecondition` if the domain never started.
    async fn console(&self, vm_id: &str) -> Result<ConsoleSession, DriverError>;
}

/// The backend operations, by name: what [`faulty::FaultyBackend`] injects faults into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostOp {
    Hardware,
    Images,
    PartitionActivate,
    PartitionDeactivate,
    DomainDefine,
    /// A failure turns the VM `FAILED` instead of `RUNNING` (after `PROVISIONING` or
    /// `STARTING`); a delay lengthens those states.
    DomainStart,
    /// Called by `RemoveVm` itself: a failure fails the call and leaves the VM as it was. Also
    /// by `SetVmPower` STOP's task: a failure returns the VM to `RUNNING`.
    DomainStop,
    /// Called by `SetVmPower` REBOOT's task: a failure returns the VM to `RUNNING`.
    DomainReboot,
    /// Called by `SetVmPower` POWER_OFF's task: a failure returns the VM to `RUNNING`.
    DomainPowerOff,
    DomainUndefine,
    /// Opening a console session.
    Console,
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostOp::Hardware => "hardware",
            HostOp::Images => "images",
            HostOp::PartitionActivate => "partition_activate",
            HostOp::PartitionDeactivate => "partition_deactivate",
            HostOp::DomainDefine => "domain_define",
            HostOp::DomainStart => "domain_start",
            HostOp::DomainStop => "domain_stop",
            HostOp::DomainReboot => "domain_reboot",
            HostOp::DomainPowerOff => "domain_power_off",
            HostOp::DomainUndefine => "domain_undefine",
            HostOp::Console => "console",
        })
    }
}
