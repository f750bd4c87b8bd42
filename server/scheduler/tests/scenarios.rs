//! Table-style scenarios: each states one rule of DESIGN.md §4 on a tiny fleet.

use portal_scheduler::validate::{Strictness, check_request, validate_allocations};
use portal_scheduler::{
    Allocation, CommitError, CommitProblem, FleetError, GpuShare, GroupPolicy, HGX_H100_MODEL,
    Host, PlacementError, PlacementGroup, PlacementRequest, Scheduler, SchedulerConfig,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn fleet(layout: &[(&str, usize)]) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (su, n) in layout {
        for i in 0..*n {
            hosts.push(Host::hgx_h100(format!("{su}-h{i}"), *su));
        }
    }
    hosts
}

fn scheduler(hosts: Vec<Host>) -> Scheduler {
    Scheduler::new(hosts, SchedulerConfig::default()).expect("valid fleet")
}

fn gpu(n: u32) -> PlacementRequest {
    PlacementRequest::gpu(HGX_H100_MODEL, n, 12 * n, 100 * n)
}

/// Places, checks and commits a request; returns the VM ids.
fn launch(s: &mut Scheduler, req: &PlacementRequest, rng: &mut StdRng) -> Vec<String> {
    let placements = s.place(req, rng).expect("fits");
    check_request(s.hosts(), req, &placements).expect("answers the request");
    let base = s.vm_count();
    let allocations: Vec<Allocation> = placements
        .into_iter()
        .enumerate()
        .map(|(i, p)| Allocation::new(format!("vm{}", base + i), p))
        .collect();
    let ids = allocations.iter().map(|a| a.vm.clone()).collect();
    s.commit(allocations).expect("commits");
    s.audit().expect("consistent");
    ids
}

fn all_valid(s: &Scheduler) {
    let allocations: Vec<Allocation> = s.allocations().cloned().collect();
    validate_allocations(s.hosts(), &allocations, Strictness::Existing).expect("valid");
}

#[test]
fn two_gpu_vms_get_nvlink_pairs_only() {
    let mut s = scheduler(fleet(&[("su", 1)]));
    let mut rng = StdRng::seed_from_u64(1);
    let mut partitions = Vec::new();
    for _ in 0..4 {
        let id = launch(&mut s, &gpu(2), &mut rng).remove(0);
        partitions.push(s.allocation(&id).and_then(|a| a.placement.partition));
    }
    partitions.sort();
    assert_eq!(partitions, vec![Some(3), Some(4), Some(5), Some(6)]);
    let err = s.place(&gpu(2), &mut rng).expect_err("full");
    assert_eq!(
        err.to_string(),
        "no host has 2 free H100 GPUs in one NVLink domain; all are in use"
    );
    all_valid(&s);
}

#[test]
fn best_fit_keeps_large_partitions_whole() {
    let mut s = scheduler(fleet(&[("su", 2)]));
    let mut rng = StdRng::seed_from_u64(2);
    let first = launch(&mut s, &gpu(1), &mut rng).remove(0);
    let a = s.allocation(&first).expect("placed").placement.clone();
    // The second single GPU completes the first one's pair on the same host.
    let second = launch(&mut s, &gpu(1), &mut rng).remove(0);
    let b = s.allocation(&second).expect("placed").placement.clone();
    assert_eq!(a.host, b.host);
    let mut pair = [a.gpus[0], b.gpus[0]];
    pair.sort();
    assert!([[1, 3], [2, 4], [5, 7], [6, 8]].contains(&pair), "{pair:?}");
    // A pair then goes into the same half, a half into the other half of the same host...
    let third = launch(&mut s, &gpu(2), &mut rng).remove(0);
    assert_eq!(s.allocation(&third).expect("placed").placement.host, a.host);
    let fourth = launch(&mut s, &gpu(4), &mut rng).remove(0);
    assert_eq!(s.allocation(&fourth).expect("placed").placement.host, a.host);
    // ... so the other host still takes an 8.
    let fifth = launch(&mut s, &gpu(8), &mut rng).remove(0);
    let e = s.allocation(&fifth).expect("placed").placement.clone();
    assert_ne!(e.host, a.host);
    assert_eq!(e.partition, Some(0));
    let cap = s.capacity();
    assert_eq!(cap[0].launchable.to_string(), "still launchable: 0×8, 0×4, 0×2, 0×1");
    all_valid(&s);
}

