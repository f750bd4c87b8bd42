//! `dpu-agent --config FILE`: serves one BlueField DPU's `DpuAgent` over mutual TLS (the config's
//! `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config; `sim` is the only one today. Its table holds the
//! device, in the fields of [`dpu_agent::DpuDescription`] (`dpu_id` must equal `id`), and
//! an optional apply delay:
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

use std::process::ExitCode;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use dpu_agent::{DpuAgentService, DpuDescription, SimDpu, SimDpuOptions};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Backend {
    Sim(SimSettings),
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
    let Backend::Sim(sim) = config.backend;
    program::check_device_id(&config.id, "dpu", "dpu_id", &sim.dpu.dpu_id)?;
    let defaults = SimDpuOptions::default();
    let options = SimDpuOptions {
        apply_delay: sim.apply_delay_ms.map_or(defaults.apply_delay, Duration::from_millis),
        ..defaults
    };
    let dpu = SimDpu::new(sim.dpu, options);
    let router = DpuAgentService::new(dpu.manager().clone())
        .into_router(&credentials)
        .map_err(program::serve_error)?;
    Ok(Agent { router, on_stop: Box::new(move || dpu.shutdown()) })
}
