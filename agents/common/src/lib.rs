//! What the host, DPU and switch agents share, so each rule has one implementation:
//!
//! - [`error`]: the error every agent manager and backend returns and its mapping to gRPC status codes;
//! - [`fault`]: the fault plan a fault-injecting backend consults before every operation;
//! - [`watch`]: the "full state, then every change" stream behind each agent's `Watch`;
//! - [`generation`]: the idempotency and generation rules of every `Ensure`;
//! - [`validate`]: parsing of ids, VNIs, MAC and IP addresses and CIDRs at the agent boundary;
//! - [`hash`]: a stable hash and a seeded generator for deterministic jitter and chaos;
//! - [`port_names`]: the device names of a tenant port, shared by the DPU and host agents;
//! - [`netns_testing`] (feature `netns-testing`, tests only): network namespaces a test
//!   makes and removes;
//! - [`program`] (feature `program`): what the `host-agent`, `dpu-agent` and `switch-agent`
//!   binaries share: the TOML config, its certificates, serving until SIGTERM or Ctrl-C;
//! - [`tls`]: the agents' PKI (CA, agent and control-plane certificates, their directory) and
//!   the mutual TLS configurations of both ends.
//!
//! This crate knows nothing of hosts, DPUs or switches and never depends on the control plane.

pub mod error;
pub mod fault;
pub mod generation;
pub mod hash;
#[cfg(feature = "netns-testing")]
pub mod netns_testing;
pub mod port_names;
#[cfg(feature = "program")]
pub mod program;
pub mod store;
pub mod tls;
pub mod validate;
pub mod watch;

pub use error::DriverError;

/// A random id for one start of an agent's manager (`DpuInventory.boot_id`,
/// `SwitchInventory.boot_id`): another one tells the control plane that the agent restarted
/// and holds nothing.
pub fn new_boot_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
pub use fault::{FaultPlan, InjectedFault};
pub use generation::{EnsureAction, decide_ensure};
pub use watch::{EventHub, EventStream, WatchEvent, snapshot_then_changes};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: agent state is only
/// mutated in short non-panicking sections, so the data is still consistent.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
