//! [`SimDpuBackend`]: a simulated BlueField's device layer, in memory: attached VNIs, ports
//! and their rules. Programming or removing a port takes `apply_delay`, like a real
//! VF/VXLAN/nftables update.
//!
//! Counters: `rule_changes` counts the real rule replacements this backend was asked for.
//! The packet counts are **simulated traffic**, reported with `simulated` set: no packet
//! flows here, so each allowed rule is said to see [`SIM_PACKETS_PER_SEC`] packets a second
//! (of a size by protocol, see [`sim_packet_bytes`]) and each port's ingress a probe of
//! [`SIM_DROPS_PER_SEC`] packets a second that the default deny drops, counted from the
//! moment its rules were last replaced (as nftables restarts its counters then). Nothing is
//! ever spoofed. Deterministic: the same rules and elapsed time give the same counts.
//!
//! [`SimDpu`] is a simulated DPU as tests and the simulated fleet hold it: a [`DpuManager`]
//! over this backend wrapped in a [`FaultyBackend`], and its fault plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use agent_common::{DriverError, FaultPlan, lock};

use super::faulty::FaultyBackend;
use super::{DpuBackend, DpuOp};
use crate::manager::DpuManager;
use crate::model::{
    Counter, Direction, DpuDescription, PortSpec, PortTraffic, Protocol, SecurityRule,
};

/// Simulated packets a second each allowed rule lets through.
pub const SIM_PACKETS_PER_SEC: u64 = 10;
/// Simulated packets a second dropped at each port's ingress (nothing allowed them).
pub const SIM_DROPS_PER_SEC: u64 = 1;
/// The size of a simulated dropped probe (a bare TCP SYN in an Ethernet frame).
const SIM_DROP_BYTES: u64 = 60;

/// The size of a simulated packet of a rule's protocol.
pub fn sim_packet_bytes(protocol: Protocol) -> u64 {
    match protocol {
        Protocol::Tcp => 800,
        Protocol::Udp => 500,
        Protocol::Icmp => 84,
        Protocol::Any => 600,
    }
}

/// `per_sec` packets of `bytes` each over `elapsed`.
fn at_rate(per_sec: u64, bytes: u64, elapsed: Duration) -> Counter {
    let packets = u64::try_from(elapsed.as_millis().saturating_mul(u128::from(per_sec)) / 1000)
        .unwrap_or(u64::MAX);
    Counter { packets, bytes: packets.saturating_mul(bytes) }
}

#[derive(Clone, Debug)]
pub struct SimDpuOptions {
    /// How long programming or removing a port takes.
    pub apply_delay: Duration,
    /// How many events a watcher may fall behind before it is resynchronised.
    pub event_capacity: usize,
}

impl Default for SimDpuOptions {
    fn default() -> Self {
        SimDpuOptions { apply_delay: Duration::from_millis(5), event_capacity: 1024 }
    }
}

pub struct SimDpuBackend {
    description: DpuDescription,
    apply_delay: Duration,
    device: Mutex<Device>,
}

#[derive(Default)]
struct Device {
    vnis: BTreeSet<u32>,
    ports: BTreeMap<String, SimPort>,
}

struct SimPort {
    vni: u32,
    rules: Vec<SecurityRule>,
    /// When the rules were last replaced (or the port attached): counters start here.
    since: Instant,
    rule_changes: u64,
}

impl SimPort {
    /// The simulated traffic since `since` (see the module's documentation).
    fn traffic(&self, now: Instant) -> PortTraffic {
        let elapsed = now.saturating_duration_since(self.since);
        let mut traffic = PortTraffic {
            rule_changes: self.rule_changes,
            simulated: true,
            ..PortTraffic::default()
        };
        for rule in &self.rules {
            let count = at_rate(SIM_PACKETS_PER_SEC, sim_packet_bytes(rule.protocol), elapsed);
            let direction = match rule.direction {
                Direction::Ingress => &mut traffic.ingress,
                Direction::Egress => &mut traffic.egress,
            };
            direction.allowed.add(count);
            traffic.rules.push(count);
        }
        traffic.ingress.dropped = at_rate(SIM_DROPS_PER_SEC, SIM_DROP_BYTES, elapsed);
        traffic
    }
}

