//! The placement decision: [`Scheduler::place`] and [`PlacementError`].
//!
//! Deciding changes nothing: the result is applied with [`Scheduler::commit`] (after the
//! database has committed the same claim), so a rejected or abandoned decision leaves no trace.

use rand::Rng;
use thiserror::Error;

use crate::allocation::{NodeHugepages, Placement};
use crate::capacity::{Launchable, model_stats};
use crate::fit::Demand;
use crate::index::BucketIndex;
use crate::request::{GroupPolicy, PlacementRequest, RequestError};
use crate::scheduler::Scheduler;
use crate::score::{CpuPhase, best_partition, class_may_fit, cpu_key, cpu_node};
use crate::state::{Draft, Usage};
use crate::topology::{PARTITION_SIZES, modules_of, size_class};

/// Why a request cannot be placed. `Display` is a sentence for the user who asked: it says what
/// is missing and never names hosts or other tenants' VMs, only aggregate free capacity.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// The request is malformed (caller's fault).
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// No host in the fleet has this GPU model at all.
    #[error("no host in this cloud has {model} GPUs")]
    UnknownModel { model: String },
    /// No host has a free partition of the requested size.
    #[error("{}", no_partition_message(.model, *.gpus, .free))]
    NoFreePartition {
        model: String,
        gpus: u32,
        /// Fleet-wide launchable partitions of this model right now.
        free: Launchable,
    },
    /// Partitions of the size are free, but none with the CPUs and memory on its NUMA nodes.
    #[error(
        "hosts with {gpus} free {model} GPU{} lack {vcpus} vCPUs and {memory_gib} GiB of memory \
         on those GPUs' NUMA nodes; choose an instance type with fewer vCPUs or less memory",
        plural(*.gpus)
    )]
    NoRoomForShape { model: String, gpus: u32, vcpus: u32, memory_gib: u32 },
    /// No host that takes new VMs has the image in its image store.
    #[error(
        "no host has the image file {image} in its image store; choose another image or ask a \
         provider admin to copy it to the hosts"
    )]
    NoHostWithImage { image: String },
    /// The hosts with the image have no room for the VM.
    #[error(
        "the hosts with the image file {image} in their image store have no room for this VM; \
         choose another image or a smaller instance type"
    )]
    NoRoomWithImage { image: String },
    /// No host has room for a CPU-only VM of this size on one NUMA node.
    #[error("no host has {vcpus} vCPUs and {memory_gib} GiB of memory free on one NUMA node")]
    NoCpuRoom { vcpus: u32, memory_gib: u32 },
    /// No scalable unit has room for the whole cluster group.
    #[error("{}", cluster_message(*.vms, *.gpus, .model, *.vcpus, *.memory_gib, *.best))]
    ClusterTooSmall {
        vms: u32,
        gpus: u32,
        model: String,
        vcpus: u32,
        memory_gib: u32,
        /// Most VMs of the group the best scalable unit could take.
        best: u32,
    },
    /// Not enough distinct hosts for a spread group.
    #[error(
        "the spread group needs {vms} VMs on different hosts; only {found} host{} {} room",
        plural(*.found),
        if *.found == 1 { "has" } else { "have" }
    )]
    SpreadTooSmall { vms: u32, found: u32 },
    /// A multi-VM request fit only partly (and so was rejected entirely).
    #[error("only {placed} of the {requested} VMs fit: {cause}")]
    Partial { placed: u32, requested: u32, cause: Box<PlacementError> },
    /// The scheduler's own state is inconsistent (a bug); retrying may succeed.
    #[error("internal scheduler error; please retry")]
    Internal,
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn no_partition_message(model: &str, gpus: u32, free: &Launchable) -> String {
    let what = if gpus == 1 {
        format!("no host has a free {model} GPU")
    } else {
        format!("no host has {gpus} free {model} GPUs in one NVLink domain")
    };
    let smaller: Vec<(u32, u32)> = [4, 2, 1]
        .into_iter()
        .filter(|&size| size < gpus)
        .map(|size| (free.count(size), size))
        .filter(|&(count, _)| count > 0)
        .collect();
    match smaller.as_slice() {
        [] => format!("{what}; all are in use"),
        [(1, size)] => format!("{what}; 1×{size} is free"),
        list => {
            let list: Vec<String> = list.iter().map(|(c, s)| format!("{c}×{s}")).collect();
            format!("{what}; {} are free", list.join(", "))
        }
    }
}

