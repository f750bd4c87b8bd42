//! This machine as one real CPU-only host beside the simulated fleet: its VMs are real
//! guests under libvirt (`qemu:///system`), booted from the image store, their memory the
//! machine's ordinary memory (build machines and laptops reserve no hugepages).

use std::path::PathBuf;

pub use host_agent::LibvirtConfig;
pub use host_agent::backend::libvirt::DomainType;
use host_agent::backend::libvirt::HostFacts;

/// The real host's agent id and host name in the portal.
pub const REAL_HOST_ID: &str = "local-1";

/// The libvirt backend's configuration for this machine: images from `image_dir`, per-VM
/// files under `state_dir`, domains of `domain_type`, and at most `memory_gib` GiB per NUMA
/// node for VMs.
pub fn this_machine(
    image_dir: PathBuf,
    state_dir: PathBuf,
    domain_type: DomainType,
    memory_gib: u32,
) -> LibvirtConfig {
    LibvirtConfig {
        uri: "qemu:///system".into(),
        domain_type,
        image_dir,
        state_dir,
        sysfs_root: "/sys".into(),
        cpu_only_hugepages: false,
        fm_tool: None,
        shutdown_timeout_secs: 20,
        boot_wait_secs: 120,
        guest_memory_gib: Some(memory_gib),
        vf_netns: None,
        host: HostFacts::cpu_only(REAL_HOST_ID, "this machine (real guests, CPU-only)"),
    }
}
