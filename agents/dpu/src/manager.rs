//! [`DpuManager`]: the DPU agent's domain logic, the same over every [`DpuBackend`]: the
//! desired ports (spec and generation, tombstones of removed ones, via
//! [`agent_common::store`]), the port limit, no MAC or IP twice on one VNI (the bridge would
//! misbehave with duplicates), which VNIs are needed, and the watch streams. It tells the
//! backend what to do and never holds its lock across a backend call: ensure attaches the
//! VNI, the port and its rules, then decides again and records; remove detaches, records,
//! and detaches the VNI its last port left.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use agent_common::store::{Resource, Store};
use agent_common::watch::Subscription;
use agent_common::{DriverError, EnsureAction, EventStream, lock, snapshot_then_changes};

use crate::backend::DpuBackend;
use crate::model::{Counter, DpuDescription, PortCountersReport, PortSpec, PortState, PortStatus};

/// One DPU's manager. Cloning gives another handle to the same DPU.
#[derive(Clone)]
pub struct DpuManager {
    inner: Arc<Inner>,
}

struct Inner {
    description: DpuDescription,
    backend: Arc<dyn DpuBackend>,
    /// Random per manager: a restarted agent answers another (see `new_boot_id`).
    boot_id: String,
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

impl fmt::Debug for DpuManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpuManager")
            .field("dpu_id", &self.inner.description.dpu_id)
            .finish_non_exhaustive()
    }
}

impl DpuManager {
    /// A manager for the DPU `description` describes, holding no ports.
    pub fn new(
        description: DpuDescription,
        backend: Arc<dyn DpuBackend>,
        event_capacity: usize,
    ) -> Self {
        let ports = Mutex::new(Store::new(event_capacity));
        DpuManager {
            inner: Arc::new(Inner {
                description,
                backend,
                boot_id: agent_common::new_boot_id(),
                ports,
            }),
        }
    }

    pub fn dpu_id(&self) -> &str {
        &self.inner.description.dpu_id
    }

    pub fn description(&self) -> &DpuDescription {
        &self.inner.description
    }

    /// The spec of a port this DPU holds.
    pub fn port(&self, port_id: &str) -> Option<PortSpec> {
        lock(&self.inner.ports).get(port_id).cloned()
    }

    /// Every port held, with the generation held, by id.
    pub fn held_ports(&self) -> Vec<(String, u64)> {
        let ports = lock(&self.inner.ports);
        let mut held: Vec<(String, u64)> =
            ports.specs().map(|p| (p.port_id.clone(), p.generation)).collect();
        held.sort();
        held
    }

    pub fn port_count(&self) -> usize {
        lock(&self.inner.ports).len()
    }

    /// This start's id, reported in the inventory.
    pub fn boot_id(&self) -> &str {
        &self.inner.boot_id
    }

    /// Ends every watch stream and refuses new ones (agent shutdown).
    pub fn shutdown(&self) {
        lock(&self.inner.ports).close();
    }

    /// The DPU's static facts. Errors: `Unavailable` when the device cannot be read (retry).
    pub async fn inventory(&self) -> Result<DpuDescription, DriverError> {
        self.inner.backend.hardware().await
    }

