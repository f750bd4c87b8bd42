//! The placement index: hosts filed in buckets by a best-fit key, so a decision visits the best
//! bucket first instead of scanning the fleet.
//!
//! One [`BucketIndex`] exists per (GPU model, partition size) and two for CPU-only VMs (see
//! `score.rs` for the keys). A host's key is recomputed whenever that host changes (allocate,
//! release, health or cordon), which moves it between buckets in O(log buckets). Keys are small
//! integers and a bucket is a plain vector with swap-remove, so lookups never allocate.

use std::collections::BTreeMap;

const ABSENT: u32 = u32::MAX;

/// Hosts grouped by key; lower keys are better.
#[derive(Clone, Debug)]
pub(crate) struct BucketIndex {
    buckets: BTreeMap<u32, Vec<u32>>,
    /// Per host: its key (or `ABSENT`) and position in that key's bucket.
    slots: Vec<(u32, usize)>,
}

impl BucketIndex {
    pub(crate) fn new(hosts: usize) -> Self {
        BucketIndex { buckets: BTreeMap::new(), slots: vec![(ABSENT, 0); hosts] }
    }

    pub(crate) fn key(&self, host: u32) -> Option<u32> {
        let key = self.slots[host as usize].0;
        (key != ABSENT).then_some(key)
    }

    /// Files `host` under `key`, or removes it for `None`.
    pub(crate) fn set(&mut self, host: u32, key: Option<u32>) {
        let new = key.unwrap_or(ABSENT);
        let (old, pos) = self.slots[host as usize];
        if old == new {
            return;
        }
        if old != ABSENT
            && let Some(bucket) = self.buckets.get_mut(&old)
        {
            bucket.swap_remove(pos);
            if let Some(&moved) = bucket.get(pos) {
                self.slots[moved as usize].1 = pos;
            }
        }
        self.slots[host as usize] = (new, 0);
        if new != ABSENT {
            // Empty buckets are kept: keys come back and re-creating them would allocate.
            let bucket = self.buckets.entry(new).or_default();
            self.slots[host as usize].1 = bucket.len();
            bucket.push(host);
        }
    }

    /// Non-empty buckets, best key first.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.buckets
            .iter()
            .filter(|(_, hosts)| !hosts.is_empty())
            .map(|(&key, hosts)| (key, hosts.as_slice()))
    }

    /// Checks that slots and buckets agree (used by [`crate::Scheduler::audit`]).
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut filed = 0;
        for (&key, hosts) in &self.buckets {
            for (pos, &host) in hosts.iter().enumerate() {
                if self.slots.get(host as usize) != Some(&(key, pos)) {
                    return Err(format!("host {host} misfiled under key {key:#x}"));
                }
                filed += 1;
            }
        }
        let expected = self.slots.iter().filter(|s| s.0 != ABSENT).count();
        if filed != expected {
            return Err(format!("{filed} hosts filed, {expected} have keys"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_hosts_between_buckets() {
        let mut index = BucketIndex::new(4);
        index.set(0, Some(5));
        index.set(1, Some(5));
        index.set(2, Some(3));
        index.set(3, Some(5));
        index.set(0, Some(7));
        index.set(2, None);
        index.check().expect("consistent");
        let buckets: Vec<(u32, Vec<u32>)> = index.buckets().map(|(k, h)| (k, h.to_vec())).collect();
        assert_eq!(buckets, vec![(5, vec![3, 1]), (7, vec![0])]);
        assert_eq!(index.key(2), None);
        assert_eq!(index.key(3), Some(5));
    }
}
