//! Best-fit scores: one integer per (host, kind of VM) that orders candidates, lower is better.
//! The index files hosts under these keys; the search recomputes them exactly for the host it
//! is looking at (the key of the index is then a lower bound, see `placement.rs`).
//!
//! GPU key, per (model, partition size), from most to least significant:
//! - *short of reserve* (1 bit): the partition's nodes lack the per-GPU CPU/hugepage share,
//!   typically because CPU-only VMs took it. Such hosts come last.
//! - *cost* (4 bits): which larger free partitions the placement breaks, one bit per size with
//!   size 8 the most significant. The partition table is a tree, so each size has at most one
//!   ancestor; comparing the bits as a number never breaks a free 8 when breaking a 4 will do.
//! - *free GPUs* of that model on the host: fewer first, to pack hosts that are already in use.
//!
//! CPU-only key: *free GPUs* on the host (busy hosts first), then the log2 size class of the
//! largest CPU room on one node (tightest first). Two CPU indexes exist: room that keeps every
//! free GPU's share ([`CpuPhase::KeepReserve`]) and any free room ([`CpuPhase::MayStrand`]),
//! consulted only when the first has no fit.

use crate::fit::Demand;
use crate::state::{Flags, Usage};
use crate::topology::{PARTITION_SIZES, Topo};

pub(crate) fn gpu_key(short_of_reserve: bool, cost: u32, free: u32) -> u32 {
    (u32::from(short_of_reserve) << 16) | (cost << 8) | free.min(0xff)
}

/// True if every node of the GPU set `mask` has the per-GPU share free for each of its GPUs
/// there.
pub(crate) fn reserve_ok(topo: &Topo, usage: &Usage, mask: u32) -> bool {
    share_fits(topo, mask, |n| (usage.free[n].cpus, usage.free[n].pages))
}

/// True if `free(node index) = (cpus, hugepages)` covers the share of `mask`'s GPUs per node.
pub(crate) fn share_fits(topo: &Topo, mask: u32, free: impl Fn(usize) -> (u32, u32)) -> bool {
    (0..topo.node_count).all(|n| {
        let gpus = topo.node_gpus(mask, n);
        gpus == 0 || {
            let (cpus, pages) = free(n);
            let share = topo.share[n];
            cpus >= share.cpus * gpus && pages >= share.pages * gpus
        }
    })
}

/// GPUs of `model` that are healthy and unallocated (none on an unschedulable host).
pub(crate) fn available(topo: &Topo, flags: &Flags, usage: &Usage, model: u32) -> u32 {
    if !flags.schedulable() {
        return 0;
    }
    topo.model_mask(model) & flags.healthy & !usage.gpu_used
}

/// The best partition of size class `class` and model `model` on a host, with its key.
/// With `vm = Some((vcpus, memory))` only partitions the VM fits on count (the search's view);
/// with `None` any free partition does (the index's view). Ties go to the lowest partition id.
pub(crate) fn best_partition(
    topo: &Topo,
    flags: &Flags,
    usage: &Usage,
    model: u32,
    class: usize,
    vm: Option<(u32, u32)>,
) -> Option<(u32, usize)> {
    let avail = available(topo, flags, usage, model);
    let free = avail.count_ones();
    if free < PARTITION_SIZES[class] {
        return None;
    }
    let table = &*topo.table;
    let mut best: Option<(u32, usize)> = None;
    // `avail` holds only GPUs of `model`, so a partition inside it is of that model.
    for &pi in &table.by_class[class] {
        let part = &table.parts[usize::from(pi)];
        if part.mask & !avail != 0 {
            continue;
        }
        if let Some((vcpus, memory)) = vm
            && !Demand::for_partition(topo, part.mask, vcpus, memory).fits(usage)
        {
            continue;
        }
        let key = gpu_key(!reserve_ok(topo, usage, part.mask), table.cost(part, avail), free);
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, usize::from(pi)));
        }
    }
    best
}

/// Which CPU room a CPU-only VM may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuPhase {
    /// Only CPUs and hugepages beyond the share of the node's free GPUs.
    KeepReserve = 0,
    /// Any free CPUs and hugepages, stranding as few GPUs as possible.
    MayStrand = 1,
}

