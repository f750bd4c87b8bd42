//! [`SimDpuDriver`]: a simulated BlueField DPU. Ports are held in memory and take
//! `apply_delay` to program, like a real VF/VXLAN/nftables update. It enforces the port limit
//! and refuses a MAC or IP already used on the same VNI, as the bridge would misbehave with
//! duplicates. The handle (this type; clones share one DPU) exposes the fault plan.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::info;

use agent_common::store::{Resource, Store};
use agent_common::watch::Subscription;
use agent_common::{
    DriverError, EnsureAction, EventStream, FaultPlan, lock, snapshot_then_changes,
};

use super::DpuDriver;
use crate::model::{DpuDescription, PortSpec, PortState, PortStatus};

/// The operations faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DpuOp {
    GetInventory,
    EnsurePort,
    RemovePort,
    Watch,
}

impl fmt::Display for DpuOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DpuOp::GetInventory => "get_inventory",
            DpuOp::EnsurePort => "ensure_port",
            DpuOp::RemovePort => "remove_port",
            DpuOp::Watch => "watch",
        })
    }
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

/// A simulated DPU. Cloning gives another handle to the same DPU.
#[derive(Clone)]
pub struct SimDpuDriver {
    inner: Arc<Inner>,
}

struct Inner {
    description: DpuDescription,
    options: SimDpuOptions,
    faults: FaultPlan<DpuOp>,
    ports: Mutex<Store<PortSpec>>,
}

impl Resource for PortSpec {
    type Status = PortStatus;
    const KIND: &'static str = "port";

    fn id(&self) -> &str {
        &self.port_id
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn same_as(&self, other: &Self) -> bool {
        PortSpec::same_as(self, other)
    }

    fn ready(&self) -> PortStatus {
        PortStatus {
            port_id: self.port_id.clone(),
            state: PortState::Ready,
            generation: self.generation,
            message: String::new(),
        }
    }

    fn removed(id: &str, generation: u64) -> PortStatus {
        PortStatus {
            port_id: id.to_owned(),
            state: PortState::Removed,
            generation,
            message: String::new(),
        }
    }
}

impl fmt::Debug for SimDpuDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDpuDriver")
            .field("dpu_id", &self.inner.description.dpu_id)
            .finish_non_exhaustive()
    }
}

impl SimDpuDriver {
    pub fn new(description: DpuDescription, options: SimDpuOptions) -> Self {
        let ports = Mutex::new(Store::new(options.event_capacity));
        SimDpuDriver {
            inner: Arc::new(Inner { description, options, faults: FaultPlan::new(), ports }),
        }
    }

    pub fn dpu_id(&self) -> &str {
        &self.inner.description.dpu_id
    }

    pub fn description(&self) -> &DpuDescription {
        &self.inner.description
    }

    /// This DPU's fault plan; rules take effect on the next call.
    pub fn faults(&self) -> &FaultPlan<DpuOp> {
        &self.inner.faults
    }

    /// The spec of a port this DPU holds.
    pub fn port(&self, port_id: &str) -> Option<PortSpec> {
        lock(&self.inner.ports).get(port_id).cloned()
    }

    pub fn port_count(&self) -> usize {
        lock(&self.inner.ports).len()
    }

    /// Ends every watch stream and refuses new ones (agent shutdown).
    pub fn shutdown(&self) {
        lock(&self.inner.ports).close();
    }

    async fn apply_latency(&self) {
        if !self.inner.options.apply_delay.is_zero() {
            tokio::time::sleep(self.inner.options.apply_delay).await;
        }
    }
}

impl Inner {
    fn subscribe(&self) -> Option<Subscription<PortStatus>> {
        lock(&self.ports).subscribe()
    }
}

