//! `host-agent --config FILE`: serves one GPU server's `HostAgent` over mutual TLS (the
//! config's `listen`, `id`, `[tls]`: see `agent_common::program`).
//!
//! The backend is chosen in the config: `sim` or `libvirt`.
//!
//! `sim`'s table holds the host's hardware, in the fields of [`host_agent::HostDescription`]
//! (`host_id` must equal `id`), and optional timings:
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
//!
//! `libvirt` runs real domains ([`host_agent::LibvirtConfig`]): NUMA nodes, CPUs, memory,
//! hugepages, GPUs, NICs and PCIe switches come from sysfs, the rest from its `host` table
//! (`host_id` must equal `id`):
//!
//! ```toml
//! [backend.libvirt]
//! uri = "qemu:///system"          # test:///default: libvirt's in-process test driver
//! domain_type = "kvm"             # or "qemu" (TCG) where KVM guests do not boot
//! image_dir = "/var/lib/gpu-cloud/images"   # the image store: the files the catalog names
//! state_dir = "/var/lib/gpu-cloud/vms"      # overlays, config drives, console logs
//! sysfs_root = "/sys"             # default "/sys"
//! cpu_only_hugepages = false      # default false: CPU-only VMs on ordinary memory
//! fm_tool = ["fmpm"]              # optional: absent simulates partitions in memory
//! shutdown_timeout_secs = 30      # default 30: ACPI shutdown, then power off
//! boot_wait_secs = 60             # default 60: RUNNING once the guest prints on ttyS0
//! guest_memory_gib = 4            # CPU-only hosts without hugepages: VM memory per node
//! [backend.libvirt.host]
//! host_id = "su1-h07"
//! system_model = "HGX H100 8-GPU"
//! scalable_unit = 1
//! gpu_module_ids = [3, 1, 4, 2, 7, 5, 8, 6]  # per GPU in PCI order; default 1, 2, ...
//! gpu_uuids = []                  # default "pci-<address>" (sysfs has no UUIDs)
//! gpu_model = "H100-SXM5-80GB"
//! gpu_memory_mib = 81559
//! leaf_switch_ids = []            # per rail; default "su<unit>-leaf<rail>"
//! nic_speed_gbps = 400            # default 400
//! dpu_ids = ["su1-h07-dpu0"]
//! partitions = [{ id = 0, module_ids = [1, 2, 3, 4, 5, 6, 7, 8] }]  # the FM table
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_common::program::{self, Agent, AgentConfig};
use agent_common::tls::AgentCredentials;
use host_agent::{
    HostAgentService, HostDescription, HostManager, HostOptions, LibvirtBackend, LibvirtConfig,
    SimHost,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
// Boxed: the tables are large and read once.
enum Backend {
    Sim(Box<SimSettings>),
    Libvirt(Box<LibvirtConfig>),
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
    let sim = match config.backend {
        Backend::Sim(sim) => *sim,
        Backend::Libvirt(libvirt) => {
            return start_libvirt(&config.id, *libvirt, &credentials).await;
        }
    };
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

async fn start_libvirt(
    id: &str,
    config: LibvirtConfig,
    credentials: &AgentCredentials,
) -> Result<Agent, String> {
    program::check_device_id(id, "host", "host_id", &config.host.host_id)?;
    let backend = tokio::task::spawn_blocking(move || LibvirtBackend::open(config))
        .await
        .map_err(|e| format!("opening the libvirt backend panicked: {e}"))?
        .map_err(|e| format!("the libvirt backend cannot start: {e}"))?;
    let description = backend.description().clone();
    // The real operations take their own time: no simulated delays.
    let options = HostOptions::real_hardware();
    let manager = HostManager::new(description, Arc::new(backend), options);
    let router = HostAgentService::new(manager.clone())
        .into_router(credentials)
        .map_err(program::serve_error)?;
    Ok(Agent { router, on_stop: Box::new(move || manager.shutdown()) })
}