/// Healthy, unallocated GPUs (any model) on node index `node`.
pub(crate) fn node_free_gpus(topo: &Topo, flags: &Flags, usage: &Usage, node: usize) -> u32 {
    (topo.node_gpu[node] & flags.healthy & !usage.gpu_used).count_ones()
}

/// CPUs and hugepages a CPU-only VM may use on node index `node` in `phase`.
fn room(topo: &Topo, flags: &Flags, usage: &Usage, node: usize, phase: CpuPhase) -> (u32, u32) {
    let u = usage.free[node];
    match phase {
        CpuPhase::MayStrand => (u.cpus, u.pages),
        CpuPhase::KeepReserve => {
            let gpus = node_free_gpus(topo, flags, usage, node);
            let share = topo.share[node];
            (u.cpus.saturating_sub(share.cpus * gpus), u.pages.saturating_sub(share.pages * gpus))
        }
    }
}

fn log2(x: u32) -> u32 {
    31 - x.leading_zeros()
}

/// The host's key in the CPU-only index of `phase`, `None` if no node has room for the smallest
/// VM (one vCPU, its emulator CPU and 1 GiB).
pub(crate) fn cpu_key(topo: &Topo, flags: &Flags, usage: &Usage, phase: CpuPhase) -> Option<u32> {
    if !flags.schedulable() {
        return None;
    }
    let largest = (0..topo.node_count)
        .map(|n| room(topo, flags, usage, n, phase))
        .filter(|&(cpus, pages)| cpus >= 2 && pages >= 1)
        .map(|(cpus, _)| cpus)
        .max()?;
    let free_gpus = (topo.module_mask & flags.healthy & !usage.gpu_used).count_ones();
    Some((free_gpus.min(0xff) << 8) | log2(largest))
}

/// Whether a bucket of CPU key `key` can hold a host with room for `cpus` CPUs.
pub(crate) fn class_may_fit(key: u32, cpus: u32) -> bool {
    let class = key & 0xff;
    u64::from(cpus) < (1u64 << (class + 1))
}

/// GPUs of a node left without their share if the node has `cpus` CPUs and `pages` hugepages.
fn stranded(topo: &Topo, node: usize, free_gpus: u32, cpus: u32, pages: u32) -> u32 {
    let share = topo.share[node];
    let by_cpu = cpus.checked_div(share.cpus).unwrap_or(u32::MAX);
    let by_mem = pages.checked_div(share.pages).unwrap_or(u32::MAX);
    free_gpus - free_gpus.min(by_cpu).min(by_mem)
}

/// The node a CPU-only VM goes to on this host in `phase`: fewest newly stranded GPUs, then the
/// tightest fit, then the lowest node.
pub(crate) fn cpu_node(
    topo: &Topo,
    flags: &Flags,
    usage: &Usage,
    vcpus: u32,
    memory: u32,
    phase: CpuPhase,
) -> Option<usize> {
    if !flags.schedulable() {
        return None;
    }
    let need = vcpus + 1;
    let mut best: Option<((u32, u32), usize)> = None;
    for node in 0..topo.node_count {
        let (cpus, pages) = room(topo, flags, usage, node, phase);
        if cpus < need || pages < memory {
            continue;
        }
        let strands = match phase {
            CpuPhase::KeepReserve => 0,
            CpuPhase::MayStrand => {
                let gpus = node_free_gpus(topo, flags, usage, node);
                stranded(topo, node, gpus, cpus - need, pages - memory)
                    - stranded(topo, node, gpus, cpus, pages)
            }
        };
        let key = (strands, cpus - need);
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, node));
        }
    }
    best.map(|(_, node)| node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_documented() {
        assert!(gpu_key(false, 0b1111, 8) < gpu_key(true, 0, 1));
        assert!(gpu_key(false, 0b0011, 8) < gpu_key(false, 0b0100, 1));
        assert!(gpu_key(false, 0, 1) < gpu_key(false, 0, 2));
        assert!(class_may_fit(3, 15));
        assert!(!class_may_fit(3, 16));
        assert!(class_may_fit(31, u32::MAX));
    }
}