fn cluster_message(vms: u32, gpus: u32, model: &str, vcpus: u32, memory: u32, best: u32) -> String {
    let unit = "in one scalable unit; the best scalable unit has";
    let (s, gs) = (plural(vms), plural(gpus));
    if gpus == 8 {
        format!("the cluster group needs {vms} host{s} with 8 free {model} GPUs {unit} {best}")
    } else if gpus > 0 {
        format!(
            "the cluster group needs room for {vms} VM{s} with {gpus} {model} GPU{gs} each \
             {unit} room for {best}"
        )
    } else {
        format!(
            "the cluster group needs room for {vms} VM{s} with {vcpus} vCPUs and {memory} GiB \
             each {unit} room for {best}"
        )
    }
}

/// What one VM of a request needs, resolved against the fleet.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    Gpu { model: u32, class: usize },
    Cpu,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    want: Want,
    vcpus: u32,
    memory: u32,
    /// Only hosts with this image (its id in `names.images`).
    image: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Partition(usize),
    Node(usize),
}

/// A host and what to take on it, with its exact best-fit key.
#[derive(Clone, Copy, Debug)]
struct Choice {
    host: u32,
    key: u32,
    target: Target,
}

/*
 * Placement algorithm
 * ===================
 *
 * Terms (per host h; all keys: lower is better, see score.rs for the bit layout)
 *   avail(h, m)  GPUs of model m that are healthy and unallocated; none if h is cordoned or
 *                its agent unreachable.
 *   P_n(h, m)    Fabric Manager partitions of h with n GPUs, all of model m, ⊆ avail(h, m).
 *                Only these are ever allocated (a 2-GPU VM gets {1,3}, never {1,2}).
 *   cost(p)      the free larger partitions p lies in (its ancestors in the 8 → 4 → 2 → 1
 *                tree that are ⊆ avail), as size bits with 8 most significant.
 *   demand(p)    vCPUs and hugepages split over p's NUMA nodes in proportion to p's GPUs
 *                there, plus one emulator CPU on p's primary node (fit.rs).
 *   reserve(p)   each node of p has the per-GPU share (GpuShare) free for p's GPUs on it.
 *   key(h, p)    (¬reserve(p), cost(p), |avail(h, m)|).
 *
 * GPU VM of n GPUs, model m
 *   The index for (m, n) files every host under min_p key(h, p) over P_n(h, m), ignoring the
 *   VM's own size. That is a lower bound of the key of any placement of this VM on h, so a
 *   best-first walk is exact: visit buckets in ascending key; in a bucket start at a random
 *   host (equal hosts share the load, and concurrent replicas rarely race for one host) and
 *   evaluate hosts exactly: the fitting p ∈ P_n(h, m) (demand(p) free) with the least key,
 *   ties to the lowest partition id. A host whose exact key equals its bucket key wins at
 *   once; otherwise remember the best and stop at the first bucket whose key is not lower.
 *   Result: among all (host, partition) pairs the VM fits, one of least key, i.e. it breaks
 *   the fewest larger free partitions, and among those packs the busiest host.
 *
 * CPU-only VM (v vCPUs + 1 emulator CPU, g GiB on one node)
 *   Phase 1 ("keep reserve"): only room beyond the share of each node's free GPUs, so no GPU
 *   is stranded. Index key: (free GPUs on the host, log2 of its largest such room). Busy
 *   hosts come first, then the tightest fit; buckets too small for v + 1 are skipped.
 *   Phase 2 ("may strand"), only if phase 1 finds nothing: any free room, hosts with fewest
 *   free GPUs first; on a host, the node that strands the fewest GPUs, then the tightest.
 *
 * Multi-VM requests are decided VM by VM on a Draft (a copy-on-write overlay of the touched
 *   hosts), so later VMs see earlier ones; touched hosts are evaluated exactly beside the
 *   index walk. Any VM failing rejects the whole request (all-or-nothing); nothing is applied.
 *   - no group: each VM as above.
 *   - cluster:  candidate scalable units (or just the members' unit) are those with at least
 *     as many free partitions of the size as VMs (capacity.rs, an upper bound). Units whose
 *     reserve-respecting fit count also suffices come first, tightest first (keeps empty
 *     units whole for the next big job), ties in random order. In a unit every host is
 *     evaluated exactly for each VM (32 hosts, no index needed). The first unit that takes
 *     all VMs wins.
 *   - spread:   each VM avoids the group's hosts; first try hosts in scalable units and on
 *     leaves the group does not use yet, then any unused host.
 *
 * Determinism: for the same state and RNG state the result is the same; the RNG only picks
 * start positions in buckets and orders equal scalable units.
 */