    /// Creates, adopts or updates the tenant port `spec.port_id` and returns `READY` once it
    /// is programmed (VF attached to the VNI's bridge, security group loaded).
    ///
    /// Idempotent by `port_id`: the same spec at the same generation changes nothing; a
    /// higher generation replaces the spec in place.
    ///
    /// Errors, the caller's fault unless noted:
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, a port removed at this generation or later, or the MAC or IP already
    ///   used by another port on the same VNI;
    /// - `ResourceExhausted`: the DPU already holds `max_ports` ports;
    /// - `Unavailable`: the device is busy (retry); `Internal`: the backend misbehaved.
    pub async fn port_ensure(&self, spec: PortSpec) -> Result<PortStatus, DriverError> {
        let Some(previous_vni) = self.check(&lock(&self.inner.ports), &spec)? else {
            return Ok(spec.ready());
        };
        let backend = &self.inner.backend;
        backend.vni_attach(spec.vni).await?;
        backend.port_attach(&spec).await?;
        backend.rules_apply(&spec.port_id, &spec.rules).await?;

        // Meanwhile another call may have changed the picture: decide again, then record.
        let recorded = {
            let mut ports = lock(&self.inner.ports);
            match self.check(&ports, &spec) {
                Ok(Some(_)) => Ok(ports.apply(spec.clone())),
                Ok(None) => Ok(spec.ready()),
                Err(err) => Err((err, ports.get(&spec.port_id).is_some())),
            }
        };
        let status = match recorded {
            Ok(status) => status,
            Err((err, held)) => {
                if !held && let Err(undo) = backend.port_detach(&spec.port_id).await {
                    warn!(dpu_id = %self.dpu_id(), port_id = %spec.port_id, %undo,
                          "cannot detach a port attached for a refused ensure");
                }
                return Err(err);
            }
        };
        if let Some(old) = previous_vni
            && old != spec.vni
        {
            self.release_vni(old).await;
        }
        info!(dpu_id = %self.dpu_id(), port_id = %spec.port_id, vni = spec.vni,
              generation = spec.generation, "port ready");
        Ok(status)
    }

