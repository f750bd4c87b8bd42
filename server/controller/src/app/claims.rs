//! Step 1 of a launch: decide and commit the claim, many launches per transaction.
//!
//! Launches queue up for one claim task per replica. It takes the placer's lock, drains the
//! queue and, for the whole batch, in ONE database transaction: locks the batch's tenants
//! (PostgreSQL; in id order), takes each launch from its tenant's quota budget, checks its
//! names, lets the scheduler decide (each decision is mirrored in memory at once, so the
//! next launch of the batch sees it), bumps each chosen host's claim generation if it is
//! still the one this replica last saw, and inserts the instance, GPU-claim and saga rows
//! (each launch's `instance_create` saga, see `sagas`). A
//! launch refused for quota, name or capacity is answered on its own and leaves the others
//! alone; a claim another replica made on a chosen host rolls the batch back, reloads those
//! hosts and decides again. Batching turns a round trip per claim into a few per batch, and
//! the task runs to completion even if the caller's request is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Weak;

use portal_scheduler::{Allocation, GroupPolicy, Placement, PlacementError, PlacementRequest};
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid, TenantUuid};
use portal_types::params;
use portal_types::views::{ImageView, InstanceState, InstanceType};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::Controller;
use crate::app::networking::LaunchNetwork;
use crate::app::quotas::Budget;
use crate::app::scheduling::Placer;
use crate::authz::Actor;
use crate::context::OpContext;
use crate::datastore::StoreError;
use crate::datastore::claim::{ClaimRefused, ClaimRows, ClaimTxn, GpuClaim};
use crate::datastore::entity::instance;
use crate::datastore::now_ms;
use crate::sagas::executor::NewSaga;
use crate::sagas::instance_create;

/// Claims lost to another replica are decided again, at most this many times.
const CLAIM_ATTEMPTS: usize = 64;
/// Launches decided in one transaction, at most.
const BATCH: usize = 128;
/// Launches waiting for the claim task, at most; more wait to be queued.
const QUEUE: usize = 4096;

/// A committed instance row, the name of its host, and its launch saga (whose row is
/// committed with it); no saga for an instance an earlier launch with the same idempotency
/// key made.
pub(crate) type Claimed = (instance::Model, String, Option<NewSaga>);

/// One launch waiting to be claimed.
pub(crate) struct Launch {
    /// The authorized caller (`opctx`'s actor).
    pub actor: Actor,
    /// Carried into the launch's saga.
    pub opctx: OpContext,
    pub params: params::InstanceCreate,
    /// The SSH keys to record with each VM, resolved from `params.ssh_keys` (name, line).
    pub ssh_keys: Vec<(String, String)>,
    /// The subnet and security groups to record with each VM, checked by the caller.
    pub network: LaunchNetwork,
    pub reply: oneshot::Sender<Result<Vec<Claimed>, Error>>,
    /// When it was queued (the placement histogram's start).
    pub queued: std::time::Instant,
}

/// Where launches are queued; the claim task ends when the controller is dropped.
pub(crate) struct ClaimQueue(mpsc::Sender<Launch>);

impl ClaimQueue {
    pub(crate) fn start(controller: Weak<Controller>) -> ClaimQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(claim_task(controller, rx));
        ClaimQueue(tx)
    }

    /// Queues a launch and waits for its claim.
    pub(crate) async fn claim(
        &self,
        opctx: &OpContext,
        actor: &Actor,
        params: &params::InstanceCreate,
        ssh_keys: Vec<(String, String)>,
        network: LaunchNetwork,
    ) -> Result<Vec<Claimed>, Error> {
        let (reply, answer) = oneshot::channel();
        let launch = Launch {
            actor: actor.clone(),
            opctx: opctx.for_saga(),
            params: params.clone(),
            ssh_keys,
            network,
            reply,
            queued: std::time::Instant::now(),
        };
        let stopped = || Error::unavailable("the portal is shutting down; launch again");
        self.0.send(launch).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn claim_task(controller: Weak<Controller>, mut queue: mpsc::Receiver<Launch>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(controller) = controller.upgrade() else { return };
        metrics::gauge!("portal_placement_queue_depth").set((batch.len() + queue.len()) as f64);
        let answers = controller.claim_batch(&batch).await;
        metrics::gauge!("portal_placement_queue_depth").set(queue.len() as f64);
        for (launch, answer) in batch.drain(..).zip(answers) {
            count_placement(&launch, &answer);
            if let Ok(claimed) = &answer {
                controller.instances_claimed(&launch.actor, claimed).await;
            }
            // The caller may have gone; the claim stands and the agent step runs anyway.
            let _ = launch.reply.send(answer);
        }
    }
}