impl Scheduler {
    /// Decides where the request's VMs go. Changes nothing: apply the result with
    /// [`Scheduler::commit`]. All-or-nothing: either one [`Placement`] per VM (in order) or an
    /// error saying what is missing.
    pub fn place<R: Rng + ?Sized>(
        &self,
        request: &PlacementRequest,
        rng: &mut R,
    ) -> Result<Vec<Placement>, PlacementError> {
        request.validate()?;
        let want = match size_class(request.gpu_count) {
            Some(class) => Want::Gpu {
                model: self.names.models.get(&request.gpu_model).ok_or_else(|| {
                    PlacementError::UnknownModel { model: request.gpu_model.clone() }
                })?,
                class,
            },
            None => Want::Cpu,
        };
        let image = match &request.image {
            None => None,
            Some(name) => Some(self.image_on_some_host(name)?),
        };
        let shape = Shape { want, vcpus: request.vcpus, memory: request.memory_gib, image };
        let mut members = Vec::new();
        if let Some(group) = &request.group {
            for host in &group.member_hosts {
                let h = self
                    .host_by_id
                    .get(host)
                    .ok_or_else(|| RequestError::UnknownMember(host.clone()))?;
                members.push(*h);
            }
        }
        let placed = match request.group.as_ref().map(|g| g.policy) {
            None => self.place_each(&shape, request.vm_count, rng),
            Some(GroupPolicy::Cluster) => {
                self.place_cluster(&shape, request, members.first().copied(), rng)
            }
            Some(GroupPolicy::Spread) => self.place_spread(&shape, request.vm_count, &members, rng),
        };
        match (placed, &request.image) {
            // The capacity figures behind the other errors count every host, also those
            // without the image: say what was really missing.
            (
                Err(
                    PlacementError::NoFreePartition { .. }
                    | PlacementError::NoRoomForShape { .. }
                    | PlacementError::NoCpuRoom { .. },
                ),
                Some(image),
            ) if self.host_images.iter().any(Option::is_some) => {
                Err(PlacementError::NoRoomWithImage { image: image.clone() })
            }
            (placed, _) => placed,
        }
    }

    fn place_each<R: Rng + ?Sized>(
        &self,
        shape: &Shape,
        count: u32,
        rng: &mut R,
    ) -> Result<Vec<Placement>, PlacementError> {
        let mut draft = Draft::new(&self.usage);
        let mut out = Vec::with_capacity(count as usize);
        for placed in 0..count {
            match self.search(&draft, shape, |_| true, rng) {
                Some(choice) => {
                    out.push(self.take(&mut draft, choice, shape, placed + 1 == count)?)
                }
                None => return Err(partial(placed, count, self.no_room(shape, &draft))),
            }
        }
        Ok(out)
    }

    fn place_cluster<R: Rng + ?Sized>(
        &self,
        shape: &Shape,
        request: &PlacementRequest,
        member: Option<u32>,
        rng: &mut R,
    ) -> Result<Vec<Placement>, PlacementError> {
        let count = request.vm_count;
        let fixed = member.map(|h| self.topo[h as usize].su);
        let mut best = 0;
        // (lacks reserve, reserve-respecting fit, random tie-break, unit)
        let mut candidates: Vec<(bool, u32, u32, usize)> = Vec::new();
        for su in 0..self.su_hosts.len() {
            if fixed.is_some_and(|f| f as usize != su) {
                continue;
            }
            // CPU-only clusters have no per-unit figure; every unit is a candidate.
            let (fit, bound) = match shape.want {
                Want::Gpu { model, class } => {
                    let stats = &self.su_stats[su][model as usize];
                    (stats.fit[class], stats.free_parts[class])
                }
                Want::Cpu => (u32::MAX, u32::MAX),
            };
            if bound >= count {
                candidates.push((fit < count, fit, rng.random(), su));
            } else {
                best = best.max(bound);
            }
        }
        candidates.sort_unstable();
        for &(_, _, _, su) in &candidates {
            let mut draft = Draft::new(&self.usage);
            let mut out = Vec::with_capacity(count as usize);
            while out.len() < count as usize {
                match self.search_hosts(&self.su_hosts[su], &draft, shape, rng) {
                    Some(choice) => {
                        let last = out.len() + 1 == count as usize;
                        out.push(self.take(&mut draft, choice, shape, last)?);
                    }
                    None => break,
                }
            }
            if out.len() == count as usize {
                return Ok(out);
            }
            best = best.max(out.len() as u32);
        }
        Err(PlacementError::ClusterTooSmall {
            vms: count,
            gpus: request.gpu_count,
            model: request.gpu_model.clone(),
            vcpus: request.vcpus,
            memory_gib: request.memory_gib,
            best,
        })
    }

