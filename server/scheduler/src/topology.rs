//! Compiled host topology: the static facts of one [`Host`] as bit masks and small tables,
//! checked once when the fleet is loaded so that the hot path never re-validates or allocates.
//!
//! GPU sets are `u32` masks with bit `m - 1` for module id `m` (so at most 32 GPUs per host).
//! NUMA nodes are referred to by their index in id order (at most [`MAX_NUMA`] per host).

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use crate::model::{Host, ModuleId};

/// Most NUMA nodes one host may have (dual socket with four sub-NUMA clusters each).
pub(crate) const MAX_NUMA: usize = 8;
/// Most GPUs one host may have: module ids 1..=32.
pub(crate) const MAX_MODULES: usize = 32;
/// Highest logical CPU id accepted; bounds the per-host CPU lookup table.
const MAX_CPU_ID: u32 = 1 << 16;
const NO_SLOT: u32 = u32::MAX;

/// GPU counts a VM can have, smallest first: the partition sizes of the 8 → 4 → 2 → 1 tree.
/// A size's position in this array is its *class* throughout the crate.
pub const PARTITION_SIZES: [u32; 4] = [1, 2, 4, 8];

/// The class of a partition size, if it is one.
pub(crate) fn size_class(gpus: u32) -> Option<usize> {
    PARTITION_SIZES.iter().position(|&s| s == gpus)
}

/// Mask bit of a module id (validated to be 1..=32 before use).
pub(crate) fn module_bit(module: ModuleId) -> u32 {
    1u32 << (module - 1)
}

/// Module ids of a mask, ascending.
pub(crate) fn modules_of(mask: u32) -> impl Iterator<Item = ModuleId> {
    (0..MAX_MODULES as u8).filter(move |b| mask & (1 << b) != 0).map(|b| b + 1)
}

/// The fleet model was inconsistent; the inventory (or whoever built the [`Host`]s) is at fault.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FleetError {
    /// Two hosts share an id.
    #[error("host id {0} appears twice in the fleet")]
    DuplicateHost(String),
    /// One host's description contradicts itself or exceeds a supported limit.
    #[error("host {host}: {problem}")]
    InvalidHost { host: String, problem: String },
}

/// Interned names (GPU models, scalable units, leaves): stable small ids in order of first use.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// The interners shared by all hosts of a fleet.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    pub models: Interner,
    pub images: Interner,
    pub sus: Interner,
    pub leaves: Interner,
    /// Distinct partition tables, keyed by their (id, mask) list.
    pub tables: HashMap<Vec<(u8, u32)>, Arc<PartTable>>,
}

/// CPUs and hugepages kept back per free GPU: see [`crate::GpuShare`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Share {
    pub cpus: u32,
    pub pages: u32,
}

/// Most GPU models on one host.
pub(crate) const MAX_MODELS: usize = 4;

/// One Fabric Manager partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub id: u8,
    pub mask: u32,
    pub class: usize,
}

/// A partition table, shared by every host that has the same one (the whole fleet, usually),
/// so that it stays in cache however many hosts a decision looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartTable {
    /// Ascending partition id.
    pub parts: Vec<Part>,
    /// Partition indices per size class, ascending partition id.
    pub by_class: [Vec<u16>; 4],
}

impl PartTable {
    /// Checks that the table is a tree (laminar) and indexes it. `parts` are in id order.
    fn build(parts: Vec<Part>) -> Result<PartTable, String> {
        if parts.len() > usize::from(u16::MAX) {
            return Err("has too many partitions".to_string());
        }
        // Two partitions are disjoint or nested; this is what makes best fit a tree walk.
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                let both = a.mask & b.mask;
                if a.mask == b.mask {
                    return Err(format!("partitions {} and {} are the same GPUs", a.id, b.id));
                }
                if both != 0 && both != a.mask && both != b.mask {
                    return Err(format!(
                        "partitions {} and {} overlap without one containing the other",
                        a.id, b.id
                    ));
                }
            }
        }
        let mut by_class: [Vec<u16>; 4] = Default::default();
        for (i, p) in parts.iter().enumerate() {
            by_class[p.class].push(i as u16);
        }
        Ok(PartTable { parts, by_class })
    }

    /// The larger partitions containing `part` that are wholly in `avail` (the free partitions
    /// allocating `part` would break), as size-class bits.
    pub(crate) fn cost(&self, part: &Part, avail: u32) -> u32 {
        let mut cost = 0;
        for class in part.class + 1..PARTITION_SIZES.len() {
            for &qi in &self.by_class[class] {
                let q = &self.parts[usize::from(qi)];
                if q.mask & part.mask == part.mask && q.mask & !avail == 0 {
                    cost |= 1 << class;
                }
            }
        }
        cost
    }
}

