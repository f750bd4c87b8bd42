//! Property tests over random fleets and random traces (place, commit, release, cordon,
//! reachability and GPU health changes). Every step is checked by the independent
//! [`Checker`], by [`check_request`], by brute-force oracles written from the public fleet data,
//! and by [`Scheduler::audit`] (the incremental index equals a rebuild).
//!
//! Fleets and traces are generated from a seed so that proptest shrinks the seed, the fleet size
//! and the trace length; case counts are kept small so the suite runs in seconds.

use std::collections::{BTreeMap, BTreeSet};

use portal_scheduler::validate::{Checker, Strictness, check_request, validate_allocations};
use portal_scheduler::{
    Allocation, GpuShare, GroupPolicy, Host, ModelCapacity, Placement, PlacementGroup,
    PlacementRequest, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// HGX-like hosts with shuffled module numbering, random NUMA layouts (partitions may span
/// nodes), shared PCIe switches, missing NICs, unhealthy GPUs, cordoned and unreachable hosts,
/// small CPU and hugepage counts, two GPU models and one to three scalable units.
fn random_fleet(rng: &mut StdRng, hosts: usize) -> Vec<Host> {
    let units = rng.random_range(1..=3u32);
    (0..hosts)
        .map(|i| {
            let su = format!("su{}", rng.random_range(0..units));
            let mut h = Host::hgx_h100(format!("h{i}"), su);
            let model = if rng.random_bool(0.8) { "H100" } else { "H200" };
            let mut modules: Vec<u8> = (1..=8).collect();
            modules.shuffle(rng);
            let layout = rng.random_range(0..3);
            for (idx, &module) in modules.iter().enumerate() {
                let switch = if idx > 0 && rng.random_bool(0.1) {
                    h.gpus[idx - 1].pcie_switch
                } else {
                    h.gpus[idx].pcie_switch
                };
                let g = &mut h.gpus[idx];
                g.module_id = module;
                g.model = model.to_string();
                g.numa_node = match layout {
                    0 => u32::from(g.module_id > 4),
                    1 => 0,
                    _ => rng.random_range(0..2),
                };
                g.pcie_switch = switch;
                g.healthy = rng.random_bool(0.9);
            }
            for nic in &mut h.nics {
                if let Some(g) = h.gpus.iter().find(|g| g.pcie_switch == nic.pcie_switch) {
                    nic.numa_node = g.numa_node;
                }
            }
            if rng.random_bool(0.2) {
                let k = rng.random_range(0..h.nics.len());
                h.nics.remove(k);
            }
            h.cordoned = rng.random_bool(0.1);
            h.agent_reachable = !rng.random_bool(0.1);
            let mut next_cpu = 0;
            for node in &mut h.numa_nodes {
                let count = 2 * rng.random_range(4..=32);
                node.cpus = (next_cpu..next_cpu + count).collect();
                next_cpu += count;
                node.hugepages_1g = rng.random_range(16..=512);
            }
            h
        })
        .collect()
}

fn random_config(rng: &mut StdRng) -> SchedulerConfig {
    SchedulerConfig {
        gpu_share: rng.random_bool(0.5).then(|| GpuShare {
            cpus: rng.random_range(1..=8),
            memory_gib: rng.random_range(1..=32),
        }),
    }
}

fn random_request(rng: &mut StdRng, s: &Scheduler) -> PlacementRequest {
    let gpus = [0, 0, 1, 1, 2, 2, 4, 8][rng.random_range(0..8)];
    let model = match rng.random_range(0..100) {
        0..3 => "B200",
        3..20 => "H200",
        _ => "H100",
    };
    let scale = gpus.max(1);
    let mut req = PlacementRequest::gpu(
        model,
        gpus,
        rng.random_range(1..=3 * scale),
        rng.random_range(1..=24 * scale),
    );
    req.vm_count = if rng.random_bool(0.7) { 1 } else { rng.random_range(2..=5) };
    let policy = match rng.random_range(0..10) {
        0..6 => None,
        6..8 => Some(GroupPolicy::Cluster),
        _ => Some(GroupPolicy::Spread),
    };
    req.group = policy.map(|policy| {
        let live: Vec<&Allocation> = s.allocations().collect();
        let member_hosts = if !live.is_empty() && rng.random_bool(0.3) {
            vec![live[rng.random_range(0..live.len())].placement.host.clone()]
        } else {
            Vec::new()
        };
        PlacementGroup { policy, member_hosts }
    });
    req
}

/// Free resources of each host, recomputed from the public allocations.
struct Free {
    gpus: BTreeSet<u8>,
    cpus: BTreeMap<u32, u32>,
    pages: BTreeMap<u32, u32>,
}

fn free_resources(s: &Scheduler, host: &Host) -> Free {
    let mut free = Free {
        gpus: host.gpus.iter().filter(|g| g.healthy).map(|g| g.module_id).collect(),
        cpus: host.numa_nodes.iter().map(|n| (n.id, n.cpus.len() as u32)).collect(),
        pages: host.numa_nodes.iter().map(|n| (n.id, n.hugepages_1g)).collect(),
    };
    for a in s.allocations().filter(|a| a.placement.host == host.id) {
        let p = &a.placement;
        for g in &p.gpus {
            free.gpus.remove(g);
        }
        for cpu in p.vcpus.iter().chain([&p.emulator_cpu]) {
            let node = host.numa_nodes.iter().find(|n| n.cpus.contains(cpu));
            if let Some(n) = node.and_then(|n| free.cpus.get_mut(&n.id)) {
                *n -= 1;
            }
        }
        for hp in &p.hugepages {
            if let Some(n) = free.pages.get_mut(&hp.node) {
                *n -= hp.pages;
            }
        }
    }
    free
}

/// (CPUs, GiB) one free GPU keeps back on `node`, as `GpuShare` documents.
fn share(config: &SchedulerConfig, host: &Host, node: u32) -> (u32, u32) {
    let gpus = host.gpus.iter().filter(|g| g.numa_node == node).count() as u32;
    let n = host.numa_nodes.iter().find(|n| n.id == node);
    match (config.gpu_share, n) {
        (_, None) => (0, 0),
        _ if gpus == 0 => (0, 0),
        (Some(s), _) => (s.cpus, s.memory_gib),
        (None, Some(n)) => (n.cpus.len() as u32 / gpus, n.hugepages_1g / gpus),
    }
}

fn class(size: usize) -> u32 {
    size.trailing_zeros()
}

/// Best-fit key of placing a `req`-shaped VM on partition `pid` of `host` (the documented
/// key: short of reserve, larger free partitions broken, free GPUs of the model), and whether
/// the VM surely fits (enough for any proportional split plus the emulator on every node).
fn oracle_key(
    s: &Scheduler,
    host: &Host,
    free: &Free,
    pid: u8,
    req: &PlacementRequest,
) -> Option<(u32, bool)> {
    let part = host.partitions.iter().find(|p| p.id == pid)?;
    let model_ok = |m: &u8| host.gpus.iter().any(|g| g.module_id == *m && g.model == req.gpu_model);
    let is_free = |mods: &[u8]| mods.iter().all(|m| free.gpus.contains(m) && model_ok(m));
    if !host.schedulable()
        || part.modules.len() != req.gpu_count as usize
        || !is_free(&part.modules)
    {
        return None;
    }
    let k = part.modules.len() as u32;
    let mut reserve = true;
    let mut sure = true;
    for node in &host.numa_nodes {
        let g = part
            .modules
            .iter()
            .filter(|m| host.gpus.iter().any(|x| x.module_id == **m && x.numa_node == node.id))
            .count() as u32;
        if g == 0 {
            continue;
        }
        let (sc, sp) = share(&s.config(), host, node.id);
        let (fc, fp) = (free.cpus[&node.id], free.pages[&node.id]);
        reserve &= fc >= sc * g && fp >= sp * g;
        // Any split gives a node at most its rounded-up share, plus the emulator CPU.
        sure &= fc > (req.vcpus * g).div_ceil(k) && fp >= (req.memory_gib * g).div_ceil(k);
    }
    let cost: u32 = host
        .partitions
        .iter()
        .filter(|q| q.modules.len() > part.modules.len())
        .filter(|q| part.modules.iter().all(|m| q.modules.contains(m)))
        .filter(|q| is_free(&q.modules))
        .map(|q| 1 << class(q.modules.len()))
        .sum();
    let free_gpus = free.gpus.iter().filter(|m| model_ok(m)).count() as u32;
    Some(((u32::from(!reserve) << 16) | (cost << 8) | free_gpus, sure))
}

/// Checks one single-VM decision (or rejection) against brute force over the fleet: it is
/// rejected only if nothing fits and, when `best_fit`, it is at least as good as any option
/// that surely fits (cluster groups pick the tightest scalable unit first, so for them only
/// completeness is checked).
fn check_single_vm(
    s: &Scheduler,
    req: &PlacementRequest,
    result: &Result<Vec<Placement>, portal_scheduler::PlacementError>,
    best_fit: bool,
) -> Result<(), TestCaseError> {
    let frees: Vec<Free> = s.hosts().iter().map(|h| free_resources(s, h)).collect();
    if req.gpu_count > 0 {
        let mut best_sure = None;
        for (host, free) in s.hosts().iter().zip(&frees) {
            for p in &host.partitions {
                if let Some((key, true)) = oracle_key(s, host, free, p.id, req) {
                    best_sure = Some(best_sure.map_or(key, |b: u32| b.min(key)));
                }
            }
        }
        match result {
            Ok(ps) => {
                let p = &ps[0];
                let i = s.hosts().iter().position(|h| h.id == p.host).expect("host");
                let (key, _) =
                    oracle_key(s, &s.hosts()[i], &frees[i], p.partition.expect("gpu"), req)
                        .ok_or_else(|| TestCaseError::fail("chosen partition not free"))?;
                if let Some(best) = best_sure.filter(|_| best_fit) {
                    prop_assert!(key <= best, "chose key {key:#x}, {best:#x} was possible");
                }
            }
            Err(e) => prop_assert!(best_sure.is_none(), "rejected ({e}) but a host fits"),
        }
    } else {
        let need = req.vcpus + 1;
        let mut any = false;
        let mut keeps_reserve = false;
        for (host, free) in s.hosts().iter().zip(&frees) {
            if !host.schedulable() {
                continue;
            }
            for node in &host.numa_nodes {
                let (fc, fp) = (free.cpus[&node.id], free.pages[&node.id]);
                let free_gpus = host
                    .gpus
                    .iter()
                    .filter(|g| g.numa_node == node.id && free.gpus.contains(&g.module_id))
                    .count() as u32;
                let (sc, sp) = share(&s.config(), host, node.id);
                any |= fc >= need && fp >= req.memory_gib;
                keeps_reserve |= fc.saturating_sub(sc * free_gpus) >= need
                    && fp.saturating_sub(sp * free_gpus) >= req.memory_gib;
            }
        }
        match result {
            Ok(ps) => {
                let p = &ps[0];
                let host = s.hosts().iter().find(|h| h.id == p.host).expect("host");
                let free = &frees[s.hosts().iter().position(|h| h.id == p.host).expect("host")];
                let node = p.numa_nodes[0];
                let free_gpus = host
                    .gpus
                    .iter()
                    .filter(|g| g.numa_node == node && free.gpus.contains(&g.module_id))
                    .count() as u32;
                let (sc, sp) = share(&s.config(), host, node);
                if keeps_reserve && best_fit {
                    prop_assert!(
                        free.cpus[&node].saturating_sub(sc * free_gpus) >= need
                            && free.pages[&node].saturating_sub(sp * free_gpus) >= req.memory_gib,
                        "CPU-only VM stranded GPUs although a node had spare room"
                    );
                }
            }
            Err(e) => prop_assert!(!any, "rejected ({e}) but a node fits"),
        }
    }
    Ok(())
}

fn capacity_snapshot(s: &Scheduler) -> Vec<Vec<ModelCapacity>> {
    let mut snap = vec![s.capacity()];
    let units: Vec<String> = s.scalable_units().map(str::to_string).collect();
    for su in &units {
        snap.push(s.scalable_unit_capacity(su).expect("unit"));
    }
    for h in s.hosts() {
        snap.push(s.host_capacity(&h.id).expect("host"));
    }
    snap
}

/// Runs a random trace, checking every invariant at every step; returns a log of outcomes.
fn run_trace(seed: u64, hosts: usize, steps: usize) -> Result<Vec<String>, TestCaseError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let fleet = random_fleet(&mut rng, hosts);
    let config = random_config(&mut rng);
    let mut s = Scheduler::new(fleet.clone(), config).expect("valid fleet");
    let mut checker = Checker::new(fleet);
    let mut log = Vec::new();
    let mut next_vm = 0;
    let host_ids: BTreeSet<String> = s.hosts().iter().map(|h| h.id.clone()).collect();
    for _ in 0..steps {
        match rng.random_range(0..20) {
            0..12 => {
                let req = random_request(&mut rng, &s);
                let before = capacity_snapshot(&s);
                let result = s.place(&req, &mut rng);
                log.push(format!("{result:?}"));
                let single = req.vm_count == 1
                    && req.group.as_ref().is_none_or(|g| g.member_hosts.is_empty());
                if single {
                    let cluster =
                        req.group.as_ref().is_some_and(|g| g.policy == GroupPolicy::Cluster);
                    check_single_vm(&s, &req, &result, !cluster)?;
                }
                match result {
                    Ok(placements) => {
                        check_request(s.hosts(), &req, &placements)
                            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                        let batch: Vec<Allocation> = placements
                            .into_iter()
                            .map(|p| {
                                next_vm += 1;
                                Allocation::new(format!("vm{next_vm}"), p)
                            })
                            .collect();
                        // A batch with a duplicate claim is refused as a whole.
                        let mut corrupt = batch.clone();
                        corrupt.push(Allocation::new("dup", batch[0].placement.clone()));
                        prop_assert!(s.commit(corrupt).is_err());
                        prop_assert_eq!(&capacity_snapshot(&s), &before);
                        for a in &batch {
                            checker
                                .allocate(a, Strictness::NewDecision)
                                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        }
                        s.commit(batch.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        // Sometimes undo at once: capacity must come back exactly.
                        if rng.random_bool(0.3) {
                            for a in &batch {
                                s.release(&a.vm).map_err(|e| TestCaseError::fail(e.to_string()))?;
                                checker
                                    .release(&a.vm)
                                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                            }
                            prop_assert_eq!(&capacity_snapshot(&s), &before);
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        prop_assert!(!msg.is_empty());
                        let leaks =
                            msg.split(|c: char| !c.is_alphanumeric()).any(|w| host_ids.contains(w));
                        prop_assert!(!leaks, "error names a host: {msg}");
                    }
                }
            }
            12..16 => {
                let live: Vec<String> = s.allocations().map(|a| a.vm.clone()).collect();
                if !live.is_empty() {
                    let vm = &live[rng.random_range(0..live.len())];
                    s.release(vm).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    checker.release(vm).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    log.push(format!("release {vm}"));
                }
            }
            n => {
                let h = rng.random_range(0..hosts);
                let id = format!("h{h}");
                let on = rng.random_bool(0.5);
                match n {
                    16 => s.set_cordoned(&id, on),
                    17 => s.set_agent_reachable(&id, on),
                    _ => s.set_gpu_healthy(&id, rng.random_range(1..=8), on),
                }
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                checker.set_host(s.host(&id).expect("host").clone());
            }
        }
        s.audit().map_err(TestCaseError::fail)?;
    }
    let all: Vec<Allocation> = s.allocations().cloned().collect();
    prop_assert_eq!(checker.len(), all.len());
    validate_allocations(s.hosts(), &all, Strictness::Existing)
        .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    Ok(log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every invariant holds after every step of a random trace on a random fleet.
    #[test]
    fn random_traces_keep_every_invariant(
        seed in any::<u64>(),
        hosts in 1usize..16,
        steps in 1usize..80,
    ) {
        run_trace(seed, hosts, steps)?;
    }

    /// The same seed gives the same decisions.
    #[test]
    fn traces_are_deterministic(seed in any::<u64>(), hosts in 1usize..8, steps in 1usize..30) {
        let a = run_trace(seed, hosts, steps)?;
        let b = run_trace(seed, hosts, steps)?;
        prop_assert_eq!(a, b);
    }

    /// Loading the allocations of one scheduler into a fresh one reproduces its state.
    #[test]
    fn load_reproduces_state(seed in any::<u64>(), hosts in 1usize..8, steps in 1usize..40) {
        let mut rng = StdRng::seed_from_u64(seed);
        let fleet = random_fleet(&mut rng, hosts);
        let config = random_config(&mut rng);
        let mut s = Scheduler::new(fleet.clone(), config).expect("valid");
        for i in 0..steps {
            let req = random_request(&mut rng, &s);
            if let Ok(ps) = s.place(&req, &mut rng) {
                let batch = ps
                    .into_iter()
                    .enumerate()
                    .map(|(j, p)| Allocation::new(format!("{i}-{j}"), p))
                    .collect();
                s.commit(batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        let mut t = Scheduler::new(fleet, config).expect("valid");
        t.load(s.allocations().cloned().collect()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        t.audit().map_err(TestCaseError::fail)?;
        prop_assert_eq!(capacity_snapshot(&s), capacity_snapshot(&t));
    }
}