#[test]
fn numa_locality_pairing_and_emulator() {
    let s = scheduler(fleet(&[("su", 1)]));
    let host = Host::hgx_h100("x", "su");
    let mut rng = StdRng::seed_from_u64(3);
    let four = s.place(&gpu(4), &mut rng).expect("fits").remove(0);
    let node = four.numa_nodes[0];
    assert_eq!(four.numa_nodes.len(), 1);
    let node_cpus = &host.numa_nodes[node as usize].cpus;
    assert!(four.vcpus.iter().all(|c| node_cpus.contains(c)));
    assert!(node_cpus.contains(&four.emulator_cpu));
    assert!(!four.vcpus.contains(&four.emulator_cpu));
    assert_eq!(four.hugepages.len(), 1);
    assert_eq!(four.hugepages[0].node, node);
    let nics: Vec<u8> = four.gpus.iter().filter_map(|&m| host.paired_nic(m)).collect();
    assert_eq!(four.nics, nics);
    // vCPUs take whole cores: the first two are hyperthread siblings.
    assert_eq!(four.vcpus[1], four.vcpus[0] + 112);

    let eight = s.place(&gpu(8), &mut rng).expect("fits").remove(0);
    assert_eq!(eight.numa_nodes, vec![0, 1]);
    let on_node0 = eight.vcpus.iter().filter(|&&c| c < 56 || (112..168).contains(&c));
    assert_eq!(on_node0.count(), 48);
    assert_eq!(eight.hugepages.iter().map(|h| h.pages).collect::<Vec<_>>(), vec![400, 400]);
    assert_eq!(eight.nics.len(), 8);
}

#[test]
fn unhealthy_cordoned_and_unreachable_are_never_chosen() {
    let mut hosts = fleet(&[("su", 3)]);
    hosts[0].cordoned = true;
    hosts[1].agent_reachable = false;
    hosts[2].gpus.iter_mut().for_each(|g| g.healthy = g.module_id != 5);
    let mut s = scheduler(hosts);
    let mut rng = StdRng::seed_from_u64(4);
    assert!(matches!(s.place(&gpu(8), &mut rng), Err(PlacementError::NoFreePartition { .. })));
    let id = launch(&mut s, &gpu(4), &mut rng).remove(0);
    let p = s.allocation(&id).expect("placed").placement.clone();
    assert_eq!((p.host.as_str(), p.partition), ("su-h2", Some(1)));
    // Left on su-h2: modules 6, 7, 8 (5 is broken): a pair {6,8} and a single 7.
    let cap = s.host_capacity("su-h2").expect("host");
    assert_eq!(cap[0].launchable.to_string(), "still launchable: 0×8, 0×4, 1×2, 1×1");
    assert!(s.place(&gpu(4), &mut rng).is_err());
    // Uncordoning h0 brings its GPUs back.
    s.set_cordoned("su-h0", false).expect("host");
    launch(&mut s, &gpu(4), &mut rng);
    s.set_gpu_healthy("su-h2", 5, true).expect("gpu");
    s.audit().expect("consistent");
}

#[test]
fn rejection_names_what_is_free() {
    let mut s = scheduler(fleet(&[("su", 3)]));
    let mut rng = StdRng::seed_from_u64(5);
    launch(&mut s, &gpu(4).vms(3).group(GroupPolicy::Spread), &mut rng);
    let err = s.place(&gpu(8), &mut rng).expect_err("no whole host");
    assert_eq!(err.to_string(), "no host has 8 free H100 GPUs in one NVLink domain; 3×4 are free");
    let err =
        s.place(&PlacementRequest::gpu("B200", 1, 8, 64), &mut rng).expect_err("unknown model");
    assert_eq!(err.to_string(), "no host in this cloud has B200 GPUs");
    // Free GPUs but too much memory for their NUMA node.
    let err = s
        .place(&PlacementRequest::gpu(HGX_H100_MODEL, 4, 32, 2000), &mut rng)
        .expect_err("too big");
    assert!(matches!(err, PlacementError::NoRoomForShape { .. }), "{err}");
}

