//! [`Scheduler`]: the fleet, its allocations and the placement index, kept consistent.
//!
//! Decisions are in `placement.rs` ([`Scheduler::place`]); applying them is in `commit.rs`
//! ([`Scheduler::commit`], [`Scheduler::load`], [`Scheduler::release`]). This module builds the
//! scheduler, keeps the index and capacity figures in step with every change
//! (`Scheduler::refresh`), answers capacity queries and audits itself.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::allocation::Allocation;
use crate::capacity::{ModelCapacity, ModelStats, model_stats};
use crate::index::BucketIndex;
use crate::model::{Host, ModuleId};
use crate::score::{CpuPhase, best_partition, cpu_key};
use crate::state::{Flags, Usage};
use crate::topology::{
    FleetError, MAX_MODULES, Names, PARTITION_SIZES, Share, Topo, compile, module_bit, modules_of,
};

/// CPUs and memory one GPU keeps back from CPU-only VMs while it is free, so that CPU-only VMs
/// do not strand GPUs. Set it to what your smallest GPU instance type needs per GPU, counting
/// its emulator CPU (e.g. 24 vCPUs + 1 and 220 GiB for a 1×H100 type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuShare {
    pub cpus: u32,
    pub memory_gib: u32,
}

/// Scheduler settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Per-GPU share; `None` divides each NUMA node's guest CPUs and hugepages evenly among its
    /// GPUs (the safe default: CPU-only VMs then use only what busy or broken GPUs leave).
    pub gpu_share: Option<GpuShare>,
}

/// A host-level admin or health update named something that does not exist (caller's fault).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HostError {
    #[error("host {0} is not in the fleet")]
    UnknownHost(String),
    #[error("host {host} has no GPU module {module}")]
    UnknownGpu { host: String, module: ModuleId },
}

/// One committed VM.
#[derive(Clone, Debug)]
pub(crate) struct VmRecord {
    pub allocation: Allocation,
    pub host: u32,
    pub gpu_mask: u32,
}

/// The fleet, its allocations and the placement index.
///
/// Pure and single-threaded: wrap it in a lock to share it. For a given fleet, sequence of
/// calls and RNG state every decision is the same (hash maps are only used for lookups, never
/// iterated on a decision path); tests rely on this by passing a seeded RNG.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub(crate) hosts: Vec<Host>,
    pub(crate) topo: Vec<Topo>,
    pub(crate) flags: Vec<Flags>,
    pub(crate) usage: Vec<Usage>,
    pub(crate) host_by_id: HashMap<String, u32>,
    pub(crate) names: Names,
    /// Hosts of each scalable unit, in fleet order.
    pub(crate) su_hosts: Vec<Vec<u32>>,
    /// One index per (model, size class): `model * 4 + class`.
    pub(crate) gpu_index: Vec<BucketIndex>,
    /// CPU-only indexes by [`CpuPhase`].
    pub(crate) cpu_index: [BucketIndex; 2],
    /// Per host, parallel to `Topo::models`.
    pub(crate) host_stats: Vec<Vec<ModelStats>>,
    /// `[scalable unit][model]`.
    pub(crate) su_stats: Vec<Vec<ModelStats>>,
    /// `[model]`.
    pub(crate) fleet_stats: Vec<ModelStats>,
    pub(crate) vms: BTreeMap<String, VmRecord>,
    /// Per host: the ids (in `names.images`) of its images, sorted; `None`: any image.
    pub(crate) host_images: Vec<Option<Vec<u32>>>,
    config: SchedulerConfig,
}

