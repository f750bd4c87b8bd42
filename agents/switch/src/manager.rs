//! [`SwitchManager`]: the switch agent's domain logic, the same over every
//! [`SwitchBackend`]: the desired VPCs (spec and generation, tombstones of removed ones, via
//! [`agent_common::store`]), no VNI or VRF name used by two VPCs, and the watch streams. It
//! tells the backend what to do and never holds its lock across a backend call: ensure
//! applies the VRF, then decides again and records; remove removes the VRF, then records.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use agent_common::store::{Resource, Store};
use agent_common::watch::Subscription;
use agent_common::{DriverError, EnsureAction, EventStream, lock, snapshot_then_changes};

use crate::backend::SwitchBackend;
use crate::model::{EvpnStatus, SwitchDescription, VpcSpec, VpcState, VpcStatus};

/// One switch's manager. Cloning gives another handle to the same switch.
#[derive(Clone)]
pub struct SwitchManager {
    inner: Arc<Inner>,
}

struct Inner {
    description: SwitchDescription,
    backend: Arc<dyn SwitchBackend>,
    /// Random per manager: a restarted agent answers another (see `new_boot_id`).
    boot_id: String,
    vpcs: Mutex<Store<VpcSpec>>,
}

impl Resource for VpcSpec {
    type Status = VpcStatus;
    const KIND: &'static str = "VPC";

    fn id(&self) -> &str {
        &self.vpc_id
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn same_as(&self, other: &Self) -> bool {
        VpcSpec::same_as(self, other)
    }

    fn ready(&self) -> VpcStatus {
        VpcStatus {
            vpc_id: self.vpc_id.clone(),
            state: VpcState::Ready,
            generation: self.generation,
            message: String::new(),
        }
    }

    fn removed(id: &str, generation: u64) -> VpcStatus {
        VpcStatus {
            vpc_id: id.to_owned(),
            state: VpcState::Removed,
            generation,
            message: String::new(),
        }
    }
}

impl fmt::Debug for SwitchManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwitchManager")
            .field("switch_id", &self.inner.description.switch_id)
            .finish_non_exhaustive()
    }
}

impl SwitchManager {
    /// A manager for the switch `description` describes, holding no VPCs.
    pub fn new(
        description: SwitchDescription,
        backend: Arc<dyn SwitchBackend>,
        event_capacity: usize,
    ) -> Self {
        let vpcs = Mutex::new(Store::new(event_capacity));
        SwitchManager {
            inner: Arc::new(Inner {
                description,
                backend,
                boot_id: agent_common::new_boot_id(),
                vpcs,
            }),
        }
    }

    pub fn switch_id(&self) -> &str {
        &self.inner.description.switch_id
    }

    pub fn description(&self) -> &SwitchDescription {
        &self.inner.description
    }

    /// The spec of a VPC this switch holds.
    pub fn vpc(&self, vpc_id: &str) -> Option<VpcSpec> {
        lock(&self.inner.vpcs).get(vpc_id).cloned()
    }

    /// Every VPC this switch holds.
    pub fn vpcs(&self) -> Vec<VpcSpec> {
        lock(&self.inner.vpcs).specs().cloned().collect()
    }

    pub fn vpc_count(&self) -> usize {
        lock(&self.inner.vpcs).len()
    }

    /// This start's id, reported in the inventory.
    pub fn boot_id(&self) -> &str {
        &self.inner.boot_id
    }

    /// Ends every watch stream and refuses new ones (agent shutdown).
    pub fn shutdown(&self) {
        lock(&self.inner.vpcs).close();
    }

    /// The switch's static facts and cabling. Errors: `Unavailable` when the switch cannot
    /// be read right now (retry).
    pub async fn inventory(&self) -> Result<SwitchDescription, DriverError> {
        self.inner.backend.hardware().await
    }

    /// The switch's BGP EVPN state, read now (see [`SwitchBackend::evpn_status`]); it may
    /// hold VNIs this manager never configured. Read-only. Errors: `Unavailable` (retry),
    /// `Internal` (the switch's output could not be read).
    pub async fn evpn_status(&self) -> Result<EvpnStatus, DriverError> {
        self.inner.backend.evpn_status().await
    }