/// Launches on one named host by cordoning the others for the duration.
fn launch_on(s: &mut Scheduler, host: &str, req: &PlacementRequest, rng: &mut StdRng) {
    let others: Vec<String> = s
        .hosts()
        .iter()
        .filter(|h| h.id != host && h.schedulable())
        .map(|h| h.id.clone())
        .collect();
    for h in &others {
        s.set_cordoned(h, true).expect("host");
    }
    launch(s, req, rng);
    for h in &others {
        s.set_cordoned(h, false).expect("host");
    }
}

#[test]
fn cluster_groups_stay_in_one_scalable_unit() {
    let mut s = scheduler(fleet(&[("a", 4), ("b", 2), ("c", 4)]));
    let mut rng = StdRng::seed_from_u64(6);
    launch_on(&mut s, "a-h0", &gpu(1), &mut rng);
    launch_on(&mut s, "a-h1", &gpu(1), &mut rng);
    let cluster = gpu(8).vms(4).group(GroupPolicy::Cluster);
    let placements = s.place(&cluster, &mut rng).expect("unit c fits");
    check_request(s.hosts(), &cluster, &placements).expect("one unit");
    assert!(placements.iter().all(|p| p.host.starts_with("c-")));
    let mut hosts: Vec<&str> = placements.iter().map(|p| p.host.as_str()).collect();
    hosts.dedup();
    assert_eq!(hosts.len(), 4);
    s.set_cordoned("c-h0", true).expect("host");
    let err = s.place(&cluster, &mut rng).expect_err("no unit has 4 whole hosts");
    assert_eq!(
        err.to_string(),
        "the cluster group needs 4 hosts with 8 free H100 GPUs in one scalable unit; \
         the best scalable unit has 3"
    );
    // Growing an existing group stays in the members' unit.
    let grow = PlacementRequest {
        group: Some(PlacementGroup {
            policy: GroupPolicy::Cluster,
            member_hosts: vec!["b-h0".into()],
        }),
        ..gpu(2).vms(3)
    };
    let placements = s.place(&grow, &mut rng).expect("unit b fits");
    assert!(placements.iter().all(|p| p.host.starts_with("b-")));
}

#[test]
fn spread_groups_use_distinct_hosts_and_units() {
    let mut s = scheduler(fleet(&[("a", 2), ("b", 2), ("c", 2)]));
    let mut rng = StdRng::seed_from_u64(7);
    let spread = gpu(1).vms(3).group(GroupPolicy::Spread);
    let placements = s.place(&spread, &mut rng).expect("fits");
    check_request(s.hosts(), &spread, &placements).expect("distinct hosts");
    let mut units: Vec<char> = placements.iter().map(|p| p.host.as_bytes()[0] as char).collect();
    units.sort();
    assert_eq!(units, vec!['a', 'b', 'c']);
    let err = s.place(&gpu(1).vms(7).group(GroupPolicy::Spread), &mut rng).expect_err("6 hosts");
    assert_eq!(
        err.to_string(),
        "the spread group needs 7 VMs on different hosts; only 6 hosts have room"
    );
    let six = gpu(8).vms(6).group(GroupPolicy::Spread);
    let ids = launch(&mut s, &six, &mut rng);
    assert_eq!(ids.len(), 6);
    all_valid(&s);
}

#[test]
fn multi_vm_requests_are_all_or_nothing() {
    let mut s = scheduler(fleet(&[("su", 2)]));
    let mut rng = StdRng::seed_from_u64(8);
    let err = s.place(&gpu(8).vms(3), &mut rng).expect_err("two hosts");
    assert_eq!(
        err.to_string(),
        "only 2 of the 3 VMs fit: no host has 8 free H100 GPUs in one NVLink domain; \
         all are in use"
    );
    assert_eq!(s.vm_count(), 0);
    // Four 4-GPU VMs fill both hosts exactly.
    let ids = launch(&mut s, &gpu(4).vms(4), &mut rng);
    assert_eq!(ids.len(), 4);
    assert_eq!(s.capacity()[0].free_gpus, 0);
}