impl SimDpuBackend {
    pub fn new(description: DpuDescription, apply_delay: Duration) -> Self {
        SimDpuBackend { description, apply_delay, device: Mutex::new(Device::default()) }
    }

    async fn latency(&self) {
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
    }
}

#[async_trait]
impl DpuBackend for SimDpuBackend {
    async fn hardware(&self) -> Result<DpuDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn vni_attach(&self, vni: u32) -> Result<(), DriverError> {
        lock(&self.device).vnis.insert(vni);
        Ok(())
    }

    async fn vni_detach(&self, vni: u32) -> Result<(), DriverError> {
        lock(&self.device).vnis.remove(&vni);
        Ok(())
    }

    async fn port_attach(&self, spec: &PortSpec) -> Result<(), DriverError> {
        self.latency().await;
        let mut device = lock(&self.device);
        if !device.vnis.contains(&spec.vni) {
            return Err(DriverError::Internal(format!(
                "VNI {} has no bridge on this DPU; the manager must attach it first",
                spec.vni
            )));
        }
        match device.ports.get_mut(&spec.port_id) {
            Some(port) => port.vni = spec.vni,
            None => {
                let port = SimPort {
                    vni: spec.vni,
                    rules: Vec::new(),
                    since: Instant::now(),
                    rule_changes: 0,
                };
                device.ports.insert(spec.port_id.clone(), port);
            }
        }
        Ok(())
    }

    async fn port_detach(&self, port_id: &str) -> Result<(), DriverError> {
        self.latency().await;
        lock(&self.device).ports.remove(port_id);
        Ok(())
    }

    async fn rules_apply(&self, port_id: &str, rules: &[SecurityRule]) -> Result<(), DriverError> {
        match lock(&self.device).ports.get_mut(port_id) {
            Some(port) => {
                // Like nftables: the same rules again leave the counters running.
                if port.rules != rules {
                    port.rules = rules.to_vec();
                    port.since = Instant::now();
                    port.rule_changes += 1;
                }
                Ok(())
            }
            None => Err(DriverError::Internal(format!(
                "port {port_id} is not attached; the manager must attach it first"
            ))),
        }
    }

    async fn counters(&self, port_id: &str) -> Result<PortTraffic, DriverError> {
        match lock(&self.device).ports.get(port_id) {
            Some(port) => Ok(port.traffic(Instant::now())),
            None => Err(DriverError::NotFound(format!("port {port_id} is not attached here"))),
        }
    }
}

/// A simulated DPU: its manager over the sim backend, and that backend's fault plan.
/// Cloning gives another handle to the same DPU; it derefs to its [`DpuManager`].
#[derive(Clone)]
pub struct SimDpu {
    manager: DpuManager,
    faults: FaultPlan<DpuOp>,
}

impl SimDpu {
    pub fn new(description: DpuDescription, options: SimDpuOptions) -> Self {
        let faults = FaultPlan::new();
        let sim = SimDpuBackend::new(description.clone(), options.apply_delay);
        let backend = Arc::new(FaultyBackend::new(sim, faults.clone()));
        SimDpu { manager: DpuManager::new(description, backend, options.event_capacity), faults }
    }

    /// This DPU's fault plan; rules take effect on the next backend operation.
    pub fn faults(&self) -> &FaultPlan<DpuOp> {
        &self.faults
    }

    pub fn manager(&self) -> &DpuManager {
        &self.manager
    }
}

impl Deref for SimDpu {
    type Target = DpuManager;