impl Scheduler {
    /// Checks and compiles the fleet; no allocations yet (see [`Scheduler::load`]).
    pub fn new(hosts: Vec<Host>, config: SchedulerConfig) -> Result<Self, FleetError> {
        if u32::try_from(hosts.len()).is_err() {
            return Err(FleetError::InvalidHost {
                host: String::new(),
                problem: "too many hosts".to_string(),
            });
        }
        let share = config.gpu_share.map(|s| Share { cpus: s.cpus, pages: s.memory_gib });
        let mut names = Names::default();
        let mut host_by_id = HashMap::with_capacity(hosts.len());
        let mut topo = Vec::with_capacity(hosts.len());
        for (i, host) in hosts.iter().enumerate() {
            if host_by_id.insert(host.id.clone(), i as u32).is_some() {
                return Err(FleetError::DuplicateHost(host.id.clone()));
            }
            topo.push(
                compile(host, share, &mut names).map_err(|problem| FleetError::InvalidHost {
                    host: host.id.clone(),
                    problem,
                })?,
            );
        }
        let flags = hosts
            .iter()
            .zip(&topo)
            .map(|(h, t)| Flags {
                cordoned: h.cordoned,
                reachable: h.agent_reachable,
                healthy: h
                    .gpus
                    .iter()
                    .filter(|g| g.healthy)
                    .fold(0, |mask, g| mask | module_bit(g.module_id))
                    & t.module_mask,
            })
            .collect();
        let usage = topo.iter().map(Usage::for_topo).collect();
        let mut su_hosts = vec![Vec::new(); names.sus.len()];
        for (i, t) in topo.iter().enumerate() {
            su_hosts[t.su as usize].push(i as u32);
        }
        let host_images = hosts
            .iter()
            .map(|h| {
                h.images.as_ref().map(|images| {
                    let mut ids: Vec<u32> = images.iter().map(|i| names.images.intern(i)).collect();
                    ids.sort_unstable();
                    ids
                })
            })
            .collect();
        let n = hosts.len();
        let models = names.models.len();
        let mut scheduler = Scheduler {
            gpu_index: (0..models * PARTITION_SIZES.len()).map(|_| BucketIndex::new(n)).collect(),
            cpu_index: [BucketIndex::new(n), BucketIndex::new(n)],
            host_stats: topo
                .iter()
                .map(|t| vec![ModelStats::default(); t.models().len()])
                .collect(),
            su_stats: vec![vec![ModelStats::default(); models]; names.sus.len()],
            fleet_stats: vec![ModelStats::default(); models],
            hosts,
            topo,
            flags,
            usage,
            host_by_id,
            names,
            su_hosts,
            vms: BTreeMap::new(),
            host_images,
            config,
        };
        for h in 0..n as u32 {
            scheduler.refresh(h);
        }
        Ok(scheduler)
    }

    pub fn config(&self) -> SchedulerConfig {
        self.config
    }

