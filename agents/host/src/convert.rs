//! Proto ⇄ model conversions for the host agent. Decoding validates everything that can be
//! checked without the hardware, so the manager only ever sees well-formed requests.

use agent_common::{DriverError, validate};
use agent_proto::v1 as pb;

use std::net::{IpAddr, Ipv4Addr};

use crate::model::{
    FabricNic, GpuHealth, GpuStatus, GuestNic, HostEvent, HostInventory, PartitionStatus,
    PowerAction, VmSpec, VmState, VmStatus,
};

/// Decodes `EnsureVmRequest.spec`. Errors are `InvalidArgument` (the caller's fault).
pub fn vm_spec_from_proto(spec: Option<pb::VmSpec>) -> Result<VmSpec, DriverError> {
    let spec = spec.ok_or_else(|| {
        DriverError::InvalidArgument("EnsureVmRequest.spec is missing; send the VM spec".into())
    })?;
    let decoded = VmSpec {
        vm_id: validate::uuid("vm_id", &spec.vm_id)?,
        name: spec.name,
        generation: spec.generation,
        partition_id: spec.partition_id,
        gpu_module_ids: spec.gpu_module_ids,
        nic_indices: spec.nic_indices,
        vcpu_pins: spec.vcpu_pins,
        emulator_cpu: spec.emulator_cpu,
        numa_nodes: spec.numa_nodes,
        memory_mib: spec.memory_mib,
        disk_gib: spec.disk_gib,
        image: spec.image,
        hostname: spec.hostname,
        ssh_authorized_keys: spec.ssh_authorized_keys,
        user_data: spec.user_data,
        nics: spec.nics.into_iter().map(guest_nic_from_proto).collect::<Result<_, _>>()?,
        fabric_nics: spec
            .fabric_nics
            .into_iter()
            .map(fabric_nic_from_proto)
            .collect::<Result<_, _>>()?,
    };
    decoded.check_shape()?;
    Ok(decoded)
}

/// Decodes a `VmNic`: an IPv4 address within a prefix of 1 to 30 bits (room for the
/// network, the address and the broadcast), a gateway in the same network or none.
fn guest_nic_from_proto(nic: pb::VmNic) -> Result<GuestNic, DriverError> {
    let invalid = |m: String| DriverError::InvalidArgument(m);
    let port_id = validate::uuid("nics.port_id", &nic.port_id)?;
    let mac = validate::unicast_mac("nics.mac", &nic.mac)?;
    let (ip, prefix_len) = ipv4_with_prefix("nics", &nic.ip, nic.prefix_len)?;
    let gateway = match nic.gateway.as_str() {
        "" => None,
        text => {
            let inside = |g: Ipv4Addr| {
                let mask = u32::MAX << (32 - u32::from(prefix_len));
                u32::from(g) & mask == u32::from(ip) & mask
            };
            match validate::ip_address("nics.gateway", text) {
                Ok(IpAddr::V4(g)) if inside(g) => Some(g),
                _ => {
                    return Err(invalid(format!(
                        "nics.gateway {text:?} is not an IPv4 address in {ip}/{prefix_len}; send the subnet's gateway or none"
                    )));
                }
            }
        }
    };
    Ok(GuestNic { port_id, mac, ip, prefix_len, gateway })
}

/// Decodes a `FabricNic`: a MAC and an IPv4 address within a prefix, as a `VmNic`'s.
fn fabric_nic_from_proto(nic: pb::FabricNic) -> Result<FabricNic, DriverError> {
    let mac = validate::unicast_mac("fabric_nics.mac", &nic.mac)?;
    let (ip, prefix_len) = ipv4_with_prefix("fabric_nics", &nic.ip, nic.prefix_len)?;
    Ok(FabricNic { nic_index: nic.nic_index, mac, ip, prefix_len })
}

/// `<list>.ip` as an IPv4 address and `<list>.prefix_len` as 1 to 30 bits (room for the
/// network, the address and the broadcast).
fn ipv4_with_prefix(list: &str, ip: &str, prefix_len: u32) -> Result<(Ipv4Addr, u8), DriverError> {
    let invalid = |m: String| DriverError::InvalidArgument(m);
    let Ok(IpAddr::V4(address)) = validate::ip_address(&format!("{list}.ip"), ip) else {
        return Err(invalid(format!(
            "{list}.ip {ip:?} is not an IPv4 address; send one like 10.0.0.5"
        )));
    };
    let prefix =
        u8::try_from(prefix_len).ok().filter(|p| (1..=30).contains(p)).ok_or_else(|| {
            invalid(format!(
                "{list}.prefix_len {prefix_len} is not 1 to 30; send the subnet's prefix length"
            ))
        })?;
    Ok((address, prefix))
}