#[test]
fn cpu_only_vms_prefer_busy_hosts_and_keep_gpu_shares() {
    let config = SchedulerConfig { gpu_share: Some(GpuShare { cpus: 25, memory_gib: 220 }) };
    let mut s = Scheduler::new(fleet(&[("su", 3)]), config).expect("valid");
    let mut rng = StdRng::seed_from_u64(9);
    let busy = launch(&mut s, &gpu(8), &mut rng).remove(0);
    let busy_host = s.allocation(&busy).expect("placed").placement.host.clone();
    let cpu = PlacementRequest::cpu_only(8, 32);
    let p = s.place(&cpu, &mut rng).expect("fits").remove(0);
    assert_eq!(p.host, busy_host);
    assert_eq!(p.partition, None);
    assert!(p.gpus.is_empty() && p.nics.is_empty());

    // On idle hosts a node keeps 4 × 25 CPUs and 4 × 220 GiB for its GPUs: 12 CPUs and 80 GiB
    // are spare. A VM within that leaves every GPU launchable...
    s.set_cordoned(&busy_host, true).expect("host");
    let before = s.capacity()[0].launchable;
    launch(&mut s, &PlacementRequest::cpu_only(10, 64), &mut rng);
    assert_eq!(s.capacity()[0].launchable, before);
    // ... a larger one has to strand a GPU, and does so on one host only.
    launch(&mut s, &PlacementRequest::cpu_only(40, 64), &mut rng);
    let after = s.capacity()[0].clone();
    assert_eq!(after.free_gpus, 16);
    assert_eq!(after.launchable.x8, 1);
    all_valid(&s);
}

#[test]
fn capacity_counts_and_release_restores_it() {
    let mut s = scheduler(fleet(&[("a", 1), ("b", 1)]));
    let mut rng = StdRng::seed_from_u64(10);
    let fresh = s.capacity();
    assert_eq!(fresh[0].launchable.to_string(), "still launchable: 2×8, 0×4, 0×2, 0×1");
    let ids = launch(&mut s, &gpu(1), &mut rng);
    let cap = s.capacity()[0].clone();
    assert_eq!(cap.launchable.to_string(), "still launchable: 1×8, 1×4, 1×2, 1×1");
    assert_eq!((cap.free_gpus, cap.fragmented_gpus), (15, 7));
    let host = s.allocation(&ids[0]).expect("placed").placement.host.clone();
    let unit = &host[..1];
    let unit_cap = s.scalable_unit_capacity(unit).expect("unit");
    assert_eq!(unit_cap[0].launchable.to_string(), "still launchable: 0×8, 1×4, 1×2, 1×1");
    s.release(&ids[0]).expect("placed");
    assert_eq!(s.capacity(), fresh);
    assert!(s.release(&ids[0]).is_err());
    s.audit().expect("consistent");
}

#[test]
fn commits_are_checked_and_atomic() {
    let mut s = scheduler(fleet(&[("su", 1)]));
    let mut rng = StdRng::seed_from_u64(11);
    let p = s.place(&gpu(8), &mut rng).expect("fits").remove(0);
    let q = s.place(&gpu(1), &mut rng).expect("fits").remove(0);
    s.commit(vec![Allocation::new("big", p.clone())]).expect("fresh");
    // The single-GPU decision was made before the 8 was committed: it is stale now, and the
    // valid CPU-only VM in the same batch is not applied either.
    let cpu = s.place(&PlacementRequest::cpu_only(2, 2), &mut rng).expect("fits").remove(0);
    let err = s
        .commit(vec![Allocation::new("cpu", cpu), Allocation::new("small", q)])
        .expect_err("stale");
    assert!(err.is_stale(), "{err}");
    assert_eq!(s.vm_count(), 1);
    s.audit().expect("consistent");
    let err = s.commit(vec![Allocation::new("big", p.clone())]).expect_err("twice");
    assert_eq!(err, CommitError::AlreadyPlaced { vm: "big".into() });
    // A hand-made placement that is not a partition is refused.
    s.release("big").expect("placed");
    let mut bad = p;
    bad.partition = Some(3);
    let err = s.commit(vec![Allocation::new("bad", bad)]).expect_err("not {1,3}");
    assert!(matches!(
        err,
        CommitError::Rejected { problem: CommitProblem::GpusNotPartition { .. }, .. }
    ));
    assert!(!err.is_stale());
}