    fn place_spread<R: Rng + ?Sized>(
        &self,
        shape: &Shape,
        count: u32,
        members: &[u32],
        rng: &mut R,
    ) -> Result<Vec<Placement>, PlacementError> {
        let mut hosts: Vec<u32> = members.to_vec();
        let mut sus: Vec<u32> = members.iter().map(|&h| self.topo[h as usize].su).collect();
        let mut leaves: Vec<u32> =
            members.iter().flat_map(|&h| self.topo[h as usize].leaves.iter().copied()).collect();
        let mut draft = Draft::new(&self.usage);
        let mut out = Vec::with_capacity(count as usize);
        for placed in 0..count {
            let apart = |h: u32| {
                let t = &self.topo[h as usize];
                !hosts.contains(&h)
                    && !sus.contains(&t.su)
                    && !t.leaves.iter().any(|l| leaves.contains(l))
            };
            let choice = self
                .search(&draft, shape, apart, rng)
                .or_else(|| self.search(&draft, shape, |h| !hosts.contains(&h), rng));
            let Some(choice) = choice else {
                // Without members the first VM is unconstrained: the fleet is simply full.
                if placed == 0 && members.is_empty() {
                    return Err(self.no_room(shape, &draft));
                }
                return Err(PlacementError::SpreadTooSmall { vms: count, found: placed });
            };
            let t = &self.topo[choice.host as usize];
            hosts.push(choice.host);
            sus.push(t.su);
            leaves.extend(t.leaves.iter().copied());
            out.push(self.take(&mut draft, choice, shape, placed + 1 == count)?);
        }
        Ok(out)
    }

    /// The error for a shape that found no host, worded from fleet-wide capacity as the
    /// draft (the request's earlier VMs) leaves it.
    fn no_room(&self, shape: &Shape, draft: &Draft<'_>) -> PlacementError {
        match shape.want {
            Want::Gpu { model, class } => {
                let mut stats = self.fleet_stats[model as usize];
                for (h, usage) in draft.touched() {
                    let h = *h as usize;
                    let (t, f) = (&self.topo[h], &self.flags[h]);
                    if let Some(slot) = t.models().iter().position(|&(m, _)| m == model) {
                        stats.sub(&self.host_stats[h][slot]);
                        stats.add(&model_stats(t, f, usage, model));
                    }
                }
                let name = self.names.models.name(model).to_string();
                if stats.launchable[class..].iter().any(|&n| n > 0) {
                    PlacementError::NoRoomForShape {
                        model: name,
                        gpus: PARTITION_SIZES[class],
                        vcpus: shape.vcpus,
                        memory_gib: shape.memory,
                    }
                } else {
                    PlacementError::NoFreePartition {
                        model: name,
                        gpus: PARTITION_SIZES[class],
                        free: Launchable::from_classes(stats.launchable),
                    }
                }
            }
            Want::Cpu => PlacementError::NoCpuRoom { vcpus: shape.vcpus, memory_gib: shape.memory },
        }
    }

    /// The best choice over the whole fleet among hosts `allow` accepts.
    fn search<R: Rng + ?Sized>(
        &self,
        draft: &Draft<'_>,
        shape: &Shape,
        allow: impl Fn(u32) -> bool,
        rng: &mut R,
    ) -> Option<Choice> {
        match shape.want {
            Want::Gpu { model, class } => {
                let index = &self.gpu_index[model as usize * PARTITION_SIZES.len() + class];
                self.walk(
                    index,
                    draft,
                    &allow,
                    |_| true,
                    rng,
                    |h, u| self.eval(h, u, shape, CpuPhase::KeepReserve),
                )
            }
            Want::Cpu => {
                [CpuPhase::KeepReserve, CpuPhase::MayStrand].into_iter().find_map(|phase| {
                    let index = &self.cpu_index[phase as usize];
                    let fits = |key| class_may_fit(key, shape.vcpus + 1);
                    self.walk(index, draft, &allow, fits, rng, |h, u| self.eval(h, u, shape, phase))
                })
            }
        }
    }

