//! A simulated HGX datacenter: every host, DPU and switch agent of a [`Topology`] served
//! from one process, each as its own gRPC server on loopback, running the real agent service
//! code and managers over simulated backends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sim_fleet::{PkiDir, SimFleet, SimOptions, Topology};
//! let pki = PkiDir::new("data/pki");
//! let fleet = SimFleet::start(&Topology::hgx_h100(2), SimOptions::default(), &pki).await?;
//! for endpoint in fleet.endpoints() {
//!     println!("{} {} {}", endpoint.kind, endpoint.id, endpoint.url);
//! }
//! // Misbehave on purpose: the next EnsureVm on su1-h07 fails with UNAVAILABLE (its domain
//! // define fails).
//! if let Some(host) = fleet.host("su1-h07") {
//!     host.faults().fail_nth(sim_fleet::HostOp::DomainDefine, 1);
//! }
//! fleet.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`topology`] (the TOML format, validation, ids and addresses), [`fleet`]
//! (starting and stopping the agents), [`real_host`] (this machine as a real host beside
//! them), [`serve`] (one tonic server on a loopback port),
//! [`state`] (the hosts' state in the data directory).

pub mod fleet;
pub mod real_host;
pub mod serve;
pub mod state;
pub mod topology;

pub use agent_common::FaultPlan;
pub use agent_common::tls::PkiDir;
pub use dpu_agent::{DpuOp, SimDpu};
pub use fleet::{FleetError, SimFleet, SimOptions};
pub use host_agent::{GpuHealth, HostOp, SimHost};
pub use switch_agent::{SimSwitch, SwitchOp};
pub use topology::{Topology, TopologyError};