/// Cold per-node facts (read when CPUs are chosen or a placement is checked).
#[derive(Clone, Debug)]
pub(crate) struct NodeTopo {
    pub id: u32,
    /// Guest CPUs in allocation order; a CPU's position here is its bit in the usage bitset.
    pub cpus: Vec<u32>,
    pub hugepages: u32,
}

/// One host's static facts. The fields read on every evaluation come first and are inline,
/// so that looking at a host costs a couple of cache lines.
#[derive(Clone, Debug)]
pub(crate) struct Topo {
    pub table: Arc<PartTable>,
    /// All GPUs present.
    pub module_mask: u32,
    models: [(u32, u32); MAX_MODELS],
    model_count: usize,
    pub node_count: usize,
    /// GPUs (any model, any health) per node index.
    pub node_gpu: [u32; MAX_NUMA],
    /// CPUs and hugepages one free GPU of each node keeps back from CPU-only VMs.
    pub share: [Share; MAX_NUMA],
    pub su: u32,
    /// Distinct leaves of the host's NICs, sorted.
    pub leaves: Vec<u32>,
    /// NUMA nodes in id order.
    pub nodes: Vec<NodeTopo>,
    /// NIC paired with each module (indexed by module id - 1).
    pub gpu_nic: [Option<u8>; MAX_MODULES],
    /// CPU id → `node index << 16 | position`, or `NO_SLOT`.
    cpu_slot: Vec<u32>,
}

impl Topo {
    /// (model, GPUs of that model) for each model on the host.
    pub(crate) fn models(&self) -> &[(u32, u32)] {
        &self.models[..self.model_count]
    }

    pub(crate) fn model_mask(&self, model: u32) -> u32 {
        self.models().iter().find(|(m, _)| *m == model).map_or(0, |&(_, mask)| mask)
    }

    /// The model of a GPU set, `None` if it mixes models.
    pub(crate) fn model_of(&self, mask: u32) -> Option<u32> {
        self.models().iter().find(|&&(_, m)| mask & !m == 0).map(|&(model, _)| model)
    }

    /// GPUs of `mask` on node index `node`.
    pub(crate) fn node_gpus(&self, mask: u32, node: usize) -> u32 {
        (mask & self.node_gpu[node]).count_ones()
    }

    /// Node index and position of a guest CPU.
    pub(crate) fn cpu_slot(&self, cpu: u32) -> Option<(usize, usize)> {
        let slot = *self.cpu_slot.get(cpu as usize)?;
        (slot != NO_SLOT).then_some(((slot >> 16) as usize, (slot & 0xffff) as usize))
    }

    pub(crate) fn node_index(&self, id: u32) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub(crate) fn partition_index(&self, id: u8) -> Option<usize> {
        self.table.parts.iter().position(|p| p.id == id)
    }
}