    /// Best-first walk over an index (see the algorithm comment). `key_ok` skips buckets that
    /// cannot fit; `eval` computes a host's exact choice.
    fn walk<R: Rng + ?Sized>(
        &self,
        index: &BucketIndex,
        draft: &Draft<'_>,
        allow: &impl Fn(u32) -> bool,
        key_ok: impl Fn(u32) -> bool,
        rng: &mut R,
        eval: impl Fn(u32, &Usage) -> Option<Choice>,
    ) -> Option<Choice> {
        // Hosts this decision already changed are filed under stale keys: evaluate them here.
        let mut best: Option<Choice> = None;
        for (h, usage) in draft.touched() {
            if allow(*h)
                && let Some(c) = eval(*h, usage)
                && best.is_none_or(|b| c.key < b.key)
            {
                best = Some(c);
            }
        }
        for (bucket_key, hosts) in index.buckets() {
            if best.is_some_and(|b| b.key <= bucket_key) {
                break;
            }
            if !key_ok(bucket_key) {
                continue;
            }
            let start = rng.random_range(0..hosts.len());
            for &h in hosts[start..].iter().chain(&hosts[..start]) {
                if draft.is_touched(h) || !allow(h) {
                    continue;
                }
                if let Some(c) = eval(h, draft.live(h)) {
                    if c.key == bucket_key {
                        return Some(c);
                    }
                    if best.is_none_or(|b| c.key < b.key) {
                        best = Some(c);
                    }
                }
            }
        }
        best
    }

    /// The best choice among `hosts` (a scalable unit), evaluated exactly.
    fn search_hosts<R: Rng + ?Sized>(
        &self,
        hosts: &[u32],
        draft: &Draft<'_>,
        shape: &Shape,
        rng: &mut R,
    ) -> Option<Choice> {
        if hosts.is_empty() {
            return None;
        }
        let start = rng.random_range(0..hosts.len());
        let phases: &[CpuPhase] = match shape.want {
            Want::Gpu { .. } => &[CpuPhase::KeepReserve],
            Want::Cpu => &[CpuPhase::KeepReserve, CpuPhase::MayStrand],
        };
        phases.iter().find_map(|&phase| {
            let mut best: Option<Choice> = None;
            for &h in hosts[start..].iter().chain(&hosts[..start]) {
                if let Some(c) = self.eval(h, draft.usage(h), shape, phase)
                    && best.is_none_or(|b| c.key < b.key)
                {
                    best = Some(c);
                }
            }
            best
        })
    }

    /// The id of image `name`, if a schedulable host has it (a host that does not list its
    /// images counts as having every image).
    fn image_on_some_host(&self, name: &str) -> Result<u32, PlacementError> {
        let id = self.names.images.get(name);
        let somewhere = self.host_images.iter().zip(&self.flags).any(|(images, flags)| {
            flags.schedulable()
                && images
                    .as_ref()
                    .is_none_or(|ids| id.is_some_and(|id| ids.binary_search(&id).is_ok()))
        });
        match id {
            Some(id) if somewhere => Ok(id),
            // Listed nowhere, but some host does not list its images: an id no list has.
            None if somewhere => Ok(u32::MAX),
            _ => Err(PlacementError::NoHostWithImage { image: name.to_owned() }),
        }
    }

    /// A host's exact choice for one VM of `shape` given its usage (`phase` for CPU-only VMs).
    fn eval(&self, host: u32, usage: &Usage, shape: &Shape, phase: CpuPhase) -> Option<Choice> {
        let h = host as usize;
        if let (Some(image), Some(ids)) = (shape.image, &self.host_images[h])
            && ids.binary_search(&image).is_err()
        {
            return None;
        }
        let (t, f) = (&self.topo[h], &self.flags[h]);
        match shape.want {
            Want::Gpu { model, class } => {
                let vm = Some((shape.vcpus, shape.memory));
                best_partition(t, f, usage, model, class, vm).map(|(key, part)| Choice {
                    host,
                    key,
                    target: Target::Partition(part),
                })
            }
            Want::Cpu => {
                let node = cpu_node(t, f, usage, shape.vcpus, shape.memory, phase)?;
                Some(Choice { host, key: cpu_key(t, f, usage, phase)?, target: Target::Node(node) })
            }
        }
    }

