//! `switch-agent --config FILE`: serves one Spectrum-X leaf's `SwitchAgent` over mutual TLS (the config's
//! `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config: `sim` or `frr`. Each table holds the device, in the
//! fields of [`switch_agent::SwitchDescription`] (`switch_id` must equal `id`); `sim` has an
//! optional apply delay:
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
//!
//! `frr` drives the FRR daemons and the kernel of the leaf it runs on
//! ([`switch_agent::FrrSettings`]):
//!
//! ```toml
//! [backend.frr]
//! vrf_mode = "kernel"            # or "netns" where the kernel has no VRF devices
//! pathspace = "leaf3"            # optional: vtysh -N
//! vtysh = "/usr/bin/vtysh"       # default
//! command_timeout_ms = 15000     # default
//! command_wrapper = []           # default: run ip and vtysh directly
//! [backend.frr.switch]
//! switch_id = "su1-leaf3"
//! asn = 65103
//! loopback_ip = "10.255.0.3"     # the VTEP
//! # ... the other fields of SwitchDescription
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use serde::Deserialize;
use switch_agent::{
    FrrSettings, FrrSwitchBackend, SimSwitch, SimSwitchOptions, SwitchAgentService,
    SwitchDescription, SwitchManager,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Backend {
    Sim(SimSettings),
    Frr(FrrSettings),
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
    let defaults = SimSwitchOptions::default();
    let manager = match config.backend {
        Backend::Sim(sim) => {
            program::check_device_id(&config.id, "switch", "switch_id", &sim.switch.switch_id)?;
            let options = SimSwitchOptions {
                apply_delay: sim.apply_delay_ms.map_or(defaults.apply_delay, Duration::from_millis),
                ..defaults
            };
            SimSwitch::new(sim.switch, options).manager().clone()
        }
        Backend::Frr(frr) => {
            program::check_device_id(&config.id, "switch", "switch_id", &frr.switch.switch_id)?;
            let description = frr.switch.clone();
            let backend = Arc::new(FrrSwitchBackend::new(frr));
            SwitchManager::new(description, backend, defaults.event_capacity)
        }
    };
    let router = SwitchAgentService::new(manager.clone())
        .into_router(&credentials)
        .map_err(program::serve_error)?;
    Ok(Agent { router, on_stop: Box::new(move || manager.shutdown()) })
}