/// Checks `host` and compiles it. `share` is the configured per-GPU share, `None` for the
/// proportional default (each node's guest CPUs and hugepages divided by its GPU count).
pub(crate) fn compile(
    host: &Host,
    share: Option<Share>,
    names: &mut Names,
) -> Result<Topo, String> {
    // NUMA nodes, in id order so that node index order is id order everywhere.
    let mut nodes_in: Vec<_> = host.numa_nodes.iter().collect();
    if nodes_in.is_empty() || nodes_in.len() > MAX_NUMA {
        return Err(format!("has {} NUMA nodes; 1 to {MAX_NUMA} are supported", nodes_in.len()));
    }
    nodes_in.sort_by_key(|n| n.id);
    if let Some(w) = nodes_in.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(format!("lists NUMA node {} twice", w[0].id));
    }
    let node_index = |id: u32| nodes_in.iter().position(|n| n.id == id);

    let max_cpu = nodes_in.iter().flat_map(|n| n.cpus.iter().copied()).max().unwrap_or(0);
    if max_cpu >= MAX_CPU_ID {
        return Err(format!("has CPU id {max_cpu}; ids below {MAX_CPU_ID} are supported"));
    }
    let mut cpu_slot = vec![NO_SLOT; max_cpu as usize + 1];
    for (ni, node) in nodes_in.iter().enumerate() {
        if node.cpus.len() > usize::from(u16::MAX) {
            return Err(format!("NUMA node {} has too many CPUs", node.id));
        }
        for (pos, &cpu) in node.cpus.iter().enumerate() {
            let slot = &mut cpu_slot[cpu as usize];
            if *slot != NO_SLOT {
                return Err(format!("lists CPU {cpu} twice"));
            }
            *slot = ((ni as u32) << 16) | pos as u32;
        }
    }

    // GPUs.
    let mut module_mask = 0u32;
    let mut node_gpu = [0u32; MAX_NUMA];
    let mut models = [(0u32, 0u32); MAX_MODELS];
    let mut model_count = 0;
    let mut gpus: Vec<_> = host.gpus.iter().collect();
    gpus.sort_by_key(|g| g.module_id);
    for gpu in &gpus {
        let m = gpu.module_id;
        if m == 0 || usize::from(m) > MAX_MODULES {
            return Err(format!("has GPU module id {m}; 1 to {MAX_MODULES} are supported"));
        }
        let bit = module_bit(m);
        if module_mask & bit != 0 {
            return Err(format!("lists GPU module {m} twice"));
        }
        module_mask |= bit;
        let ni = node_index(gpu.numa_node)
            .ok_or_else(|| format!("GPU module {m} is on unknown NUMA node {}", gpu.numa_node))?;
        node_gpu[ni] |= bit;
        if gpu.model.is_empty() {
            return Err(format!("GPU module {m} has no model"));
        }
        let model = names.models.intern(&gpu.model);
        match models[..model_count].iter_mut().find(|(id, _)| *id == model) {
            Some((_, mask)) => *mask |= bit,
            None if model_count < MAX_MODELS => {
                models[model_count] = (model, bit);
                model_count += 1;
            }
            None => return Err(format!("has more than {MAX_MODELS} GPU models")),
        }
    }

    // NICs and pairing.
    let mut nic_indices: Vec<u8> = host.nics.iter().map(|n| n.index).collect();
    nic_indices.sort_unstable();
    if let Some(w) = nic_indices.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("lists NIC {} twice", w[0]));
    }
    if let Some(nic) = host.nics.iter().find(|n| node_index(n.numa_node).is_none()) {
        return Err(format!("NIC {} is on unknown NUMA node {}", nic.index, nic.numa_node));
    }
    let mut gpu_nic = [None; MAX_MODULES];
    for gpu in &gpus {
        gpu_nic[usize::from(gpu.module_id - 1)] = host.paired_nic(gpu.module_id);
    }
    let mut leaves: Vec<u32> = host.nics.iter().map(|n| names.leaves.intern(&n.leaf)).collect();
    leaves.sort_unstable();
    leaves.dedup();

    // Partitions.
    let mut sorted: Vec<_> = host.partitions.iter().collect();
    sorted.sort_by_key(|p| p.id);
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(format!("lists partition {} twice", w[0].id));
    }
    let mut parts = Vec::with_capacity(sorted.len());
    for p in sorted {
        let mut mask = 0u32;
        for &m in &p.modules {
            if m == 0 || usize::from(m) > MAX_MODULES || module_mask & module_bit(m) == 0 {
                return Err(format!("partition {} names missing GPU module {m}", p.id));
            }
            if mask & module_bit(m) != 0 {
                return Err(format!("partition {} lists module {m} twice", p.id));
            }
            mask |= module_bit(m);
        }
        let class = size_class(mask.count_ones()).ok_or_else(|| {
            format!(
                "partition {} has {} GPUs; partitions of 1, 2, 4 or 8 are supported",
                p.id,
                mask.count_ones()
            )
        })?;
        parts.push(Part { id: p.id, mask, class });
    }
    let key: Vec<(u8, u32)> = parts.iter().map(|p| (p.id, p.mask)).collect();
    let table = match names.tables.get(&key) {
        Some(table) => Arc::clone(table),
        None => {
            let table = Arc::new(PartTable::build(parts)?);
            names.tables.insert(key, Arc::clone(&table));
            table
        }
    };

    let mut shares = [Share::default(); MAX_NUMA];
    for (ni, n) in nodes_in.iter().enumerate() {
        let gpus = node_gpu[ni].count_ones();
        shares[ni] = match share {
            Some(s) if gpus > 0 => s,
            None if gpus > 0 => {
                Share { cpus: n.cpus.len() as u32 / gpus, pages: n.hugepages_1g / gpus }
            }
            _ => Share::default(),
        };
    }
    let nodes = nodes_in
        .iter()
        .map(|n| NodeTopo { id: n.id, cpus: n.cpus.clone(), hugepages: n.hugepages_1g })
        .collect();

    Ok(Topo {
        table,
        module_mask,
        models,
        model_count,
        node_count: nodes_in.len(),
        node_gpu,
        share: shares,
        su: names.sus.intern(&host.scalable_unit),
        leaves,
        nodes,
        gpu_nic,
        cpu_slot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Partition;

    fn compile_one(host: &Host) -> Result<Topo, String> {
        compile(host, None, &mut Names::default())
    }

    #[test]
    fn identical_tables_are_shared() {
        let mut names = Names::default();
        let a = compile(&Host::hgx_h100("a", "su"), None, &mut names).expect("valid");
        let b = compile(&Host::hgx_h100("b", "su"), None, &mut names).expect("valid");
        assert!(Arc::ptr_eq(&a.table, &b.table));
    }

    #[test]
    fn hgx_compiles_to_a_tree() {
        let topo = compile_one(&Host::hgx_h100("h", "su")).expect("valid host");
        assert_eq!(topo.module_mask, 0xff);
        let table = &topo.table;
        assert_eq!(table.by_class.iter().map(Vec::len).collect::<Vec<_>>(), [8, 4, 2, 1]);
        // Single GPU 1 (partition 7) sits under {1,3}, {1,2,3,4} and all eight.
        let p7 = &table.parts[topo.partition_index(7).expect("exists")];
        assert_eq!(table.cost(p7, 0xff), 0b1110);
        // With GPU 3 taken, only the 8's sibling half and nothing above the pair is free.
        assert_eq!(table.cost(p7, 0xff & !0b100), 0);
        assert_eq!(table.cost(p7, 0xff & !0b10), 0b0010);
        assert_eq!(topo.share[0].cpus, 28);
        assert_eq!(topo.share[0].pages, 240);
        assert_eq!(topo.node_gpus(0xff, 1), 4);
        assert_eq!(topo.cpu_slot(112), Some((0, 1)));
        assert_eq!(topo.cpu_slot(56), Some((1, 0)));
        assert_eq!(topo.cpu_slot(999), None);
    }

    #[test]
    fn rejects_overlapping_partitions() {
        let mut host = Host::hgx_h100("h", "su");
        host.partitions.push(Partition { id: 20, modules: vec![3, 5] });
        let err = compile_one(&host).expect_err("not laminar");
        assert!(err.contains("overlap"), "{err}");
    }

    #[test]
    fn rejects_bad_inventory() {
        let mut host = Host::hgx_h100("h", "su");
        host.gpus[0].numa_node = 7;
        assert!(compile_one(&host).is_err());
        let mut host = Host::hgx_h100("h", "su");
        host.numa_nodes[1].cpus.push(0);
        assert!(compile_one(&host).expect_err("dup cpu").contains("CPU 0 twice"));
        let mut host = Host::hgx_h100("h", "su");
        host.partitions.push(Partition { id: 30, modules: vec![1, 2, 3] });
        assert!(compile_one(&host).is_err());
    }
}
