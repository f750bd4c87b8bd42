//! The fleet as agents report it: inventory ingest (hosts, GPUs, DPUs, switches) and the
//! summary the dashboard shows.

use agent_proto::AgentKind;
use agent_proto::v1::{DpuInventory, GpuStatus, HostInventory, SwitchInventory};
use portal_types::Error;
use portal_types::ids::HostUuid;
use portal_types::topology::GpuHealth;
use portal_types::views::{Capacity, FleetSummary, Launchable, LiveEvent, ModelCapacity};
use serde::{Deserialize, Serialize};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::fleet::gpu_health;

/// The parts of a host's inventory placement needs beyond the GPU rows, stored as JSON on
/// the host row. Everything comes from the agent; nothing is assumed about the hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub numa_nodes: Vec<NumaFacts>,
    pub nics: Vec<NicFacts>,
    pub partitions: Vec<PartitionFacts>,
    pub dpu_ids: Vec<String>,
    /// The files in its image store; absent for a host that boots any image (simulated), and
    /// in facts stored before hosts reported them (until the agent reattaches).
    #[serde(default)]
    pub images: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaFacts {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub hugepages_1g_total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicFacts {
    pub index: u32,
    pub name: String,
    /// Empty in facts stored before the instance page showed it (until the agent reattaches).
    #[serde(default)]
    pub pci_address: String,
    pub numa_node: u32,
    pub pcie_switch: String,
    pub rail: u32,
    pub leaf_switch_id: String,
    /// Empty in facts stored before the GPU fabric (until the agent reattaches).
    #[serde(default)]
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFacts {
    pub id: u32,
    pub module_ids: Vec<u32>,
}

impl From<&HostInventory> for HostFacts {
    fn from(inv: &HostInventory) -> Self {
        HostFacts {
            numa_nodes: inv
                .numa_nodes
                .iter()
                .map(|n| NumaFacts {
                    id: n.id,
                    cpus: n.cpus.clone(),
                    hugepages_1g_total: n.hugepages_1g_total,
                })
                .collect(),
            nics: inv
                .nics
                .iter()
                .map(|n| NicFacts {
                    index: n.index,
                    name: n.name.clone(),
                    pci_address: n.pci_address.clone(),
                    numa_node: n.numa_node,
                    pcie_switch: n.pcie_switch.clone(),
                    rail: n.rail,
                    leaf_switch_id: n.leaf_switch_id.clone(),
                    mac: n.mac.clone(),
                })
                .collect(),
            partitions: inv
                .partitions
                .iter()
                .map(|p| PartitionFacts { id: p.id, module_ids: p.module_ids.clone() })
                .collect(),
            dpu_ids: inv.dpu_ids.clone(),
            images: (!inv.any_image).then(|| inv.images.clone()),
        }
    }
}

impl Controller {
    /// Records what a host agent reported, creating or updating the host and its GPUs.
    pub(crate) async fn host_inventory_ingest(
        &self,
        url: &str,
        inv: &HostInventory,
    ) -> Result<HostUuid, Error> {
        let facts = serde_json::to_string(&HostFacts::from(inv)).map_err(Error::internal)?;
        Ok(self.datastore.host_inventory_upsert(url, inv, facts).await?)
    }

    pub(crate) async fn dpu_inventory_ingest(
        &self,
        url: &str,
        inv: &DpuInventory,
    ) -> Result<(), Error> {
        Ok(self.datastore.dpu_inventory_upsert(url, inv).await?)
    }

    pub(crate) async fn switch_inventory_ingest(
        &self,
        url: &str,
        inv: &SwitchInventory,
    ) -> Result<(), Error> {
        Ok(self.datastore.switch_inventory_upsert(url, inv).await?)
    }

    /// A host's watch stream came up or broke: the scheduler must skip hosts it cannot reach.
    pub(crate) async fn set_host_connected(&self, name: &str, connected: bool) {
        // This replica's own link decides its scheduler, also when another replica already
        // recorded the same change (then the update found nothing to change).
        if let Some(placer) = self.placer.lock().await.as_mut() {
            let _ = placer.scheduler.set_agent_reachable(name, connected);
        }
        self.set_agent_connected(AgentKind::Host, name, connected).await;
    }

    /// Records an agent's link for the fleet pages (and tells them when it changed).
    pub(crate) async fn set_agent_connected(&self, kind: AgentKind, name: &str, connected: bool) {
        match self.datastore.agent_set_connected(kind, name, connected).await {
            Ok(true) => {
                tracing::info!(agent = %name, %kind, connected, "agent link changed");
                self.events.publish(None, LiveEvent::FleetChanged);
            }
            Ok(false) => {}
            Err(e) => tracing::error!(agent = %name, error = %e, "cannot record an agent's link"),
        }
    }

    pub(crate) async fn apply_gpu_status(&self, host_name: &str, status: GpuStatus) {
        let health = gpu_health(status.health);
        let res = self.datastore.gpu_set_health(host_name, status.module_id, health).await;
        // This replica's scheduler follows its own watch stream, also when another replica
        // recorded the change first.
        if let Some(placer) = self.placer.lock().await.as_mut() {
            let healthy = health != GpuHealth::Failed;
            let _ = placer.scheduler.set_gpu_healthy(host_name, status.module_id as u8, healthy);
        }
        match res {
            Ok(false) => {}
            Ok(true) => {
                self.fleet_changed(host_name).await;
                tracing::info!(host = %host_name, module = status.module_id, %health, message = %status.message, "GPU health changed");
                self.events.publish(None, LiveEvent::FleetChanged);
            }
            Err(e) => tracing::error!(host = %host_name, error = %e, "cannot record GPU health"),
        }
    }

    /// The dashboard's fleet view: every host with its GPUs used, free and unhealthy.
    pub async fn fleet_summary(&self, opctx: &OpContext) -> Result<FleetSummary, Error> {
        opctx.authorize(Action::FleetRead)?;
        Ok(self.datastore.fleet_summary(opctx).await?)
    }
}

/// The scheduler's capacity figures as the portal shows them.
pub(crate) fn capacity_view(m: &portal_scheduler::ModelCapacity) -> ModelCapacity {
    let l = m.launchable;
    ModelCapacity {
        model: m.model.clone(),
        launchable: Launchable { x8: l.x8, x4: l.x4, x2: l.x2, x1: l.x1 },
        free_gpus: m.free_gpus,
        fragmented_gpus: m.fragmented_gpus,
    }
}

impl Controller {
    /// Takes a host out of scheduling for maintenance (its VMs stay) or puts it back.
    pub async fn host_set_cordoned(
        &self,
        opctx: &OpContext,
        host_name: &str,
        cordoned: bool,
    ) -> Result<(), Error> {
        let result = self.host_set_cordoned_unaudited(opctx, host_name, cordoned).await;
        self.audited(
            opctx,
            if cordoned { "host.cordon" } else { "host.uncordon" },
            "host",
            host_name,
            result,
        )
        .await
    }

    async fn host_set_cordoned_unaudited(
        &self,
        opctx: &OpContext,
        host_name: &str,
        cordoned: bool,
    ) -> Result<(), Error> {
        opctx.authorize(Action::FleetWrite)?;
        // Under the placer's lock, so no launch decides between the row and the scheduler.
        let mut placer = self.placer.lock().await;
        self.datastore.host_set_cordoned(opctx, host_name, cordoned).await?;
        if let Some(placer) = placer.as_mut() {
            placer.scheduler.set_cordoned(host_name, cordoned).map_err(Error::internal)?;
        }
        drop(placer);
        self.fleet_changed(host_name).await;
        tracing::info!(host = %host_name, cordoned, "host cordon changed");
        self.events.publish(None, LiveEvent::FleetChanged);
        Ok(())
    }

    /// "Still launchable: a×8, b×4, c×2, d×1" fleet-wide for everyone; per scalable unit for
    /// provider admins.
    pub async fn capacity(&self, opctx: &OpContext) -> Result<Capacity, Error> {
        let actor = opctx.authorize(Action::CapacityRead)?;
        let guard = self.placer.lock().await;
        let Some(placer) = guard.as_ref() else { return Ok(Capacity::default()) };
        let scheduler = &placer.scheduler;
        let scalable_units = if actor.provider_admin {
            scheduler
                .scalable_units()
                .map(|su| {
                    let models = scheduler.scalable_unit_capacity(su).unwrap_or_default();
                    (su.to_owned(), models.iter().map(capacity_view).collect())
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Capacity {
            fleet: scheduler.capacity().iter().map(capacity_view).collect(),
            scalable_units,
        })
    }
}