/// Refuses a MAC or IP another port already uses on the same VNI.
fn check_addresses(ports: &Store<PortSpec>, spec: &PortSpec) -> Result<(), DriverError> {
    let same_vni = ports.specs().filter(|p| p.port_id != spec.port_id && p.vni == spec.vni);
    for other in same_vni {
        if other.mac == spec.mac {
            return Err(DriverError::FailedPrecondition(format!(
                "MAC {} is already used by port {} on VNI {}; give each port its own MAC",
                spec.mac, other.port_id, spec.vni
            )));
        }
        if other.ip == spec.ip {
            return Err(DriverError::FailedPrecondition(format!(
                "IP {} is already used by port {} on VNI {}; give each port its own address",
                spec.ip, other.port_id, spec.vni
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl DpuDriver for SimDpuDriver {
    async fn inventory(&self) -> Result<DpuDescription, DriverError> {
        self.inner.faults.check(DpuOp::GetInventory).await?;
        Ok(self.inner.description.clone())
    }

    async fn port_ensure(&self, spec: PortSpec) -> Result<PortStatus, DriverError> {
        self.inner.faults.check(DpuOp::EnsurePort).await?;
        self.apply_latency().await;
        let mut ports = lock(&self.inner.ports);
        match ports.decide(&spec)? {
            EnsureAction::Unchanged => return Ok(spec.ready()),
            EnsureAction::Create => {
                let max = self.inner.description.max_ports;
                if ports.len() >= max as usize {
                    return Err(DriverError::ResourceExhausted(format!(
                        "DPU {} already holds its maximum of {max} tenant ports; remove a port \
                         or place this one on another DPU",
                        self.dpu_id()
                    )));
                }
            }
            EnsureAction::Replace => {}
        }
        check_addresses(&ports, &spec)?;
        info!(dpu_id = %self.dpu_id(), port_id = %spec.port_id, vni = spec.vni,
              generation = spec.generation, "port ready");
        Ok(ports.apply(spec))
    }

    async fn port_remove(&self, port_id: &str, generation: u64) -> Result<PortStatus, DriverError> {
        self.inner.faults.check(DpuOp::RemovePort).await?;
        self.apply_latency().await;
        let (status, was_held) = lock(&self.inner.ports).remove(port_id, generation);
        if was_held {
            info!(dpu_id = %self.dpu_id(), port_id, "port removed");
        }
        Ok(status)
    }

    async fn watch(&self) -> Result<EventStream<PortStatus>, DriverError> {
        self.inner.faults.check(DpuOp::Watch).await?;
        let weak = Arc::downgrade(&self.inner);
        snapshot_then_changes(move || weak.upgrade()?.subscribe()).ok_or_else(|| {
            DriverError::Unavailable(format!(
                "DPU agent {} is shutting down; reconnect once it is back",
                self.dpu_id()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Protocol, SecurityRule};
    use futures::StreamExt;

    fn dpu(max_ports: u32) -> SimDpuDriver {
        SimDpuDriver::new(
            DpuDescription {
                dpu_id: "su1-h01-dpu0".into(),
                host_id: "su1-h01".into(),
                model: "BlueField-3 B3220".into(),
                pci_address: "0000:0b:00.0".into(),
                vtep_ip: "10.200.0.1".into(),
                max_ports,
            },
            SimDpuOptions { apply_delay: Duration::ZERO, event_capacity: 16 },
        )
    }

    fn port(n: u8) -> PortSpec {
        PortSpec {
            port_id: format!("00000000-0000-4000-8000-0000000000{n:02x}"),
            vm_id: "00000000-0000-4000-8000-00000000000a".into(),
            generation: 1,
            vni: 10_001,
            mac: format!("02:00:00:00:00:{n:02x}"),
            ip: format!("10.0.0.{n}").parse().expect("ip"),
            rules: vec![SecurityRule {
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
                cidr: agent_common::validate::cidr("cidr", "0.0.0.0/0").expect("cidr"),
            }],
        }
    }

    #[tokio::test]
    async fn test_ensure_is_idempotent_and_generation_checked() {
        let dpu = dpu(8);
        let first = dpu.port_ensure(port(1)).await.expect("ensure");
        assert_eq!(first.state, PortState::Ready);
        assert_eq!(dpu.port_ensure(port(1)).await.expect("again"), first);
        assert_eq!(dpu.port_count(), 1);

        let changed = PortSpec { vni: 10_002, ..port(1) };
        let err = dpu.port_ensure(changed.clone()).await.expect_err("same gen");
        assert!(matches!(err, DriverError::FailedPrecondition(_)));
        let newer = PortSpec { generation: 2, ..changed };
        assert_eq!(dpu.port_ensure(newer).await.expect("gen 2").generation, 2);
        let stale = dpu.port_ensure(port(1)).await.expect_err("stale");
        assert!(stale.to_string().contains("generation 2"), "{stale}");
        assert_eq!(dpu.port(&port(1).port_id).map(|p| p.vni), Some(10_002));
    }

    #[tokio::test]
    async fn test_max_ports_and_duplicate_addresses() {
        let dpu = dpu(2);
        dpu.port_ensure(port(1)).await.expect("1");
        let dup_mac = PortSpec { mac: port(1).mac, ..port(2) };
        let err = dpu.port_ensure(dup_mac).await.expect_err("dup mac");
        assert!(err.to_string().contains("MAC 02:00:00:00:00:01"), "{err}");
        let dup_ip = PortSpec { ip: port(1).ip, ..port(2) };
        assert!(dpu.port_ensure(dup_ip).await.is_err());
        // The same MAC on another VNI is another L2 domain: fine.
        let other_vni = PortSpec { mac: port(1).mac, vni: 20_000, ..port(2) };
        dpu.port_ensure(other_vni).await.expect("other VNI");
        let err = dpu.port_ensure(port(3)).await.expect_err("full");
        assert!(matches!(err, DriverError::ResourceExhausted(_)), "{err}");
        // Re-ensuring a held port never counts against the limit.
        dpu.port_ensure(port(1)).await.expect("held port");
        dpu.port_remove(&port(1).port_id, 0).await.expect("remove");
        dpu.port_ensure(port(3)).await.expect("room again");
    }

    #[tokio::test]
    async fn test_remove_and_watch() {
        let dpu = dpu(8);
        dpu.port_ensure(port(1)).await.expect("1");
        let mut events = dpu.watch().await.expect("watch");
        assert_eq!(events.next().await.map(|s| s.state), Some(PortState::Ready));
        let removed = dpu.port_remove(&port(1).port_id, 0).await.expect("remove");
        assert_eq!((removed.state, removed.generation), (PortState::Removed, 1));
        let absent = dpu.port_remove(&port(1).port_id, 0).await.expect("absent");
        assert_eq!((absent.state, absent.generation), (PortState::Removed, 0));
        dpu.port_ensure(port(2)).await.expect("2");
        assert_eq!(events.next().await, Some(removed));
        assert_eq!(events.next().await.map(|s| s.port_id), Some(port(2).port_id));
    }

    #[tokio::test]
    async fn test_a_removed_port_is_not_brought_back_by_a_late_ensure() {
        let dpu = dpu(8);
        dpu.port_remove(&port(1).port_id, 2).await.expect("remove first");
        let late = dpu.port_ensure(port(1)).await.expect_err("late retry");
        assert!(
            matches!(&late, DriverError::FailedPrecondition(m) if m.contains("removed at generation 2")),
            "{late}"
        );
        assert!(dpu.port(&port(1).port_id).is_none());
        dpu.port_ensure(PortSpec { generation: 3, ..port(1) }).await.expect("a newer decision");
    }
}
