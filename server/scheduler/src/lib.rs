//! Topology-aware GPU placement: a pure, deterministic library with no I/O, no database and no
//! async.
//!
//! The crate decides *where* VMs go on a fleet of HGX hosts. The control plane owns everything
//! else: it builds a [`Scheduler`] from the inventory ([`Host`]s) and [`Scheduler::load`]s the
//! allocations the database already holds; to launch, it calls [`Scheduler::place`] (decide
//! only), claims the result in a database transaction (which re-checks it and the tenant's
//! quotas), then mirrors the commit with [`Scheduler::commit`]; on delete it calls
//! [`Scheduler::release`]. Health and cordon changes go through [`Scheduler::set_cordoned`],
//! [`Scheduler::set_agent_reachable`] and [`Scheduler::set_gpu_healthy`].
//!
//! What it guarantees (DESIGN.md §4):
//! - only Fabric Manager partitions are allocated, with their paired SuperNICs (same PCIe
//!   switch); vCPUs, the emulator CPU and hugepages on the GPUs' NUMA nodes; no GPU, CPU or
//!   hugepage twice; never an unhealthy GPU, a cordoned host or one whose agent is unreachable;
//! - best fit over the 8 → 4 → 2 → 1 partition tree, and CPU-only VMs on busy hosts without
//!   stranding free GPUs where possible;
//! - `cluster` groups in one scalable unit, `spread` groups on distinct hosts (and units where
//!   possible); multi-VM requests all-or-nothing;
//! - decisions from an index (`index.rs`), not a fleet scan, and the same decisions for the
//!   same state and RNG seed.
//!
//! Module map: `model` (input), `request`, `allocation` (output), `placement` (the algorithm
//! and its spec), `commit` (applying decisions), `capacity` (launchable counts), `validate`
//! (an independent invariant checker), and internals: `topology` (compiled hosts), `state`,
//! `fit` (NUMA split), `score` (best-fit keys), `index` (buckets), `scheduler`.

mod allocation;
mod capacity;
mod commit;
mod fit;
mod index;
mod model;
mod placement;
mod request;
mod scheduler;
mod score;
mod state;
mod topology;
pub mod validate;

pub use allocation::{Allocation, NodeHugepages, Placement};
pub use capacity::{Launchable, ModelCapacity};
pub use commit::{CommitError, CommitProblem, ReleaseError};
pub use model::{
    Gpu, HGX_H100_MODEL, Host, ModuleId, Nic, NumaNode, Partition, hgx_h100_partitions,
};
pub use placement::PlacementError;
pub use request::{
    GroupPolicy, MAX_VMS_PER_REQUEST, PlacementGroup, PlacementRequest, RequestError,
};
pub use scheduler::{GpuShare, HostError, Scheduler, SchedulerConfig};
pub use topology::{FleetError, PARTITION_SIZES};