/// One launch's placement in the metrics (no-ops without a recorder): its outcome, and the
/// time from being queued to being decided and committed.
fn count_placement(launch: &Launch, answer: &Result<Vec<Claimed>, Error>) {
    let result = match answer {
        Ok(_) => "placed",
        Err(Error::InsufficientCapacity { .. }) => "refused_capacity",
        // The caller's own doing: quota, a name taken, an unknown type or image.
        Err(
            Error::Forbidden { .. }
            | Error::NotFound { .. }
            | Error::InvalidRequest { .. }
            | Error::Conflict { .. },
        ) => "refused",
        Err(_) => "error",
    };
    metrics::counter!("portal_placements_total", "result" => result).increment(1);
    metrics::histogram!("portal_placement_duration_seconds")
        .record(launch.queued.elapsed().as_secs_f64());
}

/// Why a batch's transaction did not commit.
enum Abort {
    /// Another replica claimed on these hosts, or cordoned them, or saw a chosen GPU fail:
    /// reload them and decide again.
    Raced(Vec<String>),
    /// Anything else: every launch of the batch gets this error.
    Failed(Error),
}

impl From<StoreError> for Abort {
    fn from(e: StoreError) -> Self {
        Abort::Failed(e.into())
    }
}

/// The instances an earlier launch with this one's idempotency key made, if any; a conflict
/// if that launch asked for something else.
fn repeated(
    launch: &Launch,
    earlier: &HashMap<(TenantUuid, String), instance::Model>,
) -> Option<Result<Vec<Claimed>, Error>> {
    let tenant = launch.actor.tenant_id;
    let keys = launch.params.idempotency_keys();
    let found: Vec<&instance::Model> =
        keys.iter().filter_map(|k| earlier.get(&(tenant, k.clone()))).collect();
    if found.is_empty() {
        return None;
    }
    let same = found.len() == keys.len()
        && found.iter().zip(launch.params.names()).all(|(row, name)| {
            row.name == name && row.instance_type == launch.params.instance_type
        });
    if !same {
        return Some(Err(Error::Conflict {
            message: "This idempotency key was used for a different launch; use a new key for \
                      a new launch."
                .to_owned(),
        }));
    }
    let host = |row: &instance::Model| crate::app::instances::host_of(row).unwrap_or_default();
    Some(Ok(found.into_iter().map(|row| (row.clone(), host(row), None)).collect()))
}

/// A launch whose image is not (or no longer) in the catalog.
fn no_image(name: &str) -> Error {
    if name.is_empty() {
        Error::invalid("There is no image to boot; ask a provider admin to add one to the catalog.")
    } else {
        Error::invalid(format!(
            "There is no image named \"{name}\" to launch (it may have been retired); pick one \
             from the list."
        ))
    }
}

/// A scheduler refusal as one sentence for the user.
fn capacity_error(e: PlacementError) -> Error {
    let text = e.to_string();
    let mut chars = text.chars();
    let sentence = match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    };
    match e {
        PlacementError::InvalidRequest(_) => Error::invalid(sentence),
        _ => Error::InsufficientCapacity { message: sentence },
    }
}

fn placement_request(
    params: &params::InstanceCreate,
    instance_type: &InstanceType,
) -> PlacementRequest {
    let request = PlacementRequest::gpu(
        instance_type.gpu_model.clone(),
        instance_type.gpu_count,
        instance_type.vcpus,
        instance_type.memory_gib,
    )
    .vms(params.count);
    match params.placement {
        params::PlacementPolicy::Any => request,
        params::PlacementPolicy::Cluster => request.group(GroupPolicy::Cluster),
        params::PlacementPolicy::Spread => request.group(GroupPolicy::Spread),
    }
}