    /// Creates, adopts or updates the VPC `spec.vpc_id` (VRF, L3 VNI, one L2 VNI per segment)
    /// and returns `READY` once it is configured and advertised.
    ///
    /// Idempotent by `vpc_id`: the same spec at the same generation changes nothing; a
    /// higher generation replaces the spec in place.
    ///
    /// Errors, the caller's fault unless noted:
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, a VPC removed at this generation or later, a VNI or VRF name already
    ///   used by another VPC on this switch;
    /// - `Unavailable`: the switch is busy (retry); `Internal`: the backend misbehaved.
    pub async fn vpc_ensure(&self, spec: VpcSpec) -> Result<VpcStatus, DriverError> {
        let Some(previous) = check(&lock(&self.inner.vpcs), &spec)? else {
            return Ok(spec.ready());
        };
        self.inner.backend.vrf_apply(&spec).await?;

        // Meanwhile another call may have changed the picture: decide again, then record.
        let recorded = {
            let mut vpcs = lock(&self.inner.vpcs);
            check(&vpcs, &spec).map(|decided| match decided {
                Some(_) => vpcs.apply(spec.clone()),
                None => spec.ready(),
            })
        };
        let stale_vrf = match &recorded {
            // A renamed VRF leaves the old one behind.
            Ok(_) => previous.map(|p| p.vrf_name).filter(|name| *name != spec.vrf_name),
            // Refused after all: undo, unless another VPC now holds that VRF name.
            Err(_) => Some(spec.vrf_name.clone())
                .filter(|name| !lock(&self.inner.vpcs).specs().any(|v| v.vrf_name == *name)),
        };
        if let Some(name) = stale_vrf
            && let Err(err) = self.inner.backend.vrf_remove(&name).await
        {
            warn!(switch_id = %self.switch_id(), vrf = %name, %err, "cannot remove a stale VRF");
        }
        let status = recorded?;
        info!(switch_id = %self.switch_id(), vpc_id = %spec.vpc_id, vrf = %spec.vrf_name,
              l3_vni = spec.l3_vni, generation = spec.generation, "VPC ready");
        Ok(status)
    }

    /// Removes the VPC's VRF and VNIs; returns `REMOVED`, also for a VPC this switch does not
    /// hold. Idempotent. Errors: `Unavailable` (retry; nothing changed), `Internal` (backend
    /// misbehaved). A `generation` above 0 is remembered: a later ensure of this id up to it
    /// is refused with `FailedPrecondition` (a late retry must not bring it back).
    pub async fn vpc_remove(
        &self,
        vpc_id: &str,
        generation: u64,
    ) -> Result<VpcStatus, DriverError> {
        let held = lock(&self.inner.vpcs).get(vpc_id).map(|v| v.vrf_name.clone());
        if let Some(vrf_name) = &held {
            self.inner.backend.vrf_remove(vrf_name).await?;
        }
        let (status, was_held) = lock(&self.inner.vpcs).remove(vpc_id, generation);
        if was_held {
            info!(switch_id = %self.switch_id(), vpc_id, "VPC removed");
        }
        Ok(status)
    }

    /// One status per VPC held, then every change; a lagging subscriber is resynchronised
    /// (see `agent_common::watch`). Ends when the agent shuts down. Errors: `Unavailable`.
    pub fn watch(&self) -> Result<EventStream<VpcStatus>, DriverError> {
        let weak = Arc::downgrade(&self.inner);
        snapshot_then_changes(move || weak.upgrade()?.subscribe()).ok_or_else(|| {
            DriverError::Unavailable(format!(
                "switch agent {} is shutting down; reconnect once it is back",
                self.switch_id()
            ))
        })
    }
}

impl Inner {
    fn subscribe(&self) -> Option<Subscription<VpcStatus>> {
        lock(&self.vpcs).subscribe()
    }
}

/// `None` if `spec` is applied already; otherwise the VPC's previous spec (if held), after
/// the generation and collision checks.
fn check(vpcs: &Store<VpcSpec>, spec: &VpcSpec) -> Result<Option<Option<VpcSpec>>, DriverError> {
    if vpcs.decide(spec)? == EnsureAction::Unchanged {
        return Ok(None);
    }
    check_collisions(vpcs, spec)?;
    Ok(Some(vpcs.get(&spec.vpc_id).cloned()))
}