    /// The fleet, with the current cordon, reachability and health flags.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, id: &str) -> Option<&Host> {
        self.host_by_id.get(id).map(|&h| &self.hosts[h as usize])
    }

    /// The committed allocation of a VM.
    pub fn allocation(&self, vm: &str) -> Option<&Allocation> {
        self.vms.get(vm).map(|r| &r.allocation)
    }

    /// All committed allocations, by VM id.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.vms.values().map(|r| &r.allocation)
    }

    /// Number of committed VMs.
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// Cordons (or uncordons) a host: its VMs stay, no new ones are placed.
    pub fn set_cordoned(&mut self, host: &str, cordoned: bool) -> Result<(), HostError> {
        let h = self.host_index(host)?;
        self.flags[h as usize].cordoned = cordoned;
        self.hosts[h as usize].cordoned = cordoned;
        self.refresh(h);
        Ok(())
    }

    /// Records whether the host's agent is connected; unreachable hosts get no new VMs.
    pub fn set_agent_reachable(&mut self, host: &str, reachable: bool) -> Result<(), HostError> {
        let h = self.host_index(host)?;
        self.flags[h as usize].reachable = reachable;
        self.hosts[h as usize].agent_reachable = reachable;
        self.refresh(h);
        Ok(())
    }

    /// Records a GPU's health; an unhealthy GPU is never chosen (its current VM keeps it).
    pub fn set_gpu_healthy(
        &mut self,
        host: &str,
        module: ModuleId,
        healthy: bool,
    ) -> Result<(), HostError> {
        let h = self.host_index(host)?;
        let unknown = || HostError::UnknownGpu { host: host.to_string(), module };
        if module == 0 || usize::from(module) > MAX_MODULES {
            return Err(unknown());
        }
        let gpu = self.hosts[h as usize]
            .gpus
            .iter_mut()
            .find(|g| g.module_id == module)
            .ok_or_else(unknown)?;
        gpu.healthy = healthy;
        let flags = &mut self.flags[h as usize];
        if healthy {
            flags.healthy |= module_bit(module);
        } else {
            flags.healthy &= !module_bit(module);
        }
        self.refresh(h);
        Ok(())
    }

    fn host_index(&self, host: &str) -> Result<u32, HostError> {
        self.host_by_id.get(host).copied().ok_or_else(|| HostError::UnknownHost(host.to_string()))
    }

    /// Fleet-wide capacity, one entry per GPU model.
    pub fn capacity(&self) -> Vec<ModelCapacity> {
        self.public_stats(&self.fleet_stats)
    }

    /// Scalable unit ids, in order of first appearance in the fleet.
    pub fn scalable_units(&self) -> impl Iterator<Item = &str> {
        self.names.sus.names()
    }

    /// Capacity of one scalable unit, one entry per GPU model of the fleet.
    pub fn scalable_unit_capacity(&self, su: &str) -> Option<Vec<ModelCapacity>> {
        let su = self.names.sus.get(su)?;
        Some(self.public_stats(&self.su_stats[su as usize]))
    }

    /// Capacity of one host, one entry per GPU model on it.
    pub fn host_capacity(&self, host: &str) -> Option<Vec<ModelCapacity>> {
        let h = *self.host_by_id.get(host)? as usize;
        Some(
            self.topo[h]
                .models()
                .iter()
                .zip(&self.host_stats[h])
                .map(|(&(m, _), s)| s.to_public(self.names.models.name(m)))
                .collect(),
        )
    }

    fn public_stats(&self, stats: &[ModelStats]) -> Vec<ModelCapacity> {
        stats
            .iter()
            .enumerate()
            .map(|(m, s)| s.to_public(self.names.models.name(m as u32)))
            .collect()
    }

    /// Recomputes a host's index keys and capacity after any change to it.
    pub(crate) fn refresh(&mut self, host: u32) {
        let h = host as usize;
        let (t, f, u) = (&self.topo[h], &self.flags[h], &self.usage[h]);
        for (slot, &(model, _)) in t.models().iter().enumerate() {
            let m = model as usize;
            let new = model_stats(t, f, u, model);
            let old = std::mem::replace(&mut self.host_stats[h][slot], new);
            if old != new {
                self.fleet_stats[m].sub(&old);
                self.fleet_stats[m].add(&new);
                let su = &mut self.su_stats[t.su as usize][m];
                su.sub(&old);
                su.add(&new);
            }
            for class in 0..PARTITION_SIZES.len() {
                let key = best_partition(t, f, u, model, class, None).map(|(k, _)| k);
                self.gpu_index[m * PARTITION_SIZES.len() + class].set(host, key);
            }
        }
        for phase in [CpuPhase::KeepReserve, CpuPhase::MayStrand] {
            self.cpu_index[phase as usize].set(host, cpu_key(t, f, u, phase));
        }
    }

    /// Recomputes everything incremental from scratch and compares: usage from the committed
    /// allocations, capacity figures and every index key. O(fleet); for tests and debugging.
    pub fn audit(&self) -> Result<(), String> {
        let mut usage: Vec<Usage> = self.topo.iter().map(Usage::for_topo).collect();
        for (vm, rec) in &self.vms {
            let (t, u) = (&self.topo[rec.host as usize], &mut usage[rec.host as usize]);
            let p = &rec.allocation.placement;
            if u.gpu_used & rec.gpu_mask != 0 {
                return Err(format!("VM {vm}: GPU allocated twice"));
            }
            u.gpu_used |= rec.gpu_mask;
            for &cpu in p.vcpus.iter().chain([&p.emulator_cpu]) {
                let (n, pos) = t.cpu_slot(cpu).ok_or(format!("VM {vm}: CPU {cpu} unknown"))?;
                if !u.take(n, pos) {
                    return Err(format!("VM {vm}: CPU {cpu} allocated twice"));
                }
            }
            for hp in &p.hugepages {
                let n =
                    t.node_index(hp.node).ok_or(format!("VM {vm}: node {} unknown", hp.node))?;
                let free = &mut u.free[n].pages;
                *free = free
                    .checked_sub(hp.pages)
                    .ok_or(format!("VM {vm}: hugepages oversubscribed"))?;
            }
        }
        let models = self.names.models.len();
        let mut fleet = vec![ModelStats::default(); models];
        let mut sus = vec![vec![ModelStats::default(); models]; self.su_hosts.len()];
        for (h, t) in self.topo.iter().enumerate() {
            let (f, u) = (&self.flags[h], &self.usage[h]);
            if usage[h] != *u {
                return Err(format!("host {}: usage drifted from allocations", self.hosts[h].id));
            }
            for m in 0..models as u32 {
                let slot = t.models().iter().position(|&(x, _)| x == m);
                if let Some(slot) = slot {
                    let stats = model_stats(t, f, u, m);
                    if stats != self.host_stats[h][slot] {
                        return Err(format!("host {}: stale capacity", self.hosts[h].id));
                    }
                    fleet[m as usize].add(&stats);
                    sus[t.su as usize][m as usize].add(&stats);
                }
                for class in 0..PARTITION_SIZES.len() {
                    let key = slot.and_then(|_| best_partition(t, f, u, m, class, None));
                    let filed =
                        self.gpu_index[m as usize * PARTITION_SIZES.len() + class].key(h as u32);
                    if key.map(|(k, _)| k) != filed {
                        return Err(format!("host {}: stale GPU key", self.hosts[h].id));
                    }
                }
            }
            for phase in [CpuPhase::KeepReserve, CpuPhase::MayStrand] {
                if cpu_key(t, f, u, phase) != self.cpu_index[phase as usize].key(h as u32) {
                    return Err(format!("host {}: stale CPU key", self.hosts[h].id));
                }
            }
            let healthy = self.hosts[h]
                .gpus
                .iter()
                .filter(|g| g.healthy)
                .fold(0, |mask, g| mask | module_bit(g.module_id));
            if healthy != f.healthy || modules_of(f.healthy & !t.module_mask).next().is_some() {
                return Err(format!("host {}: health flags drifted", self.hosts[h].id));
            }
        }
        if fleet != self.fleet_stats || sus != self.su_stats {
            return Err("capacity sums drifted".to_string());
        }
        for index in self.gpu_index.iter().chain(&self.cpu_index) {
            index.check()?;
        }
        Ok(())
    }
}
