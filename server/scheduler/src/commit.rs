//! Applying decisions: [`Scheduler::commit`] (new placements), [`Scheduler::load`] (existing
//! allocations at startup) and [`Scheduler::release`].
//!
//! A commit re-checks every placement against the live state, so a stale decision (made before
//! another commit took the same GPUs) or a hand-made one is refused, never half-applied. This is
//! the in-memory twin of the database's claim transaction.

use std::collections::HashSet;

use thiserror::Error;

use crate::allocation::{Allocation, Placement};
use crate::model::ModuleId;
use crate::scheduler::{Scheduler, VmRecord};
use crate::state::Draft;
use crate::topology::modules_of;

/// A batch of allocations could not be applied; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CommitError {
    /// The VM already has an allocation (release it first).
    #[error("VM {vm} already has an allocation")]
    AlreadyPlaced { vm: String },
    /// The batch names one VM twice (caller bug).
    #[error("VM {vm} appears twice in one commit")]
    DuplicateInBatch { vm: String },
    /// One placement is invalid or conflicts with the current state.
    #[error("placement of VM {vm} on host {host}: {problem}")]
    Rejected { vm: String, host: String, problem: CommitProblem },
}

impl CommitError {
    /// True when the placement was valid when decided but the fleet changed since (resources
    /// taken, host cordoned, GPU failed): decide again. False means the caller built a bad
    /// placement.
    pub fn is_stale(&self) -> bool {
        matches!(
            self,
            CommitError::Rejected {
                problem: CommitProblem::HostUnschedulable
                    | CommitProblem::GpuUnhealthy(_)
                    | CommitProblem::GpuTaken(_)
                    | CommitProblem::CpuTaken(_)
                    | CommitProblem::HugepagesShort { .. },
                ..
            }
        )
    }
}

/// Why one placement was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CommitProblem {
    #[error("the host is not in the fleet")]
    UnknownHost,
    #[error("the host is cordoned or its agent is unreachable")]
    HostUnschedulable,
    #[error("the host has no Fabric Manager partition {0}")]
    UnknownPartition(u8),
    #[error("partition {0} mixes GPU models")]
    MixedPartition(u8),
    #[error("GPUs {found:?} are not exactly partition {partition} ({expected:?})")]
    GpusNotPartition { partition: u8, expected: Vec<ModuleId>, found: Vec<ModuleId> },
    #[error("a CPU-only VM lists GPUs or NICs")]
    CpuOnlyWithGpus,
    #[error("GPU module {0} is unhealthy")]
    GpuUnhealthy(ModuleId),
    #[error("GPU module {0} is already allocated")]
    GpuTaken(ModuleId),
    #[error("NICs {found:?} are not the ones paired with the GPUs ({expected:?})")]
    NicMismatch { expected: Vec<u8>, found: Vec<u8> },
    #[error("NUMA nodes {found:?} are not the VM's nodes ({expected:?})")]
    NumaMismatch { expected: Vec<u32>, found: Vec<u32> },
    #[error("a CPU-only VM must use exactly one NUMA node, not {0:?}")]
    CpuOnlyNodes(Vec<u32>),
    #[error("NUMA node {0} does not exist")]
    UnknownNumaNode(u32),
    #[error("the VM has no vCPUs")]
    NoVcpus,
    #[error("CPU {0} is not a guest CPU of the VM's NUMA nodes")]
    CpuOffNode(u32),
    #[error("CPU {0} is already allocated")]
    CpuTaken(u32),
    #[error("hugepages on node {0}, which is not one of the VM's nodes or is listed twice")]
    HugepagesOffNode(u32),
    #[error("NUMA node {node} has {free} free hugepages, {wanted} wanted")]
    HugepagesShort { node: u32, free: u32, wanted: u32 },
}

/// [`Scheduler::release`] named a VM without an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReleaseError {
    #[error("VM {0} has no allocation")]
    NotPlaced(String),
}

impl Scheduler {
    /// Applies new placements (normally those [`Scheduler::place`] just returned), all or
    /// nothing. Refuses placements on cordoned or unreachable hosts or unhealthy GPUs, and any
    /// that conflicts with the live state or with another placement of the batch.
    pub fn commit(&mut self, allocations: Vec<Allocation>) -> Result<(), CommitError> {
        self.apply(allocations, true)
    }

    /// Loads existing allocations (e.g. from the database at startup), all or nothing. Like
    /// [`Scheduler::commit`] but accepts VMs on hosts or GPUs that have since been cordoned,
    /// lost their agent or failed: those VMs exist and keep their resources.
    pub fn load(&mut self, allocations: Vec<Allocation>) -> Result<(), CommitError> {
        self.apply(allocations, false)
    }

    /// Frees a VM's GPUs, NICs, CPUs and hugepages and returns its allocation.
    pub fn release(&mut self, vm: &str) -> Result<Allocation, ReleaseError> {
        let rec = self.vms.remove(vm).ok_or_else(|| ReleaseError::NotPlaced(vm.to_string()))?;
        let h = rec.host as usize;
        let (t, u) = (&self.topo[h], &mut self.usage[h]);
        let p = &rec.allocation.placement;
        u.gpu_used &= !rec.gpu_mask;
        // Every CPU and node was checked at commit, so these lookups succeed.
        for &cpu in p.vcpus.iter().chain([&p.emulator_cpu]) {
            if let Some((n, pos)) = t.cpu_slot(cpu) {
                u.give_back(n, pos);
            }
        }
        for hp in &p.hugepages {
            if let Some(n) = t.node_index(hp.node) {
                u.free[n].pages += hp.pages;
            }
        }
        self.refresh(rec.host);
        Ok(rec.allocation)
    }

