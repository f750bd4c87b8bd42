//! The guest's PCIe tree, mirroring the host's: one `pcie-expander-bus` (pxb-pcie) per guest
//! NUMA cell, a `pcie-root-port` per host PCIe switch behind it, and behind that root port a
//! `pcie-switch-upstream-port` with one `pcie-switch-downstream-port` per device, so a GPU
//! and its paired SuperNIC share a switch in the guest as on the host (the guest driver's
//! P2P/GPUDirect RDMA path choice reads this). A device alone on its switch (an unpaired
//! NIC) sits directly on its root port. This layout validates against libvirt 9.0's schema
//! and defines with `VIR_DOMAIN_DEFINE_VALIDATE` (see the tests of `domain_xml`).

use agent_common::DriverError;

use super::pci::PciAddress;
use crate::model::{HostDescription, VmSpec};

/// First `pcie-root` slot used by expander buses: slots below are left to the devices
/// libvirt places itself (disk, cdrom, serial's root ports).
const FIRST_PXB_SLOT: u32 = 0x10;
/// Guest bus number of cell i's expander bus is `PXB_BUS_NR_BASE * (i + 1)`; each range of
/// 64 buses holds the at most 33 buses an expander with 8 switch pairs needs.
const PXB_BUS_NR_BASE: u32 = 0x40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerModel {
    /// `pcie-expander-bus` on `pcie-root`, in guest NUMA cell `cell`, first bus `bus_nr`.
    ExpanderBus {
        cell: u32,
        bus_nr: u32,
    },
    RootPort,
    SwitchUpstreamPort,
    SwitchDownstreamPort,
}

/// One PCI controller the domain declares; `index` is its guest bus number as libvirt
/// addresses it, and it plugs into controller `parent_bus` at `slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub index: u32,
    pub model: ControllerModel,
    pub parent_bus: u32,
    pub slot: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Gpu { module_id: u32 },
    Nic { index: u32 },
}

/// A host PCI function passed through, and the guest controller it plugs into (slot 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hostdev {
    pub kind: DeviceKind,
    pub host: PciAddress,
    pub guest_bus: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcieLayout {
    pub controllers: Vec<Controller>,
    pub hostdevs: Vec<Hostdev>,
}

/// Devices behind one host PCIe switch, in the guest cell of their NUMA node.
struct SwitchGroup {
    cell: u32,
    devices: Vec<(DeviceKind, PciAddress)>,
}

/// The layout for `spec` on `host`. Guest cell i is host node `spec.numa_nodes[i]`. Errors
/// (`FailedPrecondition`) mean the spec names hardware the host does not have, which the
/// manager's checks rule out.
pub fn layout(spec: &VmSpec, host: &HostDescription) -> Result<PcieLayout, DriverError> {
    let groups = switch_groups(spec, host)?;
    let mut out = PcieLayout::default();
    let mut next_index = 1;
    for cell in 0..spec.numa_nodes.len() as u32 {
        let in_cell: Vec<&SwitchGroup> = groups.iter().filter(|g| g.cell == cell).collect();
        if in_cell.is_empty() {
            continue;
        }
        let pxb = next_index;
        next_index += 1;
        out.controllers.push(Controller {
            index: pxb,
            model: ControllerModel::ExpanderBus { cell, bus_nr: PXB_BUS_NR_BASE * (cell + 1) },
            parent_bus: 0,
            slot: FIRST_PXB_SLOT + cell,
        });
        for (slot, group) in in_cell.into_iter().enumerate() {
            let root_port = next_index;
            next_index += 1;
            out.controllers.push(Controller {
                index: root_port,
                model: ControllerModel::RootPort,
                parent_bus: pxb,
                slot: slot as u32,
            });
            if let [(kind, host)] = group.devices.as_slice() {
                out.hostdevs.push(Hostdev { kind: *kind, host: *host, guest_bus: root_port });
                continue;
            }
            let upstream = next_index;
            next_index += 1;
            out.controllers.push(Controller {
                index: upstream,
                model: ControllerModel::SwitchUpstreamPort,
                parent_bus: root_port,
                slot: 0,
            });
            for (slot, (kind, host)) in group.devices.iter().enumerate() {
                let downstream = next_index;
                next_index += 1;
                out.controllers.push(Controller {
                    index: downstream,
                    model: ControllerModel::SwitchDownstreamPort,
                    parent_bus: upstream,
                    slot: slot as u32,
                });
                out.hostdevs.push(Hostdev { kind: *kind, host: *host, guest_bus: downstream });
            }
        }
    }
    Ok(out)
}

/// Groups the spec's GPUs with the spec's NICs behind the same host switch; NICs without a
/// GPU of the spec on their switch get a group of their own.
fn switch_groups(spec: &VmSpec, host: &HostDescription) -> Result<Vec<SwitchGroup>, DriverError> {
    let missing = |what: String| {
        DriverError::FailedPrecondition(format!(
            "{what} is not in this host's inventory; the spec does not fit this host"
        ))
    };
    let cell_of = |node: u32, what: &str| {
        spec.numa_nodes.iter().position(|n| *n == node).map(|p| p as u32).ok_or_else(|| {
            DriverError::FailedPrecondition(format!(
                "{what} is on NUMA node {node}, which the spec's numa_nodes {:?} do not list; \
                 give the VM memory on its devices' nodes",
                spec.numa_nodes
            ))
        })
    };
    let mut nics = Vec::new();
    for index in &spec.nic_indices {
        nics.push(host.nic(*index).ok_or_else(|| missing(format!("NIC {index}")))?);
    }
    let mut groups = Vec::new();
    let mut paired = vec![false; nics.len()];
    for module_id in &spec.gpu_module_ids {
        let gpu = host
            .gpu_by_module(*module_id)
            .ok_or_else(|| missing(format!("GPU module {module_id}")))?;
        let mut devices =
            vec![(DeviceKind::Gpu { module_id: *module_id }, PciAddress::parse(&gpu.pci_address)?)];
        for (i, nic) in nics.iter().enumerate() {
            if !paired[i] && nic.pcie_switch == gpu.pcie_switch {
                paired[i] = true;
                devices.push((
                    DeviceKind::Nic { index: nic.index },
                    PciAddress::parse(&nic.pci_address)?,
                ));
            }
        }
        let cell = cell_of(gpu.numa_node, &format!("GPU module {module_id}"))?;
        groups.push(SwitchGroup { cell, devices });
    }
    for (nic, _) in nics.iter().zip(&paired).filter(|(_, paired)| !**paired) {
        let cell = cell_of(nic.numa_node, &format!("NIC {}", nic.index))?;
        let devices =
            vec![(DeviceKind::Nic { index: nic.index }, PciAddress::parse(&nic.pci_address)?)];
        groups.push(SwitchGroup { cell, devices });
    }
    Ok(groups)
}