impl Controller {
    /// Claims a batch of launches: one answer per launch, in order.
    async fn claim_batch(&self, batch: &[Launch]) -> Vec<Result<Vec<Claimed>, Error>> {
        let mut guard = self.placer.lock().await;
        let Some(placer) = guard.as_mut() else {
            let e = Error::unavailable("launch before the agents were attached");
            return batch.iter().map(|_| Err(e.clone())).collect();
        };
        for _ in 0..CLAIM_ATTEMPTS {
            // What this attempt mirrored in the scheduler, to take back if it does not commit.
            let mut mirrored = Vec::new();
            let aborted = match self.claim_attempt(placer, batch, &mut mirrored).await {
                Ok(answers) => return answers,
                Err(abort) => abort,
            };
            for vm in &mirrored {
                let _ = placer.scheduler.release(vm);
            }
            match aborted {
                Abort::Raced(hosts) => {
                    for host_name in hosts {
                        if let Err(e) = placer.reload_host(&self.datastore, &host_name).await {
                            return batch.iter().map(|_| Err(e.clone())).collect();
                        }
                    }
                }
                Abort::Failed(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
            }
        }
        let e = Error::unavailable("lost the claim race to other replicas repeatedly");
        batch.iter().map(|_| Err(e.clone())).collect()
    }

    async fn claim_attempt(
        &self,
        placer: &mut Placer,
        batch: &[Launch],
        mirrored: &mut Vec<String>,
    ) -> Result<Vec<Result<Vec<Claimed>, Error>>, Abort> {
        let txn = self.datastore.claim_begin().await?;
        // Tenants in id order, so that replicas lock them in the same order.
        let tenants: BTreeSet<TenantUuid> = batch.iter().map(|l| l.actor.tenant_id).collect();
        let mut budgets = BTreeMap::new();
        for tenant_id in tenants {
            let (limits, used) = txn.quota_budget(tenant_id).await?;
            budgets.insert(tenant_id, Budget::new(limits, used));
        }
        let types =
            txn.instance_types_named(batch.iter().map(|l| l.params.instance_type.clone())).await?;
        let images = txn.images_for_launch(batch.iter().map(|l| l.params.image.clone())).await?;
        let mut wanted: BTreeMap<TenantUuid, Vec<String>> = BTreeMap::new();
        for launch in batch {
            wanted.entry(launch.actor.tenant_id).or_default().extend(launch.params.names());
        }
        let mut taken = txn.taken_names(wanted).await?;
        let mut keyed: BTreeMap<TenantUuid, Vec<String>> = BTreeMap::new();
        for launch in batch {
            keyed
                .entry(launch.actor.tenant_id)
                .or_default()
                .extend(launch.params.idempotency_keys());
        }
        let earlier = txn.instances_with_keys(keyed).await?;
        // A launch repeating one earlier in the batch gets that one's answer (filled below).
        let mut first_with_key: HashMap<(TenantUuid, &str), usize> = HashMap::new();
        let mut repeats = Vec::new();
        let now = now_ms();
        let mut answers = Vec::with_capacity(batch.len());
        let mut rows = ClaimRows { instances: vec![], gpus: vec![], sagas: vec![], audit: vec![] };
        let mut hosts: BTreeSet<String> = BTreeSet::new();
        for (i, launch) in batch.iter().enumerate() {
            if let Some(answer) = repeated(launch, &earlier) {
                answers.push(answer);
                continue;
            }
            let key = (launch.actor.tenant_id, launch.params.idempotency_key.as_str());
            if !key.1.is_empty() {
                if let Some(&first) = first_with_key.get(&key) {
                    repeats.push((i, first));
                    answers.push(Ok(Vec::new()));
                    continue;
                }
                first_with_key.insert(key, i);
            }
            let answer =
                match (types.get(&launch.params.instance_type), images.get(&launch.params.image)) {
                    (Some(t), Some(image)) => {
                        decide(placer, launch, t, image, &mut budgets, &mut taken, now)
                    }
                    (None, _) => {
                        Err(Error::not_found("instance type", &launch.params.instance_type))
                    }
                    (Some(_), None) => Err(no_image(&launch.params.image)),
                };
            if let Ok(claimed) = &answer {
                // Recorded with the claim, so the log never misses a launch that happened.
                let entry = crate::app::audit::entry_of(
                    Some(&launch.actor),
                    "instance.create",
                    "instance",
                    &launch.params.name,
                    "ok".to_owned(),
                );
                rows.audit.push(entry);
                for (row, host_name, saga) in claimed {
                    mirrored.push(row.id.to_string());
                    hosts.insert(host_name.clone());
                    rows.instances.push(row.clone());
                    if let Some(saga) = saga {
                        rows.sagas.push(self.sagas.row(saga).map_err(Abort::Failed)?);
                    }
                }
            }
            answers.push(answer);
        }
        for (repeat, first) in repeats {
            answers[repeat] = match &answers[first] {
                Ok(claimed) => {
                    Ok(claimed.iter().map(|(r, h, _)| (r.clone(), h.clone(), None)).collect())
                }
                Err(e) => Err(e.clone()),
            };
        }
        if rows.instances.is_empty() {
            txn.rollback().await?;
            return Ok(answers);
        }
        // One generation bump per host, whatever the number of VMs on it. Only on a host the
        // database says is not cordoned: another replica may have cordoned it.
        for host_name in &hosts {
            let (host_id, generation) = known_host(placer, host_name).map_err(Abort::Failed)?;
            if !txn.host_generation_bump(host_id, generation).await? {
                txn.rollback().await?;
                return Err(Abort::Raced(vec![host_name.clone()]));
            }
        }
        let unhealthy = chosen_failed_gpus(&txn, &rows.instances).await?;
        if !unhealthy.is_empty() {
            txn.rollback().await?;
            return Err(Abort::Raced(unhealthy));
        }
        rows.gpus = gpu_claims(placer, &rows.instances).map_err(Abort::Failed)?;
        match txn.write_and_commit(rows).await {
            Ok(()) => {}
            Err(ClaimRefused::Raced) => return Err(Abort::Raced(hosts.into_iter().collect())),
            Err(ClaimRefused::Store(e)) => return Err(e.into()),
        }
        for host_name in &hosts {
            if let Some(entry) = placer.hosts.get_mut(host_name.as_str()) {
                entry.1 += 1;
            }
        }
        mirrored.clear();
        Ok(answers)
    }
}

/// The hosts where a VM of the batch got a GPU the database says has failed (another
/// replica's watch stream may have recorded it first). A health change also bumps the
/// host's claim generation, so on PostgreSQL one committing meanwhile fails the bump above.
async fn chosen_failed_gpus(
    txn: &ClaimTxn,
    rows: &[instance::Model],
) -> Result<Vec<String>, Abort> {
    // (host id, module) → host name, for every GPU the batch chose.
    let mut chosen: HashMap<(Uuid, u8), String> = HashMap::new();
    for row in rows {
        if let (Some(host_id), Some(a)) = (row.host_id, crate::app::scheduling::allocation_of(row))
        {
            for &m in &a.placement.gpus {
                chosen.insert((host_id, m), a.placement.host.clone());
            }
        }
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let host_ids: BTreeSet<Uuid> = chosen.keys().map(|(h, _)| *h).collect();
    let failed = txn.failed_gpus(host_ids).await?;
    let hosts: BTreeSet<String> =
        failed.into_iter().filter_map(|key| chosen.get(&key).cloned()).collect();
    Ok(hosts.into_iter().collect())
}

/// Decides one launch of the batch and mirrors it in the scheduler: its rows, or why not.
fn decide(
    placer: &mut Placer,
    launch: &Launch,
    t: &InstanceType,
    image: &ImageView,
    budgets: &mut BTreeMap<TenantUuid, Budget>,
    taken: &mut HashSet<(TenantUuid, String)>,
    now: i64,
) -> Result<Vec<Claimed>, Error> {
    let Launch { actor, opctx, params, ssh_keys, network, .. } = launch;
    let ssh_keys = serde_json::to_string(ssh_keys).map_err(Error::internal)?;
    let names = params.names();
    if let Some(name) = names.iter().find(|n| taken.contains(&(actor.tenant_id, (*n).clone()))) {
        return Err(Error::Conflict {
            message: format!(
                "An instance named \"{name}\" already exists in {}; pick another name.",
                actor.tenant_name
            ),
        });
    }
    let budget = budgets
        .get_mut(&actor.tenant_id)
        .ok_or_else(|| Error::internal("a launch's tenant has no budget in its batch"))?;
    let before = budget.clone();
    budget.take(&actor.tenant_name, t, params.count)?;
    let request = placement_request(params, t).image(image.source.clone());
    let placements = match placer.scheduler.place(&request, &mut rand::rng()) {
        Ok(placements) => placements,
        Err(e) => {
            *budget = before;
            return Err(capacity_error(e));
        }
    };
    let mut keys = params.idempotency_keys().into_iter();
    let rows: Vec<Claimed> = placements
        .into_iter()
        .zip(names)
        .map(|(placement, name)| {
            let (host_id, _) = known_host(placer, &placement.host)?;
            let mut row = instance_row(actor, t, image, &request, &placement, name, host_id, now)?;
            row.idempotency_key = keys.next();
            row.ssh_keys = Some(ssh_keys.clone());
            row.user_data = (!params.user_data.trim().is_empty()).then(|| params.user_data.clone());
            row.subnet_id = network.subnet;
            row.security_groups = network.security_groups.clone();
            let params = instance_create::Params {
                opctx: opctx.clone(),
                instance_id: InstanceUuid::from_untyped_uuid(row.id),
            };
            Ok((row, placement.host, Some(instance_create::new(&params)?)))
        })
        .collect::<Result<_, Error>>()?;
    let allocations: Vec<Allocation> =
        rows.iter().filter_map(|(row, _, _)| crate::app::scheduling::allocation_of(row)).collect();
    placer.scheduler.commit(allocations).map_err(Error::internal)?;
    taken.extend(rows.iter().map(|(row, _, _)| (actor.tenant_id, row.name.clone())));
    Ok(rows)
}

/// The id and claim generation of a host the scheduler chose. (Never a panic in the claim
/// task: it serves every launch of the replica.)
fn known_host(placer: &Placer, name: &str) -> Result<(Uuid, i64), Error> {
    placer
        .hosts
        .get(name)
        .copied()
        .ok_or_else(|| Error::internal("the scheduler chose an unknown host"))
}

#[allow(clippy::too_many_arguments)]
fn instance_row(
    actor: &Actor,
    t: &InstanceType,
    image: &ImageView,
    request: &PlacementRequest,
    placement: &Placement,
    name: String,
    host_id: Uuid,
    now: i64,
) -> Result<instance::Model, Error> {
    Ok(instance::Model {
        id: Uuid::new_v4(),
        tenant_id: actor.tenant_id.into_untyped_uuid(),
        name,
        instance_type: t.name.clone(),
        state: InstanceState::Provisioning.as_str().to_owned(),
        gpu_count: request.gpu_count as i32,
        gpu_model: request.gpu_model.clone(),
        vcpus: request.vcpus as i32,
        memory_gib: request.memory_gib as i32,
        disk_gib: t.disk_gib as i32,
        host_id: Some(host_id),
        spec: Some(serde_json::to_string(placement).map_err(Error::internal)?),
        message: None,
        generation: 1,
        vm_removal: None,
        image: Some(image.name.clone()),
        image_source: Some(image.source.clone()),
        idempotency_key: None,
        ssh_keys: None,
        user_data: None,
        subnet_id: None,
        security_groups: None,
        price_micros_per_hour: Some(t.price_micros_per_hour),
        created_by: actor.user_id.into_untyped_uuid(),
        created_at: now,
        updated_at: now,
    })
}

/// The GPU-claim rows of committed instance rows (a GPU is the primary key of its claim).
fn gpu_claims(placer: &Placer, rows: &[instance::Model]) -> Result<Vec<GpuClaim>, Error> {
    let mut claims = Vec::new();
    for row in rows {
        let allocation = crate::app::scheduling::allocation_of(row)
            .ok_or_else(|| Error::internal("a claimed instance has no placement"))?;
        let host_id =
            row.host_id.ok_or_else(|| Error::internal("a claimed instance has no host"))?;
        for &module in &allocation.placement.gpus {
            let gpu_id = placer
                .gpu_ids
                .get(&(allocation.placement.host.clone(), module))
                .copied()
                .ok_or_else(|| Error::internal("the scheduler chose an unknown GPU"))?;
            claims.push((gpu_id, row.id, host_id));
        }
    }
    Ok(claims)
}