    fn apply(&mut self, allocations: Vec<Allocation>, strict: bool) -> Result<(), CommitError> {
        let mut claims = Vec::with_capacity(allocations.len());
        let touched = {
            let mut draft = Draft::new(&self.usage);
            let mut batch: HashSet<&str> = HashSet::new();
            for a in &allocations {
                if self.vms.contains_key(&a.vm) {
                    return Err(CommitError::AlreadyPlaced { vm: a.vm.clone() });
                }
                if !batch.insert(&a.vm) {
                    return Err(CommitError::DuplicateInBatch { vm: a.vm.clone() });
                }
                let claim = self.claim(&mut draft, &a.placement, strict).map_err(|problem| {
                    CommitError::Rejected {
                        vm: a.vm.clone(),
                        host: a.placement.host.clone(),
                        problem,
                    }
                })?;
                claims.push(claim);
            }
            draft.into_touched()
        };
        for (h, usage) in touched {
            self.usage[h as usize] = usage;
            self.refresh(h);
        }
        for (allocation, (host, gpu_mask)) in allocations.into_iter().zip(claims) {
            self.vms.insert(allocation.vm.clone(), VmRecord { allocation, host, gpu_mask });
        }
        Ok(())
    }

    /// Checks one placement against the draft and takes its resources there. Returns the host
    /// index and GPU mask.
    fn claim(
        &self,
        draft: &mut Draft<'_>,
        p: &Placement,
        strict: bool,
    ) -> Result<(u32, u32), CommitProblem> {
        let h = *self.host_by_id.get(&p.host).ok_or(CommitProblem::UnknownHost)?;
        let (t, f) = (&self.topo[h as usize], &self.flags[h as usize]);
        if strict && !f.schedulable() {
            return Err(CommitProblem::HostUnschedulable);
        }
        let mask = match p.partition {
            Some(id) => {
                let part = &t.table.parts
                    [t.partition_index(id).ok_or(CommitProblem::UnknownPartition(id))?];
                let expected: Vec<ModuleId> = modules_of(part.mask).collect();
                if p.gpus != expected {
                    return Err(CommitProblem::GpusNotPartition {
                        partition: id,
                        expected,
                        found: p.gpus.clone(),
                    });
                }
                if t.model_of(part.mask).is_none() {
                    return Err(CommitProblem::MixedPartition(id));
                }
                if let Some(m) = modules_of(part.mask & !f.healthy).next().filter(|_| strict) {
                    return Err(CommitProblem::GpuUnhealthy(m));
                }
                if let Some(m) = modules_of(part.mask & draft.usage(h).gpu_used).next() {
                    return Err(CommitProblem::GpuTaken(m));
                }
                let nics: Vec<u8> =
                    expected.iter().filter_map(|&m| t.gpu_nic[usize::from(m - 1)]).collect();
                if p.nics != nics {
                    return Err(CommitProblem::NicMismatch {
                        expected: nics,
                        found: p.nics.clone(),
                    });
                }
                let nodes: Vec<u32> = t
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|&(n, _)| t.node_gpus(part.mask, n) > 0)
                    .map(|(_, node)| node.id)
                    .collect();
                if p.numa_nodes != nodes {
                    return Err(CommitProblem::NumaMismatch {
                        expected: nodes,
                        found: p.numa_nodes.clone(),
                    });
                }
                part.mask
            }
            None => {
                if !p.gpus.is_empty() || !p.nics.is_empty() {
                    return Err(CommitProblem::CpuOnlyWithGpus);
                }
                if p.numa_nodes.len() != 1 {
                    return Err(CommitProblem::CpuOnlyNodes(p.numa_nodes.clone()));
                }
                0
            }
        };
        if p.vcpus.is_empty() {
            return Err(CommitProblem::NoVcpus);
        }
        let mut nodes = Vec::with_capacity(p.numa_nodes.len());
        for &id in &p.numa_nodes {
            nodes.push(t.node_index(id).ok_or(CommitProblem::UnknownNumaNode(id))?);
        }
        let u = draft.usage_mut(h);
        u.gpu_used |= mask;
        for &cpu in p.vcpus.iter().chain([&p.emulator_cpu]) {
            let (n, pos) = t
                .cpu_slot(cpu)
                .filter(|(n, _)| nodes.contains(n))
                .ok_or(CommitProblem::CpuOffNode(cpu))?;
            if !u.take(n, pos) {
                return Err(CommitProblem::CpuTaken(cpu));
            }
        }
        let mut seen = Vec::with_capacity(p.hugepages.len());
        for hp in &p.hugepages {
            let n = t
                .node_index(hp.node)
                .filter(|n| nodes.contains(n) && !seen.contains(n))
                .ok_or(CommitProblem::HugepagesOffNode(hp.node))?;
            seen.push(n);
            let free = &mut u.free[n].pages;
            if *free < hp.pages {
                return Err(CommitProblem::HugepagesShort {
                    node: hp.node,
                    free: *free,
                    wanted: hp.pages,
                });
            }
            *free -= hp.pages;
        }
        Ok((h, mask))
    }
}