/// Decodes `RemoveVmRequest.vm_id` into the lowercase key the manager uses.
pub fn vm_id_from_proto(vm_id: &str) -> Result<String, DriverError> {
    validate::uuid("vm_id", vm_id)
}

/// Decodes `SetVmPowerRequest.action`: `InvalidArgument` for an unset or unknown action.
pub fn power_action_from_proto(action: i32) -> Result<PowerAction, DriverError> {
    match pb::VmPowerAction::try_from(action) {
        Ok(pb::VmPowerAction::Start) => Ok(PowerAction::Start),
        Ok(pb::VmPowerAction::Stop) => Ok(PowerAction::Stop),
        Ok(pb::VmPowerAction::Reboot) => Ok(PowerAction::Reboot),
        Ok(pb::VmPowerAction::PowerOff) => Ok(PowerAction::PowerOff),
        Ok(pb::VmPowerAction::Unspecified) | Err(_) => Err(DriverError::InvalidArgument(format!(
            "action {action} is not a power action; send START, STOP, REBOOT or POWER_OFF"
        ))),
    }
}

pub fn gpu_health_to_proto(health: GpuHealth) -> pb::GpuHealth {
    match health {
        GpuHealth::Ok => pb::GpuHealth::Ok,
        GpuHealth::Degraded => pb::GpuHealth::Degraded,
        GpuHealth::Failed => pb::GpuHealth::Failed,
    }
}

pub fn vm_state_to_proto(state: VmState) -> pb::VmState {
    match state {
        VmState::Provisioning => pb::VmState::Provisioning,
        VmState::Running => pb::VmState::Running,
        VmState::Stopping => pb::VmState::Stopping,
        VmState::Deleted => pb::VmState::Deleted,
        VmState::Failed => pb::VmState::Failed,
        VmState::ShuttingDown => pb::VmState::ShuttingDown,
        VmState::Stopped => pb::VmState::Stopped,
        VmState::Starting => pb::VmState::Starting,
        VmState::Rebooting => pb::VmState::Rebooting,
    }
}

/// The model state of a proto state; `None` for UNSPECIFIED or a value this agent does not
/// know.
pub fn vm_state_from_proto(state: i32) -> Option<VmState> {
    match pb::VmState::try_from(state).ok()? {
        pb::VmState::Unspecified => None,
        pb::VmState::Provisioning => Some(VmState::Provisioning),
        pb::VmState::Running => Some(VmState::Running),
        pb::VmState::Stopping => Some(VmState::Stopping),
        pb::VmState::Deleted => Some(VmState::Deleted),
        pb::VmState::Failed => Some(VmState::Failed),
        pb::VmState::ShuttingDown => Some(VmState::ShuttingDown),
        pb::VmState::Stopped => Some(VmState::Stopped),
        pb::VmState::Starting => Some(VmState::Starting),
        pb::VmState::Rebooting => Some(VmState::Rebooting),
    }
}

pub fn vm_status_to_proto(status: &VmStatus) -> pb::VmStatus {
    pb::VmStatus {
        vm_id: status.vm_id.clone(),
        state: vm_state_to_proto(status.state).into(),
        generation: status.generation,
        message: status.message.clone(),
    }
}

pub fn partition_status_to_proto(status: &PartitionStatus) -> pb::PartitionStatus {
    pb::PartitionStatus {
        partition_id: status.partition_id,
        active: status.active,
        vm_id: status.vm_id.clone(),
    }
}

pub fn gpu_status_to_proto(status: &GpuStatus) -> pb::GpuStatus {
    pb::GpuStatus {
        module_id: status.module_id,
        health: gpu_health_to_proto(status.health).into(),
        message: status.message.clone(),
    }
}

pub fn host_event_to_proto(event: &HostEvent) -> pb::HostEvent {
    let event = match event {
        HostEvent::Vm(vm) => pb::host_event::Event::Vm(vm_status_to_proto(vm)),
        HostEvent::Gpu(gpu) => pb::host_event::Event::Gpu(gpu_status_to_proto(gpu)),
        HostEvent::SnapshotEnd => pb::host_event::Event::SnapshotEnd(pb::SnapshotEnd {}),
    };
    pb::HostEvent { event: Some(event) }
}