    /// `None` if `spec` is applied already; otherwise the VNI the port had (if held), after
    /// the generation, limit and address checks.
    fn check(
        &self,
        ports: &Store<PortSpec>,
        spec: &PortSpec,
    ) -> Result<Option<Option<u32>>, DriverError> {
        match ports.decide(spec)? {
            EnsureAction::Unchanged => return Ok(None),
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
        check_addresses(ports, spec)?;
        Ok(Some(ports.get(&spec.port_id).map(|p| p.vni)))
    }

    /// Detaches and deletes the port; returns `REMOVED`, also for a port this DPU does not
    /// hold. Idempotent. Errors: `Unavailable` (retry; nothing changed), `Internal` (backend
    /// misbehaved). A `generation` above 0 is remembered: a later ensure of this id up to it
    /// is refused with `FailedPrecondition` (a late retry must not bring it back).
    pub async fn port_remove(
        &self,
        port_id: &str,
        generation: u64,
    ) -> Result<PortStatus, DriverError> {
        let held_vni = lock(&self.inner.ports).get(port_id).map(|p| p.vni);
        if held_vni.is_some() {
            self.inner.backend.port_detach(port_id).await?;
        }
        let (status, was_held) = lock(&self.inner.ports).remove(port_id, generation);
        if was_held {
            info!(dpu_id = %self.dpu_id(), port_id, "port removed");
        }
        if let Some(vni) = held_vni {
            self.release_vni(vni).await;
        }
        Ok(status)
    }

    /// The port's counters, read from the device now (telemetry; nothing changes), with one
    /// rule counter per rule of the spec held. Errors: `NotFound` for a port this DPU does not
    /// hold; `Unavailable` (retry) or `Internal` when the device cannot be read.
    pub async fn port_counters(&self, port_id: &str) -> Result<PortCountersReport, DriverError> {
        let Some(spec) = self.port(port_id) else {
            return Err(DriverError::NotFound(format!(
                "DPU {} holds no port {port_id}; send it with EnsurePort first",
                self.dpu_id()
            )));
        };
        let mut traffic = self.inner.backend.counters(port_id).await?;
        // An ensure in flight may have changed the rules meanwhile: report the held spec's.
        traffic.rules.resize(spec.rules.len(), Counter::default());
        Ok(PortCountersReport { port_id: spec.port_id, generation: spec.generation, traffic })
    }

    /// Detaches `vni` from the device if no port uses it any more. A failure only leaves an
    /// unused bridge behind, so it is logged, not returned.
    async fn release_vni(&self, vni: u32) {
        if lock(&self.inner.ports).specs().any(|p| p.vni == vni) {
            return;
        }
        if let Err(err) = self.inner.backend.vni_detach(vni).await {
            warn!(dpu_id = %self.dpu_id(), vni, %err, "cannot detach an unused VNI");
        }
    }

    /// One status per port held, then every change; a lagging subscriber is resynchronised
    /// (see `agent_common::watch`). Ends when the agent shuts down. Errors: `Unavailable`.
    pub fn watch(&self) -> Result<EventStream<PortStatus>, DriverError> {
        let weak = Arc::downgrade(&self.inner);
        snapshot_then_changes(move || weak.upgrade()?.subscribe()).ok_or_else(|| {
            DriverError::Unavailable(format!(
                "DPU agent {} is shutting down; reconnect once it is back",
                self.dpu_id()
            ))
        })
    }
}

impl Inner {
    fn subscribe(&self) -> Option<Subscription<PortStatus>> {
        lock(&self.ports).subscribe()
    }
}

/// Refuses a MAC or IP another port already uses on the same VNI, and a public IP another
/// port on this DPU uses.
fn check_addresses(ports: &Store<PortSpec>, spec: &PortSpec) -> Result<(), DriverError> {
    if let Some(public) = spec.public_ip
        && let Some(other) =
            ports.specs().find(|p| p.port_id != spec.port_id && p.public_ip == Some(public))
    {
        return Err(DriverError::FailedPrecondition(format!(
            "public IP {public} is already mapped to port {}; detach it there first",
            other.port_id
        )));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::{SimDpu, SimDpuOptions};
    use crate::model::{Direction, Protocol, SecurityRule};
    use futures::StreamExt;
    use std::time::Duration;

    fn dpu(max_ports: u32) -> SimDpu {
        SimDpu::new(
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
            gateway: None,
            public_ip: None,
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
        let public = Some(std::net::Ipv4Addr::new(203, 0, 113, 7));
        let mapped = PortSpec { public_ip: public, generation: 2, ..port(1) };
        dpu.port_ensure(mapped).await.expect("public IP");
        let other_vni = PortSpec { mac: port(1).mac, vni: 20_000, ..port(2) };
        let dup_public = PortSpec { public_ip: public, ..other_vni.clone() };
        let err = dpu.port_ensure(dup_public).await.expect_err("dup public IP");
        assert!(err.to_string().contains("public IP 203.0.113.7 is already mapped"), "{err}");
        dpu.port_ensure(other_vni).await.expect("other VNI");
        let err = dpu.port_ensure(port(3)).await.expect_err("full");
        assert!(matches!(err, DriverError::ResourceExhausted(_)), "{err}");
        // Re-ensuring a held port never counts against the limit.
        let held = PortSpec { public_ip: public, generation: 2, ..port(1) };
        dpu.port_ensure(held).await.expect("held port");
        dpu.port_remove(&port(1).port_id, 0).await.expect("remove");
        dpu.port_ensure(port(3)).await.expect("room again");
    }

    #[tokio::test]
    async fn test_remove_and_watch() {
        let dpu = dpu(8);
        dpu.port_ensure(port(1)).await.expect("1");
        let mut events = dpu.watch().expect("watch");
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
    async fn test_device_failures_change_nothing() {
        let dpu = dpu(8);
        dpu.faults().fail_nth(crate::backend::DpuOp::RulesApply, 1);
        assert!(matches!(dpu.port_ensure(port(1)).await, Err(DriverError::Injected(_))));
        assert_eq!(dpu.port_count(), 0);
        dpu.port_ensure(port(1)).await.expect("retry");
        dpu.faults().fail_nth(crate::backend::DpuOp::PortDetach, 1);
        assert!(dpu.port_remove(&port(1).port_id, 0).await.is_err());
        assert_eq!(dpu.port_count(), 1);
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