/// Refuses a VNI, VRF name or front-panel port another VPC on this switch already uses.
fn check_collisions(vpcs: &Store<VpcSpec>, spec: &VpcSpec) -> Result<(), DriverError> {
    let wanted = spec.vnis();
    let ports = spec.access_ports();
    for other in vpcs.specs().filter(|v| v.vpc_id != spec.vpc_id) {
        if let Some(port) = ports.intersection(&other.access_ports()).next() {
            return Err(DriverError::FailedPrecondition(format!(
                "port {port} is already in a segment of VPC {} on this switch; detach it \
                 there first",
                other.vpc_id
            )));
        }
        if let Some(vni) = wanted.intersection(&other.vnis()).next() {
            return Err(DriverError::FailedPrecondition(format!(
                "VNI {vni} is already used by VPC {} on this switch; allocate VNIs unique \
                 across VPCs",
                other.vpc_id
            )));
        }
        if other.vrf_name == spec.vrf_name {
            return Err(DriverError::FailedPrecondition(format!(
                "VRF name {} is already used by VPC {} on this switch; name each VPC's VRF \
                 uniquely",
                spec.vrf_name, other.vpc_id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::{SimSwitch, SimSwitchOptions};
    use crate::model::{Segment, SwitchRole};
    use futures::StreamExt;
    use std::time::Duration;

    fn switch() -> SimSwitch {
        SimSwitch::new(
            SwitchDescription {
                switch_id: "su1-leaf0".into(),
                model: "Spectrum-4 SN5600".into(),
                role: SwitchRole::RailLeaf,
                scalable_unit: 1,
                rail: 0,
                asn: 4_200_000_100,
                loopback_ip: "10.255.0.1".into(),
                ports: vec![],
            },
            SimSwitchOptions { apply_delay: Duration::ZERO, event_capacity: 16 },
        )
    }

    fn vpc(n: u8, l3_vni: u32, l2_vni: u32) -> VpcSpec {
        VpcSpec {
            vpc_id: format!("00000000-0000-4000-8000-0000000000{n:02x}"),
            generation: 1,
            vrf_name: format!("vrf-{n}"),
            l3_vni,
            segments: vec![Segment {
                l2_vni,
                cidr: agent_common::validate::cidr("cidr", "10.0.0.0/24").expect("cidr"),
                access_ports: Vec::new(),
            }],
        }
    }

    #[tokio::test]
    async fn test_vpc_idempotent_generation_and_vni_collisions() {
        let switch = switch();
        let first = switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect("ensure");
        assert_eq!(switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect("again"), first);
        assert_eq!(switch.vpc_count(), 1);

        // Subnets of different VPCs may overlap (they are in different VRFs); VNIs may not.
        for clash in [vpc(2, 50_001, 10_002), vpc(2, 50_002, 10_001), vpc(2, 10_001, 10_002)] {
            let err = switch.vpc_ensure(clash).await.expect_err("VNI clash");
            assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err}");
            assert!(err.to_string().contains("already used by VPC"), "{err}");
        }
        let same_vrf = VpcSpec { vrf_name: "vrf-1".into(), ..vpc(2, 50_002, 10_002) };
        assert!(switch.vpc_ensure(same_vrf).await.is_err());
        switch.vpc_ensure(vpc(2, 50_002, 10_002)).await.expect("distinct VNIs");

        let different = VpcSpec { l3_vni: 50_003, ..vpc(1, 50_001, 10_001) };
        assert!(switch.vpc_ensure(different.clone()).await.is_err());
        let newer = VpcSpec { generation: 2, ..different };
        assert_eq!(switch.vpc_ensure(newer).await.expect("gen 2").generation, 2);
        // VPC 1 gave up VNI 50001, so it is free for VPC 3.
        switch.vpc_ensure(vpc(3, 50_001, 10_003)).await.expect("freed VNI");
        let stale = switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect_err("stale");
        assert!(stale.to_string().contains("generation 2"), "{stale}");
    }

    #[tokio::test]
    async fn test_a_port_joins_one_vpc_at_a_time() {
        let switch = switch();
        let holding = |n: u8, l3: u32, l2: u32, port: &str| {
            let mut spec = vpc(n, l3, l2);
            spec.segments[0].access_ports = vec![port.to_owned()];
            spec
        };
        switch.vpc_ensure(holding(1, 50_001, 10_001, "swp1")).await.expect("first");
        let err = switch.vpc_ensure(holding(2, 50_002, 10_002, "swp1")).await.expect_err("taken");
        assert!(err.to_string().contains("port swp1 is already in a segment of VPC"), "{err}");
        switch.vpc_ensure(holding(2, 50_002, 10_002, "swp2")).await.expect("another port");
        switch.vpc_remove(&vpc(1, 0, 0).vpc_id, 0).await.expect("remove");
        let moved = VpcSpec { generation: 2, ..holding(2, 50_002, 10_002, "swp1") };
        switch.vpc_ensure(moved).await.expect("freed port");
    }

    #[tokio::test]
    async fn test_remove_and_watch() {
        let switch = switch();
        switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect("ensure");
        let mut events = switch.watch().expect("watch");
        assert_eq!(events.next().await.map(|s| s.state), Some(VpcState::Ready));
        let removed = switch.vpc_remove(&vpc(1, 0, 0).vpc_id, 0).await.expect("remove");
        assert_eq!(removed.state, VpcState::Removed);
        assert_eq!(events.next().await, Some(removed));
        let absent = switch.vpc_remove(&vpc(1, 0, 0).vpc_id, 0).await.expect("absent");
        assert_eq!((absent.state, absent.generation), (VpcState::Removed, 0));
        switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect("re-create");
        assert_eq!(events.next().await.map(|s| s.state), Some(VpcState::Ready));
    }

    #[tokio::test]
    async fn test_evpn_status_is_what_the_simulated_switch_holds() {
        use crate::model::VniKind;
        let switch = switch();
        let empty = switch.evpn_status().await.expect("status");
        assert!(empty.simulated && empty.peers.is_empty() && empty.vnis.is_empty());
        switch.vpc_ensure(vpc(2, 50_002, 10_002)).await.expect("ensure");
        switch.vpc_ensure(vpc(1, 50_001, 10_001)).await.expect("ensure");
        let status = switch.evpn_status().await.expect("status");
        let seen: Vec<(u32, VniKind, &str)> =
            status.vnis.iter().map(|v| (v.vni, v.kind, v.vrf.as_str())).collect();
        assert_eq!(
            seen,
            [
                (10_001, VniKind::L2, "vrf-1"),
                (10_002, VniKind::L2, "vrf-2"),
                (50_001, VniKind::L3, "vrf-1"),
                (50_002, VniKind::L3, "vrf-2"),
            ]
        );
        assert!(status.vnis.iter().all(|v| v.remote_vteps.is_empty()));
        assert_eq!(status.established_peers(), 0);

        switch.vpc_remove(&vpc(2, 0, 0).vpc_id, 0).await.expect("remove");
        let vnis: Vec<u32> =
            switch.evpn_status().await.expect("status").vnis.iter().map(|v| v.vni).collect();
        assert_eq!(vnis, [10_001, 50_001]);

        // Faults reach the read like any other operation.
        switch.faults().fail_always(crate::backend::SwitchOp::EvpnStatus);
        assert!(switch.evpn_status().await.is_err());
    }

    #[tokio::test]
    async fn test_a_removed_vpc_is_not_brought_back_by_a_late_ensure() {
        let switch = switch();
        switch.vpc_remove(&vpc(1, 0, 0).vpc_id, 2).await.expect("remove first");
        let late = switch.vpc_ensure(vpc(1, 0, 0)).await.expect_err("late retry");
        assert!(
            matches!(&late, DriverError::FailedPrecondition(m) if m.contains("removed at generation 2")),
            "{late}"
        );
        assert!(switch.vpc(&vpc(1, 0, 0).vpc_id).is_none());
        switch
            .vpc_ensure(VpcSpec { generation: 3, ..vpc(1, 0, 0) })
            .await
            .expect("a newer decision");
    }
}
