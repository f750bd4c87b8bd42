//! Capacity views: "still launchable: a×8, b×4, c×2, d×1" per host, per scalable unit and for
//! the fleet, and fragmentation.
//!
//! # Definition
//!
//! For one host and GPU model, a partition is *launchable* when the host is schedulable (not
//! cordoned, agent reachable), all its GPUs are of that model, healthy and unallocated, and each
//! of its NUMA nodes still has the per-GPU share ([`crate::GpuShare`]) of CPUs and hugepages for
//! each of the partition's GPUs on that node.
//!
//! `a, b, c, d` count launchable partitions picked **greedily, largest first, disjoint, within
//! one shared CPU/hugepage budget**: take every launchable 8 (in partition-id order), deduct its
//! GPUs and share; then every launchable 4 among the GPUs left; then 2s; then 1s. So the counts
//! never double-count a GPU and `8a + 4b + 2c + d` ≤ free GPUs. Scalable-unit and fleet figures
//! are the sums over their hosts.
//!
//! *Free GPUs* are healthy, unallocated GPUs on schedulable hosts. *Fragmented GPUs* are free
//! GPUs that cannot be launched as part of an 8: `free − 8a`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::score::{available, share_fits};
use crate::state::{Flags, Usage};
use crate::topology::{MAX_NUMA, PARTITION_SIZES, Topo};

/// Disjoint launchable partitions by size (see the module docs for the exact definition).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launchable {
    pub x8: u32,
    pub x4: u32,
    pub x2: u32,
    pub x1: u32,
}

impl Launchable {
    pub(crate) fn from_classes(c: [u32; 4]) -> Self {
        Launchable { x1: c[0], x2: c[1], x4: c[2], x8: c[3] }
    }

    /// The count for a partition size (1, 2, 4 or 8; 0 otherwise).
    pub fn count(&self, size: u32) -> u32 {
        match size {
            8 => self.x8,
            4 => self.x4,
            2 => self.x2,
            1 => self.x1,
            _ => 0,
        }
    }

    /// GPUs in the counted partitions.
    pub fn gpus(&self) -> u32 {
        8 * self.x8 + 4 * self.x4 + 2 * self.x2 + self.x1
    }
}

impl fmt::Display for Launchable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "still launchable: {}×8, {}×4, {}×2, {}×1", self.x8, self.x4, self.x2, self.x1)
    }
}

/// Capacity of one GPU model on a host, a scalable unit or the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCapacity {
    pub model: String,
    pub launchable: Launchable,
    /// Healthy, unallocated GPUs on schedulable hosts.
    pub free_gpus: u32,
    /// Free GPUs not launchable as part of an 8-GPU partition: `free_gpus − 8 × x8`.
    pub fragmented_gpus: u32,
}

/// Per-(host, model) figures the scheduler keeps and sums per scalable unit and fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModelStats {
    /// Launchable counts by size class (the public definition).
    pub launchable: [u32; 4],
    pub free: u32,
    /// Per size class: how many VMs of that size alone fit (same greedy, one size only); the
    /// cluster search orders scalable units by their sum.
    pub fit: [u32; 4],
    /// Per size class: free partitions of that size, ignoring CPUs and memory (same-size
    /// partitions of a laminar table are disjoint, so this bounds the VMs of that size); the
    /// cluster search skips scalable units whose sum is too small.
    pub free_parts: [u32; 4],
}

impl ModelStats {
    pub(crate) fn add(&mut self, o: &ModelStats) {
        for c in 0..4 {
            self.launchable[c] += o.launchable[c];
            self.fit[c] += o.fit[c];
            self.free_parts[c] += o.free_parts[c];
        }
        self.free += o.free;
    }

    pub(crate) fn sub(&mut self, o: &ModelStats) {
        for c in 0..4 {
            self.launchable[c] -= o.launchable[c];
            self.fit[c] -= o.fit[c];
            self.free_parts[c] -= o.free_parts[c];
        }
        self.free -= o.free;
    }

    pub(crate) fn to_public(self, model: &str) -> ModelCapacity {
        let launchable = Launchable::from_classes(self.launchable);
        ModelCapacity {
            model: model.to_string(),
            launchable,
            free_gpus: self.free,
            fragmented_gpus: self.free.saturating_sub(8 * launchable.x8),
        }
    }
}

/// The figures of one model on one host.
pub(crate) fn model_stats(topo: &Topo, flags: &Flags, usage: &Usage, model: u32) -> ModelStats {
    let avail = available(topo, flags, usage, model);
    let mut stats = ModelStats { free: avail.count_ones(), ..ModelStats::default() };
    if avail == 0 {
        return stats;
    }
    greedy(topo, usage, avail, &[3, 2, 1, 0], &mut stats.launchable);
    for class in 0..PARTITION_SIZES.len() {
        greedy(topo, usage, avail, &[class], &mut stats.fit);
        stats.free_parts[class] = topo.table.by_class[class]
            .iter()
            .filter(|&&pi| topo.table.parts[usize::from(pi)].mask & !avail == 0)
            .count() as u32;
    }
    stats
}

/// Counts disjoint launchable partitions of the given classes, in that order, within one budget.
fn greedy(topo: &Topo, usage: &Usage, avail: u32, classes: &[usize], counts: &mut [u32; 4]) {
    // Free CPUs and hugepages per node not yet promised to a counted partition.
    let mut budget = [(0u32, 0u32); MAX_NUMA];
    for (b, u) in budget.iter_mut().zip(&usage.free) {
        *b = (u.cpus, u.pages);
    }
    let table = &*topo.table;
    // `avail` holds only GPUs of one model, so partitions inside it are of that model.
    let mut left = avail;
    for &class in classes {
        for &pi in &table.by_class[class] {
            let part = &table.parts[usize::from(pi)];
            if part.mask & !left != 0 || !share_fits(topo, part.mask, |n| budget[n]) {
                continue;
            }
            counts[class] += 1;
            left &= !part.mask;
            for (n, b) in budget.iter_mut().enumerate().take(topo.node_count) {
                let gpus = topo.node_gpus(part.mask, n);
                b.0 -= topo.share[n].cpus * gpus;
                b.1 -= topo.share[n].pages * gpus;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_counts() {
        let l = Launchable::from_classes([4, 3, 2, 1]);
        assert_eq!(l.to_string(), "still launchable: 1×8, 2×4, 3×2, 4×1");
        assert_eq!(l.count(4), 2);
        assert_eq!(l.gpus(), 8 + 8 + 6 + 4);
    }
}
