//! Renders a [`VmSpec`] as libvirt domain XML: q35, pinned vCPUs and emulator thread,
//! strict NUMA memory with matching guest cells, VFIO hostdevs for the GPUs and their paired
//! SuperNICs in a guest PCIe tree that mirrors the host's ([`super::pcie_layout`]), 1 GiB
//! hugepages and locked memory for GPU VMs, a 64-bit MMIO window sized for the GPUs, a
//! qcow2 overlay disk, a NoCloud config drive, a virtio NIC per tenant port where the host
//! wires taps to its DPU ([`super::vf_link`]) and a logged serial console.
//!
//! Elements are written in the order libvirt itself formats them (`virDomainDefFormat`), so
//! the XML reads like `virsh dumpxml`. libvirt 9.0's schema accepts `<domain>`'s children in
//! any order (checked: `<cputune>` after `<os>` validates); what it refuses is an element
//! under the wrong parent ("Extra element devices in interleave" for `<cputune>` inside
//! `<devices>`). The tests validate every rendered shape.

use std::fmt::Write;

use agent_common::DriverError;
use agent_common::port_names::guest_tap_name;
use serde::Deserialize;

use super::files::VmFiles;
use super::pcie_layout::{self, ControllerModel, PcieLayout};
use crate::model::{HostDescription, VmSpec};

/// 64-bit MMIO per GPU: an H100's BAR1 is 128 GiB, rounded up with its other BARs.
const MMIO64_PER_GPU_GIB: u64 = 128;
/// Locked memory above guest RAM for a VFIO VM: QEMU's own allocations and the IOMMU
/// mappings; libvirt's default guess (RAM + 1 GiB) is too tight with several devices.
const LOCKED_OVERHEAD_MIB: u64 = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    /// Hardware virtualisation; what production hosts run.
    Kvm,
    /// QEMU's TCG emulator: the build machines' nested setup, where KVM guests hang.
    Qemu,
}

/// How domains are written on this host, beyond the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSettings {
    pub domain_type: DomainType,
    /// Back CPU-only VMs with 1 GiB hugepages too. Off by default: a host without reserved
    /// hugepages (a build machine) could not start them. GPU VMs always use hugepages.
    pub cpu_only_hugepages: bool,
    /// Give the guest a virtio NIC per tenant port, a tap wired to the port's VF stand-in
    /// ([`super::vf_link`]). Off: the ports reach the guest as SR-IOV VFs (not rendered yet)
    /// or not at all.
    pub tap_nics: bool,
}

/// The domain XML for `spec` on `host`, its disk, config drive and console log at `files`.
pub fn render(
    spec: &VmSpec,
    host: &HostDescription,
    settings: &DomainSettings,
    files: &VmFiles,
) -> Result<String, DriverError> {
    let gpu_vm = !spec.gpu_module_ids.is_empty();
    let hugepages = gpu_vm || settings.cpu_only_hugepages;
    let pcie = pcie_layout::layout(spec, host)?;
    let cells = guest_cells(spec, host, hugepages)?;
    let memory_mib: u64 = cells.iter().map(|c| c.memory_mib).sum();

    let mut x = String::new();
    let kind = match settings.domain_type {
        DomainType::Kvm => "kvm",
        DomainType::Qemu => "qemu",
    };
    // `write!` to a String cannot fail.
    let _ = writeln!(x, "<domain type='{kind}'>");
    let _ = writeln!(x, "  <name>{}</name>", escape(&spec.vm_id));
    let _ = writeln!(x, "  <uuid>{}</uuid>", escape(&spec.vm_id));
    let title = spec.name.replace(['\n', '\r'], " ");
    let _ = writeln!(x, "  <title>{}</title>", escape(&title));
    let _ = writeln!(x, "  <memory unit='MiB'>{memory_mib}</memory>");
    if gpu_vm {
        // VFIO pins all guest RAM for DMA: the limit must cover it, or QEMU dies on start.
        let limit_kib = (memory_mib + LOCKED_OVERHEAD_MIB) * 1024;
        let _ = writeln!(x, "  <memtune><hard_limit unit='KiB'>{limit_kib}</hard_limit></memtune>");
    }
    if hugepages {
        x.push_str("  <memoryBacking>\n    <hugepages><page size='1' unit='G'/></hugepages>\n");
        if gpu_vm {
            x.push_str("    <locked/>\n");
        }
        x.push_str("  </memoryBacking>\n");
    }
    let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", spec.vcpu_pins.len());
    x.push_str("  <cputune>\n");
    for (vcpu, cpu) in spec.vcpu_pins.iter().enumerate() {
        let _ = writeln!(x, "    <vcpupin vcpu='{vcpu}' cpuset='{cpu}'/>");
    }
    let _ = writeln!(x, "    <emulatorpin cpuset='{}'/>", spec.emulator_cpu);
    x.push_str("  </cputune>\n");
    x.push_str("  <numatune>\n");
    let _ = writeln!(x, "    <memory mode='strict' nodeset='{}'/>", join(&spec.numa_nodes));
    for (cell, node) in spec.numa_nodes.iter().enumerate() {
        let _ = writeln!(x, "    <memnode cellid='{cell}' mode='strict' nodeset='{node}'/>");
    }
    x.push_str("  </numatune>\n");
    x.push_str("  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n");
    x.push_str("    <boot dev='hd'/>\n  </os>\n");
    x.push_str("  <features><acpi/><apic/></features>\n");
    render_cpu(&mut x, spec, settings.domain_type, &cells);
    x.push_str("  <clock offset='utc'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n");
    x.push_str("  <on_crash>destroy</on_crash>\n");
    x.push_str("  <devices>\n");
    render_disks(&mut x, files);
    render_pci(&mut x, spec, &pcie);
    if settings.tap_nics {
        render_tap_nics(&mut x, spec);
    }
    render_console(&mut x, files);
    if gpu_vm {
        // Ballooning cannot reclaim locked, pinned memory; the device would only mislead.
        x.push_str("    <memballoon model='none'/>\n");
    }
    x.push_str("  </devices>\n</domain>\n");
    Ok(x)
}