    fn deref(&self) -> &DpuManager {
        &self.manager
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TrafficCounters;

    fn dpu() -> SimDpu {
        SimDpu::new(
            DpuDescription {
                dpu_id: "su1-h01-dpu0".into(),
                host_id: "su1-h01".into(),
                model: "BlueField-3 B3220".into(),
                pci_address: "0000:0b:00.0".into(),
                vtep_ip: "10.200.0.1".into(),
                max_ports: 8,
            },
            SimDpuOptions { apply_delay: Duration::ZERO, event_capacity: 16 },
        )
    }

    fn rule(direction: Direction, protocol: Protocol, ports: Option<(u16, u16)>) -> SecurityRule {
        let cidr = agent_common::validate::cidr("cidr", "0.0.0.0/0").expect("cidr");
        SecurityRule { direction, protocol, ports, cidr }
    }

    fn port(generation: u64, rules: Vec<SecurityRule>) -> PortSpec {
        PortSpec {
            port_id: "00000000-0000-4000-8000-000000000001".into(),
            vm_id: "00000000-0000-4000-8000-00000000000a".into(),
            gateway: None,
            public_ip: None,
            generation,
            vni: 10_001,
            mac: "02:00:00:00:00:01".into(),
            ip: "10.0.0.1".parse().expect("ip"),
            rules,
        }
    }

    fn c(packets: u64, bytes: u64) -> Counter {
        Counter { packets, bytes }
    }

    #[tokio::test(start_paused = true)]
    async fn test_simulated_traffic_grows_at_a_fixed_rate_per_allowed_rule() {
        let dpu = dpu();
        let rules = vec![
            rule(Direction::Ingress, Protocol::Tcp, Some((22, 22))),
            rule(Direction::Egress, Protocol::Any, None),
            rule(Direction::Ingress, Protocol::Icmp, None),
        ];
        let id = port(1, rules.clone()).port_id;
        dpu.port_ensure(port(1, rules.clone())).await.expect("ensure");
        let zero = dpu.port_counters(&id).await.expect("counters");
        assert_eq!(zero.generation, 1);
        assert_eq!(zero.traffic.rules, [c(0, 0); 3], "nothing counted before time passes");
        assert_eq!((zero.traffic.rule_changes, zero.traffic.simulated), (1, true));

        tokio::time::advance(Duration::from_secs(2)).await;
        let two = dpu.port_counters(&id).await.expect("counters").traffic;
        // 10 packets a second per rule: TCP 800 bytes, "any" 600, ICMP 84; 1 drop a second.
        assert_eq!(two.rules, [c(20, 16_000), c(20, 12_000), c(20, 1_680)]);
        assert_eq!(two.ingress, TrafficCounters { allowed: c(40, 17_680), dropped: c(2, 120) });
        assert_eq!(two.egress, TrafficCounters { allowed: c(20, 12_000), dropped: c(0, 0) });
        assert_eq!(two.spoofed, c(0, 0), "the simulated VM never spoofs");

        // A new generation with the same rules leaves the counters running.
        dpu.port_ensure(port(2, rules.clone())).await.expect("same rules");
        tokio::time::advance(Duration::from_secs(1)).await;
        let report = dpu.port_counters(&id).await.expect("counters");
        assert_eq!((report.generation, report.traffic.rule_changes), (2, 1));
        assert_eq!(report.traffic.rules[0], c(30, 24_000));

        // Replacing the rules restarts them (as nftables does) and counts the change.
        dpu.port_ensure(port(3, rules[..1].to_vec())).await.expect("fewer rules");
        let fresh = dpu.port_counters(&id).await.expect("counters").traffic;
        assert_eq!((fresh.rules, fresh.rule_changes), (vec![c(0, 0)], 2));
        tokio::time::advance(Duration::from_millis(500)).await;
        let half = dpu.port_counters(&id).await.expect("counters").traffic;
        assert_eq!(half.ingress.allowed, c(5, 4_000));
        assert_eq!(half.egress.allowed, c(0, 0), "no egress rule, no egress traffic");
    }

    #[tokio::test(start_paused = true)]
    async fn test_counters_of_an_unknown_or_removed_port_are_not_found() {
        let dpu = dpu();
        let id = port(1, vec![]).port_id;
        let err = dpu.port_counters(&id).await.expect_err("unknown");
        assert!(matches!(&err, DriverError::NotFound(m) if m.contains("holds no port")), "{err}");
        dpu.port_ensure(port(1, vec![])).await.expect("ensure");
        let empty = dpu.port_counters(&id).await.expect("counters").traffic;
        assert_eq!((empty.rules.len(), empty.rule_changes), (0, 0));
        dpu.port_remove(&id, 0).await.expect("remove");
        assert!(matches!(dpu.port_counters(&id).await, Err(DriverError::NotFound(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn test_a_failing_device_read_is_the_device_error() {
        let dpu = dpu();
        dpu.port_ensure(port(1, vec![])).await.expect("ensure");
        dpu.faults().fail_nth(DpuOp::Counters, 1);
        let id = port(1, vec![]).port_id;
        assert!(matches!(dpu.port_counters(&id).await, Err(DriverError::Injected(_))));
        assert!(dpu.port_counters(&id).await.is_ok(), "the next read works");
    }
}
