//! `switch-agent --config FILE`: serves one Spectrum-X leaf's `SwitchAgent` over mutual TLS (the config's
//! `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config; `sim` is the only one today. Its table holds the
//! device, in the fields of [`switch_agent::SwitchDescription`] (`switch_id` must equal `id`), and
//! an optional apply delay:
//!
//! ```toml
//! listen = "0.0.0.0:7443"
//! id = "su1-leaf3"
//! [tls]
//! ca_cert = "pki/ca.crt"
//! cert = "pki/switch/su1-leaf3.crt"
//! key = "pki/switch/su1-leaf3.key"
//! [backend.sim]
//! apply_delay_ms = 5   # default 5
//! [backend.sim.switch]
//! switch_id = "su1-leaf3"
//! # ... the other fields of SwitchDescription
//! ```

use std::process::ExitCode;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use serde::Deserialize;
use switch_agent::{SimSwitch, SimSwitchOptions, SwitchAgentService, SwitchDescription};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Backend {
    Sim(SimSettings),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSettings {
    apply_delay_ms: Option<u64>,
    switch: SwitchDescription,
}

fn main() -> ExitCode {
    program::main("switch-agent", "switch", start)
}

async fn start(
    config: AgentConfig<Backend>,
    credentials: AgentCredentials,
) -> Result<Agent, String> {
    let Backend::Sim(sim) = config.backend;
    program::check_device_id(&config.id, "switch", "switch_id", &sim.switch.switch_id)?;
    let defaults = SimSwitchOptions::default();
    let options = SimSwitchOptions {
        apply_delay: sim.apply_delay_ms.map_or(defaults.apply_delay, Duration::from_millis),
        ..defaults
    };
    let switch = SimSwitch::new(sim.switch, options);
    let router = SwitchAgentService::new(switch.manager().clone())
        .into_router(&credentials)
        .map_err(program::serve_error)?;
    Ok(Agent { router, on_stop: Box::new(move || switch.shutdown()) })
}