/// A guest NUMA cell: host node `spec.numa_nodes[id]`, its vCPUs and memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCell {
    pub vcpus: Vec<u32>,
    pub memory_mib: u64,
}

/// vCPUs go to the cell of their pinned CPU's node; memory is split evenly, in whole GiB
/// when hugepages back it (QEMU refuses a cell that is not a multiple of the page size).
fn guest_cells(
    spec: &VmSpec,
    host: &HostDescription,
    hugepages: bool,
) -> Result<Vec<GuestCell>, DriverError> {
    let mut cells: Vec<GuestCell> =
        spec.numa_nodes.iter().map(|_| GuestCell { vcpus: Vec::new(), memory_mib: 0 }).collect();
    for (vcpu, cpu) in spec.vcpu_pins.iter().enumerate() {
        let node = host.numa_node_of_cpu(*cpu).ok_or_else(|| {
            DriverError::FailedPrecondition(format!(
                "vCPU {vcpu} is pinned on CPU {cpu}, which this host does not have"
            ))
        })?;
        let cell = spec.numa_nodes.iter().position(|n| *n == node).ok_or_else(|| {
            DriverError::FailedPrecondition(format!(
                "vCPU {vcpu} is pinned on CPU {cpu} of NUMA node {node}, which the spec's \
                 numa_nodes {:?} do not list",
                spec.numa_nodes
            ))
        })?;
        cells[cell].vcpus.push(vcpu as u32);
    }
    if let Some(node) = cells.iter().position(|c| c.vcpus.is_empty()) {
        // A memory-only guest cell is legal libvirt but confuses guests' schedulers; the
        // allocator never asks for one, so refuse rather than guess.
        return Err(DriverError::FailedPrecondition(format!(
            "no vCPU is pinned on NUMA node {}; pin at least one vCPU on every listed node",
            spec.numa_nodes[node]
        )));
    }
    let unit = if hugepages { 1024 } else { 1 };
    let units = spec.memory_mib.div_ceil(unit);
    let count = cells.len() as u64;
    for (i, cell) in cells.iter_mut().enumerate() {
        let share = units / count + u64::from((i as u64) < units % count);
        cell.memory_mib = share * unit;
    }
    Ok(cells)
}

fn render_cpu(x: &mut String, spec: &VmSpec, domain_type: DomainType, cells: &[GuestCell]) {
    // TCG cannot pass the host CPU through; `maximum` is every feature TCG emulates.
    let mode = match domain_type {
        DomainType::Kvm => "mode='host-passthrough' check='none'",
        DomainType::Qemu => "mode='maximum'",
    };
    let vcpus = spec.vcpu_pins.len();
    // A socket per cell when the cells are even, so the guest sees the host's shape.
    let even = cells.iter().all(|c| c.vcpus.len() * cells.len() == vcpus);
    let sockets = if even { cells.len() } else { 1 };
    let _ = writeln!(x, "  <cpu {mode} migratable='off'>");
    let _ = writeln!(
        x,
        "    <topology sockets='{sockets}' dies='1' cores='{}' threads='1'/>",
        vcpus / sockets
    );
    x.push_str("    <numa>\n");
    for (id, cell) in cells.iter().enumerate() {
        let _ = writeln!(
            x,
            "      <cell id='{id}' cpus='{}' memory='{}' unit='MiB'/>",
            join(&cell.vcpus),
            cell.memory_mib
        );
    }
    x.push_str("    </numa>\n  </cpu>\n");
}

