//! The bridge between the database and the topology-aware scheduler (`portal-scheduler`).
//!
//! Each portal replica keeps a [`Scheduler`] in memory, built from the inventory and the
//! claims in the database. The claim task (`claims`) holds [`Placer`]'s lock while it decides
//! a batch of launches, commits their claims in one database transaction and mirrors them in
//! memory, so decisions within a replica never race. Across replicas, the transaction bumps the chosen host's claim
//! generation only if it is still the one this replica last saw: a claim another replica
//! made on that host in the meantime makes the transaction fail, and the host is reloaded
//! from the database before deciding again. A GPU is also the primary key of its claim row,
//! the last line of defence.

use std::collections::{HashMap, HashSet};

use portal_scheduler::{
    Allocation, Host, Nic, NumaNode, Partition, Placement, Scheduler, SchedulerConfig,
};
use portal_types::Error;
use portal_types::topology::GpuHealth;
use uuid::Uuid;

use crate::app::fleet::HostFacts;
use crate::datastore::DataStore;
use crate::datastore::entity::{gpu, host, instance};

/// The scheduler and what it needs to turn decisions into claim rows.
pub struct Placer {
    pub scheduler: Scheduler,
    /// Host name → (host id, claim generation this replica last saw).
    pub hosts: HashMap<String, (Uuid, i64)>,
    /// (host name, module id) → GPU row id.
    pub gpu_ids: HashMap<(String, u8), Uuid>,
}

/// Converts one host's rows into the scheduler's model. PCIe switches arrive as names;
/// the scheduler only needs to know which devices share one.
fn host_model(row: &host::Model, facts: &HostFacts, gpus: &[&gpu::Model]) -> Host {
    let mut switches: HashMap<String, u32> = HashMap::new();
    let mut switch_id = |name: &str| {
        let next = switches.len() as u32;
        *switches.entry(name.to_owned()).or_insert(next)
    };
    let gpus = gpus
        .iter()
        .map(|g| portal_scheduler::Gpu {
            module_id: g.module_id as u8,
            index: g.smi_index as u8,
            pci_address: g.pci_address.clone(),
            model: g.model.clone(),
            numa_node: g.numa_node as u32,
            pcie_switch: switch_id(&g.pcie_switch),
            healthy: g.gpu_health() != GpuHealth::Failed,
        })
        .collect();
    let nics = facts
        .nics
        .iter()
        .map(|n| Nic {
            index: n.index as u8,
            numa_node: n.numa_node,
            pcie_switch: switch_id(&n.pcie_switch),
            rail: n.rail as u8,
            leaf: n.leaf_switch_id.clone(),
        })
        .collect();
    Host {
        id: row.name.clone(),
        scalable_unit: format!("su{}", row.scalable_unit),
        cordoned: row.cordoned,
        agent_reachable: row.agent_connected,
        numa_nodes: facts
            .numa_nodes
            .iter()
            .map(|n| NumaNode {
                id: n.id,
                cpus: n.cpus.clone(),
                hugepages_1g: n.hugepages_1g_total,
            })
            .collect(),
        gpus,
        nics,
        partitions: facts
            .partitions
            .iter()
            .map(|p| Partition {
                id: p.id as u8,
                modules: p.module_ids.iter().map(|m| *m as u8).collect(),
            })
            .collect(),
        images: facts.images.clone(),
    }
}

/// The allocation an instance row holds, if it still holds one.
pub fn allocation_of(row: &instance::Model) -> Option<Allocation> {
    let placement: Placement = serde_json::from_str(row.spec.as_deref()?).ok()?;
    Some(Allocation::new(row.id.to_string(), placement))
}

impl Placer {
    /// Builds the scheduler from the database: every host, GPU and held allocation.
    pub async fn load(db: &DataStore) -> Result<Placer, Error> {
        let config = SchedulerConfig { gpu_share: db.instance_type_gpu_share().await? };
        let (rows, gpu_rows) = db.placement_hosts().await?;
        let mut hosts = Vec::with_capacity(rows.len());
        let mut seen = HashMap::with_capacity(rows.len());
        let mut gpu_ids = HashMap::with_capacity(gpu_rows.len());
        for row in &rows {
            let facts: HostFacts = serde_json::from_str(&row.inventory)
                .map_err(|e| Error::internal(format!("host {} facts: {e}", row.name)))?;
            let gpus: Vec<&gpu::Model> = gpu_rows.iter().filter(|g| g.host_id == row.id).collect();
            for g in &gpus {
                gpu_ids.insert((row.name.clone(), g.module_id as u8), g.id);
            }
            hosts.push(host_model(row, &facts, &gpus));
            seen.insert(row.name.clone(), (row.id, row.claim_generation));
        }
        let mut scheduler = Scheduler::new(hosts, config).map_err(Error::internal)?;
        let allocations: Vec<Allocation> =
            db.instances_holding(None).await?.iter().filter_map(allocation_of).collect();
        scheduler.load(allocations).map_err(Error::internal)?;
        Ok(Placer { scheduler, hosts: seen, gpu_ids })
    }

    /// Another replica claimed on `host_name`: drop what we believe about the host and load
    /// its allocations and generation from the database again.
    pub async fn reload_host(&mut self, db: &DataStore, host_name: &str) -> Result<(), Error> {
        let Some(&(host_id, _)) = self.hosts.get(host_name) else { return Ok(()) };
        let row = db
            .host_row(host_id)
            .await?
            .ok_or_else(|| Error::internal(format!("host {host_name} vanished")))?;
        let held: Vec<String> = self
            .scheduler
            .allocations()
            .filter(|a| a.placement.host == host_name)
            .map(|a| a.vm.clone())
            .collect();
        for vm in held {
            let _ = self.scheduler.release(&vm);
        }
        let allocations: Vec<Allocation> =
            db.instances_holding(Some(host_id)).await?.iter().filter_map(allocation_of).collect();
        self.scheduler.load(allocations).map_err(Error::internal)?;
        self.hosts.insert(host_name.to_owned(), (host_id, row.claim_generation));
        // Its cordon or GPU health may be what changed (by another replica).
        let (_, failed) = db.host_flags(Some(host_name)).await?;
        let failed: HashSet<u8> = failed.into_iter().map(|(_, m)| m as u8).collect();
        self.set_flags(host_name, row.cordoned, &failed);
        Ok(())
    }

    /// Makes the scheduler's cordon and GPU health of a host what the database says
    /// (`failed`: the module ids of its failed GPUs); true if anything changed.
    pub fn set_flags(&mut self, host_name: &str, cordoned: bool, failed: &HashSet<u8>) -> bool {
        let Some(host) = self.scheduler.host(host_name) else { return false };
        let cordon_differs = host.cordoned != cordoned;
        let health_differs: Vec<(u8, bool)> = host
            .gpus
            .iter()
            .filter(|g| g.healthy == failed.contains(&g.module_id))
            .map(|g| (g.module_id, !failed.contains(&g.module_id)))
            .collect();
        if cordon_differs {
            let _ = self.scheduler.set_cordoned(host_name, cordoned);
        }
        for &(module, healthy) in &health_differs {
            let _ = self.scheduler.set_gpu_healthy(host_name, module, healthy);
        }
        cordon_differs || !health_differs.is_empty()
    }
}
