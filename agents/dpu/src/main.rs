//! `dpu-agent --config FILE`: serves one BlueField DPU's `DpuAgent` over mutual TLS (the config's
//! `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config: `sim` or `linux`. Either table holds the device in
//! `dpu`, in the fields of [`dpu_agent::DpuDescription`] (`dpu_id` must equal `id`); `sim`
//! takes an optional apply delay:
//!
//! ```toml
//! listen = "0.0.0.0:7443"
//! id = "su1-h07-dpu0"
//! [tls]
//! ca_cert = "pki/ca.crt"
//! cert = "pki/dpu/su1-h07-dpu0.crt"
//! key = "pki/dpu/su1-h07-dpu0.key"
//! [backend.sim]
//! apply_delay_ms = 5   # default 5
//! [backend.sim.dpu]
//! dpu_id = "su1-h07-dpu0"
//! # ... the other fields of DpuDescription
//! ```
//!
//! `linux` ([`dpu_agent::LinuxDpuConfig`]) programs bridges, VXLAN devices, veth ports and
//! nftables (root needed), optionally in a network namespace, with static remote VTEPs:
//!
//! ```toml
//! [backend.linux]
//! netns = "dpu0"                      # optional: `ip netns add dpu0` made beforehand
//! remote_vteps = ["192.0.2.12"]       # optional: VTEPs every VNI floods to
//! [backend.linux.uplink]              # optional: needed for ports with a public IP
//! device = "ext0"                     # an existing device on the external network
//! gateway = "203.0.113.1"             # that network's next hop
//! table = 4790                        # optional: the routing table the agent owns
//! [backend.linux.dpu]
//! dpu_id = "su1-h07-dpu0"
//! vtep_ip = "192.0.2.11"
//! # ... the other fields of DpuDescription
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use dpu_agent::{
    DpuAgentService, DpuDescription, DpuManager, LinuxDpuBackend, LinuxDpuConfig, SimDpu,
    SimDpuOptions,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Backend {
    Sim(SimSettings),
    Linux(LinuxDpuConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSettings {
    apply_delay_ms: Option<u64>,
    dpu: DpuDescription,
}

fn main() -> ExitCode {
    program::main("dpu-agent", "dpu", start)
}

async fn start(
    config: AgentConfig<Backend>,
    credentials: AgentCredentials,
) -> Result<Agent, String> {
    let manager = match config.backend {
        Backend::Sim(sim) => {
            program::check_device_id(&config.id, "dpu", "dpu_id", &sim.dpu.dpu_id)?;
            let defaults = SimDpuOptions::default();
            let options = SimDpuOptions {
                apply_delay: sim.apply_delay_ms.map_or(defaults.apply_delay, Duration::from_millis),
                ..defaults
            };
            SimDpu::new(sim.dpu, options).manager().clone()
        }
        Backend::Linux(linux) => {
            program::check_device_id(&config.id, "dpu", "dpu_id", &linux.dpu.dpu_id)?;
            let description = linux.dpu.clone();
            let backend = LinuxDpuBackend::start(linux).await.map_err(|err| err.to_string())?;
            // The same watch buffer as the simulated DPU's.
            let capacity = SimDpuOptions::default().event_capacity;
            DpuManager::new(description, Arc::new(backend), capacity)
        }
    };
    let on_stop = {
        let manager = manager.clone();
        Box::new(move || manager.shutdown())
    };
    let router =
        DpuAgentService::new(manager).into_router(&credentials).map_err(program::serve_error)?;
    Ok(Agent { router, on_stop })
}