pub fn inventory_to_proto(inventory: &HostInventory, agent_version: &str) -> pb::HostInventory {
    let host = &inventory.description;
    pb::HostInventory {
        host_id: host.host_id.clone(),
        system_model: host.system_model.clone(),
        scalable_unit: host.scalable_unit,
        numa_nodes: host
            .numa_nodes
            .iter()
            .map(|node| pb::NumaNode {
                id: node.id,
                cpus: node.cpus.clone(),
                memory_mib: node.memory_mib,
                hugepages_1g_total: node.hugepages_1g_total,
                hugepages_1g_free: inventory.hugepages_1g_free.get(&node.id).copied().unwrap_or(0),
            })
            .collect(),
        gpus: host
            .gpus
            .iter()
            .map(|gpu| {
                let health = inventory
                    .gpu_health
                    .get(&gpu.module_id)
                    .map_or(gpu.health, |(health, _)| *health);
                pb::Gpu {
                    index: gpu.index,
                    module_id: gpu.module_id,
                    uuid: gpu.uuid.clone(),
                    model: gpu.model.clone(),
                    memory_mib: gpu.memory_mib,
                    pci_address: gpu.pci_address.clone(),
                    numa_node: gpu.numa_node,
                    pcie_switch: gpu.pcie_switch.clone(),
                    health: gpu_health_to_proto(health).into(),
                }
            })
            .collect(),
        nics: host
            .nics
            .iter()
            .map(|nic| pb::Nic {
                index: nic.index,
                name: nic.name.clone(),
                pci_address: nic.pci_address.clone(),
                numa_node: nic.numa_node,
                pcie_switch: nic.pcie_switch.clone(),
                rail: nic.rail,
                leaf_switch_id: nic.leaf_switch_id.clone(),
                speed_gbps: nic.speed_gbps,
                mac: nic.mac.clone(),
            })
            .collect(),
        dpu_ids: host.dpu_ids.clone(),
        partitions: host
            .partitions
            .iter()
            .map(|partition| pb::Partition {
                id: partition.id,
                module_ids: partition.module_ids.clone(),
                active: inventory.active_partitions.contains(&partition.id),
            })
            .collect(),
        agent_version: agent_version.to_owned(),
        images: inventory.images.clone().unwrap_or_default(),
        any_image: inventory.images.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_spec() -> pb::VmSpec {
        pb::VmSpec {
            vm_id: "00000000-0000-4000-8000-00000000000A".into(),
            name: "train-1".into(),
            generation: 1,
            partition_id: Some(3),
            gpu_module_ids: vec![1, 3],
            nic_indices: vec![0, 2],
            vcpu_pins: vec![0, 1],
            emulator_cpu: 2,
            numa_nodes: vec![0],
            memory_mib: 4096,
            disk_gib: 50,
            image: "ubuntu-24.04".into(),
            hostname: String::new(),
            ssh_authorized_keys: vec![],
            user_data: String::new(),
            nics: vec![pb::VmNic {
                port_id: "0190C2F4-7A1B-7C3D-8E9F-0123456789AB".into(),
                mac: "52:54:00:AA:00:10".into(),
                ip: "10.1.0.10".into(),
                prefix_len: 24,
                gateway: "10.1.0.1".into(),
            }],
            fabric_nics: vec![pb::FabricNic {
                nic_index: 2,
                mac: "02:5A:00:00:01:02".into(),
                ip: "100.64.32.2".into(),
                prefix_len: 20,
            }],
        }
    }

    #[test]
    fn test_decode_normalises_id() {
        let spec = vm_spec_from_proto(Some(proto_spec())).expect("valid");
        assert_eq!(spec.vm_id, "00000000-0000-4000-8000-00000000000a");
        assert_eq!(spec.partition_id, Some(3));
    }

    #[test]
    fn test_decode_refuses_bad_requests() {
        assert!(vm_spec_from_proto(None).is_err());
        let bad_id = pb::VmSpec { vm_id: "vm-1".into(), ..proto_spec() };
        let err = vm_spec_from_proto(Some(bad_id)).expect_err("bad id");
        assert!(err.to_string().starts_with("vm_id \"vm-1\" is not a UUID"));
        let no_gen = pb::VmSpec { generation: 0, ..proto_spec() };
        assert!(vm_spec_from_proto(Some(no_gen)).is_err());
    }

    #[test]
    fn test_decode_checks_fabric_nics() {
        let spec = vm_spec_from_proto(Some(proto_spec())).expect("valid");
        assert_eq!(spec.fabric_nics[0].mac, "02:5a:00:00:01:02");
        assert_eq!(
            (spec.fabric_nics[0].ip, spec.fabric_nics[0].prefix_len),
            ([100, 64, 32, 2].into(), 20)
        );
        let nic = proto_spec().fabric_nics[0].clone();
        let cases = [
            (pb::FabricNic { ip: "100.64.32".into(), ..nic.clone() }, "fabric_nics.ip"),
            (pb::FabricNic { prefix_len: 0, ..nic.clone() }, "fabric_nics.prefix_len"),
            (pb::FabricNic { mac: String::new(), ..nic.clone() }, "fabric_nics.mac"),
            (pb::FabricNic { nic_index: 1, ..nic.clone() }, "fabric_nics names NIC 1"),
        ];
        for (bad, expected) in cases {
            let spec = pb::VmSpec { fabric_nics: vec![bad], ..proto_spec() };
            let err = vm_spec_from_proto(Some(spec)).expect_err(expected);
            assert!(err.to_string().starts_with(expected), "{err}");
        }
        let twice = pb::VmSpec { fabric_nics: vec![nic.clone(), nic], ..proto_spec() };
        assert!(vm_spec_from_proto(Some(twice)).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn test_decode_checks_nics() {
        let spec = vm_spec_from_proto(Some(proto_spec())).expect("valid");
        assert_eq!(spec.nics[0].port_id, "0190c2f4-7a1b-7c3d-8e9f-0123456789ab");
        assert_eq!(spec.nics[0].mac, "52:54:00:aa:00:10");
        assert_eq!(spec.nics[0].gateway, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let nic = proto_spec().nics[0].clone();
        let cases = [
            (pb::VmNic { ip: "fd00::5".into(), ..nic.clone() }, "nics.ip"),
            (pb::VmNic { prefix_len: 31, ..nic.clone() }, "nics.prefix_len"),
            (pb::VmNic { gateway: "10.2.0.1".into(), ..nic.clone() }, "nics.gateway"),
            (pb::VmNic { mac: "01:00:5e:00:00:01".into(), ..nic.clone() }, "nics.mac"),
            (pb::VmNic { port_id: "p1".into(), ..nic.clone() }, "nics.port_id"),
        ];
        for (bad, field) in cases {
            let spec = pb::VmSpec { nics: vec![bad], ..proto_spec() };
            let err = vm_spec_from_proto(Some(spec)).expect_err(field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
        let twice = pb::VmSpec { nics: vec![nic.clone(), nic], ..proto_spec() };
        assert!(vm_spec_from_proto(Some(twice)).unwrap_err().to_string().contains("twice"));
        let none = pb::VmSpec {
            nics: vec![pb::VmNic { gateway: String::new(), ..proto_spec().nics[0].clone() }],
            ..proto_spec()
        };
        assert_eq!(vm_spec_from_proto(Some(none)).unwrap().nics[0].gateway, None);
    }

    #[test]
    fn test_vm_states_round_trip() {
        use VmState::*;
        let all = [
            Provisioning,
            Running,
            Stopping,
            Deleted,
            Failed,
            ShuttingDown,
            Stopped,
            Starting,
            Rebooting,
        ];
        for state in all {
            let wire = i32::from(vm_state_to_proto(state));
            assert_eq!(vm_state_from_proto(wire), Some(state), "{state}");
            assert_eq!(vm_state_to_proto(state).as_str_name(), format!("VM_STATE_{state}"));
        }
        assert_eq!(vm_state_from_proto(0), None);
        assert_eq!(vm_state_from_proto(99), None);
    }

    #[test]
    fn test_power_actions_decode() {
        let decode = |a: pb::VmPowerAction| power_action_from_proto(a.into());
        assert_eq!(decode(pb::VmPowerAction::Start), Ok(PowerAction::Start));
        assert_eq!(decode(pb::VmPowerAction::Stop), Ok(PowerAction::Stop));
        assert_eq!(decode(pb::VmPowerAction::Reboot), Ok(PowerAction::Reboot));
        assert_eq!(decode(pb::VmPowerAction::PowerOff), Ok(PowerAction::PowerOff));
        for bad in [0, 17] {
            let err = power_action_from_proto(bad).expect_err("not an action");
            assert!(matches!(err, DriverError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains("send START, STOP, REBOOT or POWER_OFF"), "{err}");
        }
    }

    #[test]
    fn test_events_encode() {
        let event = host_event_to_proto(&HostEvent::Vm(VmStatus {
            vm_id: "a".into(),
            state: VmState::Running,
            generation: 4,
            message: String::new(),
        }));
        let Some(pb::host_event::Event::Vm(vm)) = event.event else {
            panic!("expected a VM event");
        };
        assert_eq!(vm.state(), pb::VmState::Running);
        assert_eq!(vm.generation, 4);
    }
}
