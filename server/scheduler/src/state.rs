//! Mutable per-host state: what is allocated ([`Usage`]) and the admin/health flags ([`Flags`]),
//! plus [`Draft`], a copy-on-write overlay that lets a multi-VM decision see its own earlier
//! VMs without touching the live state.

use crate::topology::{MAX_NUMA, Topo};

/// Health and admin flags of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags {
    pub cordoned: bool,
    pub reachable: bool,
    /// Healthy GPUs.
    pub healthy: u32,
}

impl Flags {
    pub(crate) fn schedulable(&self) -> bool {
        !self.cordoned && self.reachable
    }
}

/// Free CPUs and hugepages of one NUMA node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeFree {
    pub cpus: u32,
    pub pages: u32,
}

/// Allocation state of one host: the counts every evaluation reads inline, the CPU bitsets
/// (read only when CPUs are chosen) in one vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub gpu_used: u32,
    /// Per node index.
    pub free: [NodeFree; MAX_NUMA],
    /// Per node index: first word in `bits` and number of CPUs (bits) of the node.
    spans: [(u32, u32); MAX_NUMA],
    /// One bit per position in a node's CPU list; set = allocated.
    bits: Vec<u64>,
}

impl Usage {
    /// Nothing allocated on nodes of `(CPUs, hugepages)`.
    pub(crate) fn new(nodes: impl IntoIterator<Item = (usize, u32)>) -> Self {
        let mut usage = Usage {
            gpu_used: 0,
            free: [NodeFree::default(); MAX_NUMA],
            spans: [(0, 0); MAX_NUMA],
            bits: Vec::new(),
        };
        for (n, (cpus, pages)) in nodes.into_iter().enumerate().take(MAX_NUMA) {
            usage.free[n] = NodeFree { cpus: cpus as u32, pages };
            usage.spans[n] = (usage.bits.len() as u32, cpus as u32);
            usage.bits.resize(usage.bits.len() + cpus.div_ceil(64), 0);
        }
        usage
    }

    pub(crate) fn for_topo(topo: &Topo) -> Self {
        Self::new(topo.nodes.iter().map(|n| (n.cpus.len(), n.hugepages)))
    }

    fn word(&self, node: usize, pos: usize) -> (usize, u64) {
        (self.spans[node].0 as usize + pos / 64, 1 << (pos % 64))
    }

    pub(crate) fn is_used(&self, node: usize, pos: usize) -> bool {
        let (w, bit) = self.word(node, pos);
        self.bits[w] & bit != 0
    }

    /// Marks a free CPU position of a node used; false if it already was.
    pub(crate) fn take(&mut self, node: usize, pos: usize) -> bool {
        if self.is_used(node, pos) {
            return false;
        }
        let (w, bit) = self.word(node, pos);
        self.bits[w] |= bit;
        self.free[node].cpus -= 1;
        true
    }

    /// Frees a used CPU position; false if it was free.
    pub(crate) fn give_back(&mut self, node: usize, pos: usize) -> bool {
        if !self.is_used(node, pos) {
            return false;
        }
        let (w, bit) = self.word(node, pos);
        self.bits[w] &= !bit;
        self.free[node].cpus += 1;
        true
    }

    /// Free positions in word `i` of a node, with the bits past the list's end cleared.
    fn free_bits(&self, node: usize, i: usize) -> u64 {
        let (start, len) = (self.spans[node].0 as usize, self.spans[node].1 as usize);
        let valid = if (i + 1) * 64 <= len { u64::MAX } else { (1u64 << (len % 64)) - 1 };
        !self.bits[start + i] & valid
    }

    fn words(&self, node: usize) -> usize {
        (self.spans[node].1 as usize).div_ceil(64)
    }

    /// Free positions of a node, ascending.
    pub(crate) fn free_positions(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.words(node)).flat_map(move |i| {
            let mut free = self.free_bits(node, i);
            std::iter::from_fn(move || {
                (free != 0).then(|| {
                    let bit = free.trailing_zeros() as usize;
                    free &= free - 1;
                    i * 64 + bit
                })
            })
        })
    }

    /// The highest free position of a node.
    pub(crate) fn highest_free(&self, node: usize) -> Option<usize> {
        (0..self.words(node)).rev().find_map(|i| {
            let free = self.free_bits(node, i);
            (free != 0).then(|| i * 64 + 63 - free.leading_zeros() as usize)
        })
    }
}

/// Touched hosts beyond which a [`Draft`] switches from a linear search to a lookup table
/// (large commits and startup loads touch thousands of hosts; decisions touch a few).
const LINEAR_TOUCHED: usize = 16;

/// A decision in progress: the live usage plus private copies of the hosts it has touched.
pub(crate) struct Draft<'a> {
    live: &'a [Usage],
    touched: Vec<(u32, Usage)>,
    /// Host → position in `touched` (`u32::MAX` if untouched); empty while few are touched.
    slots: Vec<u32>,
}

impl<'a> Draft<'a> {
    pub(crate) fn new(live: &'a [Usage]) -> Self {
        Draft { live, touched: Vec::new(), slots: Vec::new() }
    }

    fn find(&self, host: u32) -> Option<usize> {
        if self.slots.is_empty() {
            self.touched.iter().position(|(h, _)| *h == host)
        } else {
            let slot = self.slots[host as usize];
            (slot != u32::MAX).then_some(slot as usize)
        }
    }

    pub(crate) fn usage(&self, host: u32) -> &Usage {
        match self.find(host) {
            Some(i) => &self.touched[i].1,
            None => &self.live[host as usize],
        }
    }

    pub(crate) fn live(&self, host: u32) -> &Usage {
        &self.live[host as usize]
    }

    pub(crate) fn is_touched(&self, host: u32) -> bool {
        self.find(host).is_some()
    }

    /// The draft's copy of a host's usage, copied from the live state on first use.
    pub(crate) fn usage_mut(&mut self, host: u32) -> &mut Usage {
        let i = match self.find(host) {
            Some(i) => i,
            None => {
                self.touched.push((host, self.live[host as usize].clone()));
                let i = self.touched.len() - 1;
                if !self.slots.is_empty() {
                    self.slots[host as usize] = i as u32;
                } else if self.touched.len() > LINEAR_TOUCHED {
                    self.slots = vec![u32::MAX; self.live.len()];
                    for (j, (h, _)) in self.touched.iter().enumerate() {
                        self.slots[*h as usize] = j as u32;
                    }
                }
                i
            }
        };
        &mut self.touched[i].1
    }

    pub(crate) fn touched(&self) -> &[(u32, Usage)] {
        &self.touched
    }

    pub(crate) fn into_touched(self) -> Vec<(u32, Usage)> {
        self.touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_positions() {
        let mut u = Usage::new([(3, 1), (70, 10)]);
        for pos in [0, 1, 2, 69] {
            assert!(u.take(1, pos));
        }
        assert!(!u.take(1, 69));
        assert_eq!(u.free[1].cpus, 66);
        assert_eq!(u.free_positions(1).take(2).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(u.highest_free(1), Some(68));
        assert!(u.give_back(1, 1));
        assert!(!u.give_back(1, 1));
        assert_eq!(u.free_positions(1).take(2).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(u.free_positions(1).count(), 67);
        for pos in 0..70 {
            u.take(1, pos);
        }
        assert_eq!(u.free[1].cpus, 0);
        assert_eq!(u.highest_free(1), None);
        // Node 0 is untouched.
        assert_eq!(u.free_positions(0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(u.highest_free(0), Some(2));
    }
}
