//! NUMA fit: how a VM's vCPUs, emulator thread and hugepages are spread over NUMA nodes, and
//! whether a host's free resources hold them.
//!
//! A GPU VM lives on its GPUs' nodes: vCPUs and hugepages are split in proportion to the GPUs
//! on each node (largest remainder, ties to the lower node), so a guest NUMA node mirrors a host
//! node. The emulator thread gets one extra CPU on the *primary* node (most GPUs, lowest id).
//! A CPU-only VM lives on one node.

use crate::state::Usage;
use crate::topology::{MAX_NUMA, Topo};

/// What one VM needs from one NUMA node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeDemand {
    /// Node index.
    pub node: usize,
    pub vcpus: u32,
    pub pages: u32,
    pub emulator: bool,
}

impl NodeDemand {
    /// CPUs taken on the node, the emulator's included.
    pub(crate) fn cpus(&self) -> u32 {
        self.vcpus + u32::from(self.emulator)
    }
}

/// What one VM needs, node by node (fixed size: the hot path does not allocate).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Demand {
    nodes: [NodeDemand; MAX_NUMA],
    len: usize,
}

impl Demand {
    pub(crate) fn nodes(&self) -> &[NodeDemand] {
        &self.nodes[..self.len]
    }

    /// A VM on the GPUs of `mask` with `vcpus` vCPUs and `memory` GiB.
    pub(crate) fn for_partition(topo: &Topo, mask: u32, vcpus: u32, memory: u32) -> Demand {
        let mut gpus = [0u32; MAX_NUMA];
        for (n, g) in gpus.iter_mut().enumerate().take(topo.node_count) {
            *g = topo.node_gpus(mask, n);
        }
        let weights = &gpus[..topo.node_count];
        let cpus = split(vcpus, weights);
        let pages = split(memory, weights);
        let primary = weights
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i);
        let mut demand = Demand { nodes: [NodeDemand::default(); MAX_NUMA], len: 0 };
        for (node, &gpus) in weights.iter().enumerate() {
            if gpus > 0 {
                demand.nodes[demand.len] = NodeDemand {
                    node,
                    vcpus: cpus[node],
                    pages: pages[node],
                    emulator: node == primary,
                };
                demand.len += 1;
            }
        }
        demand
    }

    /// A CPU-only VM on node index `node`.
    pub(crate) fn for_node(node: usize, vcpus: u32, memory: u32) -> Demand {
        let mut nodes = [NodeDemand::default(); MAX_NUMA];
        nodes[0] = NodeDemand { node, vcpus, pages: memory, emulator: true };
        Demand { nodes, len: 1 }
    }

    /// True if every node has the CPUs and hugepages free.
    pub(crate) fn fits(&self, usage: &Usage) -> bool {
        self.nodes().iter().all(|d| {
            let n = &usage.free[d.node];
            n.cpus >= d.cpus() && n.pages >= d.pages
        })
    }
}

/// Splits `total` over `weights` proportionally; remainders go to the largest fractional parts,
/// ties to the lower index.
fn split(total: u32, weights: &[u32]) -> [u32; MAX_NUMA] {
    let mut out = [0u32; MAX_NUMA];
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return out;
    }
    let mut rem = [0u64; MAX_NUMA];
    let mut given = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        let x = u64::from(total) * u64::from(w);
        out[i] = (x / sum) as u32;
        rem[i] = x % sum;
        given += x / sum;
    }
    // Fewer than `weights.len()` units are left, each goes to a different node.
    for _ in given..u64::from(total) {
        let mut pick = None;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0 && pick.is_none_or(|p: usize| rem[i] > rem[p]) {
                pick = Some(i);
            }
        }
        if let Some(i) = pick {
            out[i] += 1;
            rem[i] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Host;
    use crate::topology::{Names, compile};

    #[test]
    fn split_is_proportional_and_exact() {
        assert_eq!(&split(10, &[1, 1])[..2], &[5, 5]);
        assert_eq!(&split(11, &[1, 1])[..2], &[6, 5]);
        assert_eq!(&split(10, &[3, 1])[..2], &[8, 2]);
        assert_eq!(&split(7, &[1, 1, 1])[..3], &[3, 2, 2]);
        assert_eq!(&split(5, &[0, 2])[..2], &[0, 5]);
    }

    #[test]
    fn eight_gpu_vm_spans_both_nodes() {
        let topo = compile(&Host::hgx_h100("h", "su"), None, &mut Names::default()).expect("valid");
        let all = topo.table.parts[topo.partition_index(0).expect("exists")].mask;
        let d = Demand::for_partition(&topo, all, 192, 1760);
        assert_eq!(d.nodes().len(), 2);
        assert_eq!((d.nodes()[0].vcpus, d.nodes()[0].pages), (96, 880));
        assert!(d.nodes()[0].emulator && !d.nodes()[1].emulator);
        let half = topo.table.parts[topo.partition_index(2).expect("exists")].mask;
        let d = Demand::for_partition(&topo, half, 96, 880);
        assert_eq!(d.nodes().len(), 1);
        assert_eq!(d.nodes()[0].node, 1);
        assert_eq!(d.nodes()[0].cpus(), 97);
    }
}