    /// Describes a choice as a [`Placement`] and, unless it is the request's `last` VM, takes
    /// its resources in the draft so that the next VMs see them. (A single-VM decision thus
    /// never copies host state.)
    fn take(
        &self,
        draft: &mut Draft<'_>,
        choice: Choice,
        shape: &Shape,
        last: bool,
    ) -> Result<Placement, PlacementError> {
        let h = choice.host as usize;
        let t = &self.topo[h];
        let (demand, mask) = match choice.target {
            Target::Partition(p) => {
                let mask = t.table.parts[p].mask;
                (Demand::for_partition(t, mask, shape.vcpus, shape.memory), mask)
            }
            Target::Node(n) => (Demand::for_node(n, shape.vcpus, shape.memory), 0),
        };
        let usage = draft.usage(choice.host);
        // `eval` checked this on the same usage; a failure here is a bug.
        if !demand.fits(usage) || usage.gpu_used & mask != 0 {
            return Err(PlacementError::Internal);
        }
        let mut vcpus = Vec::with_capacity(shape.vcpus as usize);
        for d in demand.nodes() {
            let cpus = &t.nodes[d.node].cpus;
            vcpus.extend(usage.free_positions(d.node).take(d.vcpus as usize).map(|pos| cpus[pos]));
        }
        // The emulator CPU comes from the top of the list, away from the vCPUs' whole cores;
        // the node has more free CPUs than vCPUs taken, so it is not one of them.
        let emulator_cpu = demand
            .nodes()
            .iter()
            .find(|d| d.emulator)
            .and_then(|d| Some(t.nodes[d.node].cpus[usage.highest_free(d.node)?]))
            .ok_or(PlacementError::Internal)?;
        let gpus: Vec<_> = modules_of(mask).collect();
        let placement = Placement {
            host: self.hosts[h].id.clone(),
            partition: match choice.target {
                Target::Partition(p) => Some(t.table.parts[p].id),
                Target::Node(_) => None,
            },
            nics: gpus.iter().filter_map(|&m| t.gpu_nic[usize::from(m - 1)]).collect(),
            gpus,
            numa_nodes: demand.nodes().iter().map(|d| t.nodes[d.node].id).collect(),
            vcpus,
            emulator_cpu,
            hugepages: demand
                .nodes()
                .iter()
                .filter(|d| d.pages > 0)
                .map(|d| NodeHugepages { node: t.nodes[d.node].id, pages: d.pages })
                .collect(),
        };
        if !last {
            let usage = draft.usage_mut(choice.host);
            usage.gpu_used |= mask;
            for &cpu in placement.vcpus.iter().chain([&placement.emulator_cpu]) {
                if let Some((n, pos)) = t.cpu_slot(cpu) {
                    usage.take(n, pos);
                }
            }
            for d in demand.nodes() {
                usage.free[d.node].pages -= d.pages;
            }
        }
        Ok(placement)
    }
}

fn partial(placed: u32, requested: u32, cause: PlacementError) -> PlacementError {
    if placed == 0 {
        cause
    } else {
        PlacementError::Partial { placed, requested, cause: Box::new(cause) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences() {
        let free = Launchable { x8: 0, x4: 3, x2: 0, x1: 0 };
        let e = PlacementError::NoFreePartition { model: "H100".into(), gpus: 8, free };
        assert_eq!(
            e.to_string(),
            "no host has 8 free H100 GPUs in one NVLink domain; 3×4 are free"
        );
        let e = PlacementError::ClusterTooSmall {
            vms: 4,
            gpus: 8,
            model: "H100".into(),
            vcpus: 192,
            memory_gib: 1760,
            best: 2,
        };
        assert_eq!(
            e.to_string(),
            "the cluster group needs 4 hosts with 8 free H100 GPUs in one scalable unit; \
             the best scalable unit has 2"
        );
        let e = PlacementError::NoFreePartition {
            model: "H100".into(),
            gpus: 1,
            free: Launchable::default(),
        };
        assert_eq!(e.to_string(), "no host has a free H100 GPU; all are in use");
        let free = Launchable { x8: 0, x4: 1, x2: 2, x1: 0 };
        assert_eq!(
            no_partition_message("H100", 8, &free),
            "no host has 8 free H100 GPUs in one NVLink domain; 1×4, 2×2 are free"
        );
        assert_eq!(
            no_partition_message("H100", 4, &Launchable { x1: 1, ..free }),
            "no host has 4 free H100 GPUs in one NVLink domain; 2×2, 1×1 are free"
        );
    }
}
