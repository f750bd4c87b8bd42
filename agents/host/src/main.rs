//! `host-agent --config FILE`: serves one GPU server's `HostAgent` over mutual TLS (the
//! config's `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config; `sim` is the only one today. Its table holds the
//! host's hardware, in the fields of [`host_agent::HostDescription`] (`host_id` must equal
//! `id`), and optional timings:
//!
//! ```toml
//! listen = "0.0.0.0:7443"
//! id = "su1-h07"
//! [tls]
//! ca_cert = "pki/ca.crt"
//! cert = "pki/host/su1-h07.crt"
//! key = "pki/host/su1-h07.key"
//! [backend.sim]
//! provision_delay_ms = 1500   # default 1500
//! remove_delay_ms = 500       # default 500
//! [backend.sim.host]
//! host_id = "su1-h07"
//! # ... system_model, scalable_unit, numa_nodes, gpus, nics, dpu_ids, partitions
//! ```

use std::process::ExitCode;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use host_agent::{HostAgentService, HostDescription, HostOptions, SimHost};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Backend {
    Sim(SimSettings),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSettings {
    provision_delay_ms: Option<u64>,
    remove_delay_ms: Option<u64>,
    seed: Option<u64>,
    host: HostDescription,
}

fn main() -> ExitCode {
    program::main("host-agent", "host", start)
}

async fn start(
    config: AgentConfig<Backend>,
    credentials: AgentCredentials,
) -> Result<Agent, String> {
    let Backend::Sim(sim) = config.backend;
    program::check_device_id(&config.id, "host", "host_id", &sim.host.host_id)?;
    let defaults = HostOptions::default();
    let options = HostOptions {
        provision_delay: sim
            .provision_delay_ms
            .map_or(defaults.provision_delay, Duration::from_millis),
        remove_delay: sim.remove_delay_ms.map_or(defaults.remove_delay, Duration::from_millis),
        seed: sim.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    let host = SimHost::new(sim.host, options);
    let router = HostAgentService::new(host.manager().clone())
        .into_router(&credentials)
        .map_err(program::serve_error)?;
    Ok(Agent { router, on_stop: Box::new(move || host.shutdown()) })
}