#[test]
fn load_accepts_vms_on_failed_gpus_but_commit_does_not() {
    let mut s = scheduler(fleet(&[("su", 1)]));
    let mut rng = StdRng::seed_from_u64(12);
    let p = s.place(&gpu(2), &mut rng).expect("fits").remove(0);
    s.set_gpu_healthy("su-h0", p.gpus[0], false).expect("gpu");
    let err = s.commit(vec![Allocation::new("vm", p.clone())]).expect_err("unhealthy");
    assert!(err.is_stale());
    s.load(vec![Allocation::new("vm", p)]).expect("existing VM");
    s.audit().expect("consistent");
    all_valid(&s);
}

#[test]
fn decisions_are_deterministic_for_a_seed() {
    let run = |seed| {
        let mut s = scheduler(fleet(&[("a", 8), ("b", 8)]));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut hosts = Vec::new();
        for n in [1, 2, 1, 4, 8, 1, 2, 2] {
            for id in launch(&mut s, &gpu(n), &mut rng) {
                hosts.push(s.allocation(&id).expect("placed").clone());
            }
        }
        hosts
    };
    assert_eq!(run(42), run(42));
}

#[test]
fn fleet_errors_name_the_host() {
    let hosts = fleet(&[("su", 1), ("su", 1)]);
    assert_eq!(
        Scheduler::new(hosts, SchedulerConfig::default()).err(),
        Some(FleetError::DuplicateHost("su-h0".into()))
    );
    let mut hosts = fleet(&[("su", 1)]);
    hosts[0].gpus[0].module_id = 3;
    let err = Scheduler::new(hosts, SchedulerConfig::default()).expect_err("dup module");
    assert_eq!(err.to_string(), "host su-h0: lists GPU module 3 twice");
}

#[test]
fn a_vm_goes_only_to_hosts_with_its_image() {
    let mut hosts = fleet(&[("su", 3)]);
    hosts[0].images = Some(vec!["tiny.qcow2".into()]);
    hosts[1].images = Some(vec!["tiny.qcow2".into(), "ubuntu.qcow2".into()]);
    hosts[2].images = Some(vec![]);
    let mut s = scheduler(hosts);
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..4 {
        let id = launch(&mut s, &PlacementRequest::cpu_only(4, 16).image("ubuntu.qcow2"), &mut rng);
        assert_eq!(s.allocation(&id[0]).unwrap().placement.host, "su-h1");
    }
    // Only host 0 and 1 have the tiny image; a spread pair uses both.
    let pair =
        PlacementRequest::cpu_only(2, 4).image("tiny.qcow2").vms(2).group(GroupPolicy::Spread);
    let ids = launch(&mut s, &pair, &mut rng);
    let mut on: Vec<&str> =
        ids.iter().map(|id| s.allocation(id).unwrap().placement.host.as_str()).collect();
    on.sort();
    assert_eq!(on, ["su-h0", "su-h1"]);
    let three =
        PlacementRequest::cpu_only(2, 4).image("tiny.qcow2").vms(3).group(GroupPolicy::Spread);
    assert!(matches!(
        s.place(&three, &mut rng),
        Err(PlacementError::SpreadTooSmall { vms: 3, found: 2 })
    ));

    let nowhere = PlacementRequest::cpu_only(2, 4).image("rocky.qcow2");
    let err = s.place(&nowhere, &mut rng).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no host has the image file rocky.qcow2 in its image store; choose another image or ask \
         a provider admin to copy it to the hosts"
    );
    // A host that has the image but is cordoned does not count.
    s.set_cordoned("su-h1", true).unwrap();
    let err = s.place(&PlacementRequest::cpu_only(2, 4).image("ubuntu.qcow2"), &mut rng);
    assert!(matches!(err, Err(PlacementError::NoHostWithImage { .. })), "{err:?}");
    all_valid(&s);
}

#[test]
fn hosts_that_do_not_list_images_take_any() {
    let mut hosts = fleet(&[("su", 2)]);
    hosts[0].images = Some(vec!["tiny.qcow2".into()]);
    let mut s = scheduler(hosts);
    let mut rng = StdRng::seed_from_u64(4);
    let id = launch(&mut s, &gpu(8).image("ubuntu.qcow2"), &mut rng);
    assert_eq!(s.allocation(&id[0]).unwrap().placement.host, "su-h1");
    let err = s.place(&gpu(8).image("ubuntu.qcow2"), &mut rng).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the hosts with the image file ubuntu.qcow2 in their image store have no room for this \
         VM; choose another image or a smaller instance type"
    );
}