fn render_disks(x: &mut String, files: &VmFiles) {
    x.push_str("    <disk type='file' device='disk'>\n");
    x.push_str("      <driver name='qemu' type='qcow2' discard='unmap'/>\n");
    let _ = writeln!(x, "      <source file='{}'/>", escape(&files.overlay.to_string_lossy()));
    x.push_str("      <target dev='vda' bus='virtio'/>\n    </disk>\n");
    // NoCloud reads the ISO labelled `cidata`; SATA because every initramfs has ahci.
    x.push_str("    <disk type='file' device='cdrom'>\n");
    x.push_str("      <driver name='qemu' type='raw'/>\n");
    let _ = writeln!(x, "      <source file='{}'/>", escape(&files.config_drive.to_string_lossy()));
    x.push_str("      <target dev='sda' bus='sata'/>\n      <readonly/>\n    </disk>\n");
}

fn render_pci(x: &mut String, spec: &VmSpec, pcie: &PcieLayout) {
    let gpus = spec.gpu_module_ids.len() as u64;
    x.push_str("    <controller type='pci' index='0' model='pcie-root'>\n");
    if gpus > 0 {
        let kib = gpus * MMIO64_PER_GPU_GIB * 1024 * 1024;
        let _ = writeln!(x, "      <pcihole64 unit='KiB'>{kib}</pcihole64>");
    }
    x.push_str("    </controller>\n");
    for c in &pcie.controllers {
        let model = match c.model {
            ControllerModel::ExpanderBus { .. } => "pcie-expander-bus",
            ControllerModel::RootPort => "pcie-root-port",
            ControllerModel::SwitchUpstreamPort => "pcie-switch-upstream-port",
            ControllerModel::SwitchDownstreamPort => "pcie-switch-downstream-port",
        };
        let _ = writeln!(x, "    <controller type='pci' index='{}' model='{model}'>", c.index);
        match c.model {
            ControllerModel::ExpanderBus { cell, bus_nr } => {
                x.push_str("      <model name='pxb-pcie'/>\n");
                let _ = writeln!(x, "      <target busNr='{bus_nr}'><node>{cell}</node></target>");
            }
            ControllerModel::RootPort | ControllerModel::SwitchDownstreamPort => {
                let _ = writeln!(x, "      <target chassis='{}' port='{:#x}'/>", c.index, c.slot);
            }
            ControllerModel::SwitchUpstreamPort => {}
        }
        let _ = writeln!(x, "      {}", guest_address(c.parent_bus, c.slot));
        x.push_str("    </controller>\n");
    }
    for dev in &pcie.hostdevs {
        let h = dev.host;
        x.push_str("    <hostdev mode='subsystem' type='pci' managed='yes'>\n");
        x.push_str("      <driver name='vfio'/>\n");
        let _ = writeln!(
            x,
            "      <source><address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' \
             function='{:#x}'/></source>",
            h.domain, h.bus, h.slot, h.function
        );
        let _ = writeln!(x, "      {}", guest_address(dev.guest_bus, 0));
        x.push_str("    </hostdev>\n");
    }
}

fn guest_address(bus: u32, slot: u32) -> String {
    format!(
        "<address type='pci' domain='0x0000' bus='{bus:#04x}' slot='{slot:#04x}' function='0x0'/>"
    )
}

fn render_tap_nics(x: &mut String, spec: &VmSpec) {
    for nic in &spec.nics {
        x.push_str("    <interface type='ethernet'>\n");
        let _ = writeln!(x, "      <mac address='{}'/>", escape(&nic.mac));
        let _ = writeln!(x, "      <target dev='{}'/>", guest_tap_name(&nic.port_id));
        x.push_str("      <model type='virtio'/>\n    </interface>\n");
    }
}

fn render_console(x: &mut String, files: &VmFiles) {
    // The log keeps what the guest printed on ttyS0 after the pty closes, for read-back.
    x.push_str("    <serial type='pty'>\n");
    let _ = writeln!(
        x,
        "      <log file='{}' append='off'/>",
        escape(&files.console_log.to_string_lossy())
    );
    x.push_str("      <target type='isa-serial' port='0'><model name='isa-serial'/></target>\n");
    x.push_str("    </serial>\n");
    x.push_str("    <console type='pty'><target type='serial' port='0'/></console>\n");
}

fn join(values: &[u32]) -> String {
    values.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Escapes text for an XML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
