//! The generic saga tests (omicron's names), for `instance_create` and `instance_delete`,
//! on SQLite and, when the run has one, PostgreSQL: every action run twice has one effect;
//! a failure injected at a node unwinds with nothing left; undos run twice are harmless;
//! and a replica that dies after any node is taken over by another, which finishes or
//! unwinds the saga exactly once. Transient agent errors are retried inside a step.

mod common;

use std::time::Duration;

use common::*;
use portal_controller::{Controller, ControllerConfig, Injection};
use sea_orm::{ConnectionTrait, Statement};

/// `instance_create`'s nodes, in order. The first only confirms the claim its transaction
/// committed; steno runs no undo for the node that fails, so an error is injected after it.
const CREATE_NODES: [&str; 7] = [
    "claimed",
    "port_created",
    "port_attached",
    "fabric_joined",
    "partition_activated",
    "vm_ensured",
    "running",
];
const DELETE_NODES: [&str; 3] = ["deleting", "vm_removed", "port_removed"];
const POWER_NODES: [&str; 2] = ["requested", "power_set"];

/// A short lease, so that a replica takes over a dead one's sagas quickly.
const LEASE: Duration = Duration::from_secs(1);

async fn stack(url: &str) -> Stack {
    start_with(url, 1, |c| c.saga_lease = LEASE).await
}

async fn scalar(ctl: &Controller, sql: &str) -> i64 {
    let db = ctl.datastore().connection();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Waits until every saga has finished or unwound.
async fn sagas_done(ctl: &Controller) {
    eventually(30, "every saga done", async || {
        scalar(ctl, "SELECT COUNT(*) FROM saga WHERE state <> 'done'").await == 0
    })
    .await;
}

fn vms(stack: &Stack) -> usize {
    stack.fleet.hosts().map(|h| h.vm_count()).sum()
}

/// Fabric Manager partitions active on the sim hosts.
async fn partitions(stack: &Stack) -> usize {
    let mut active = 0;
    for host in stack.fleet.hosts() {
        active += host.inventory().await.expect("inventory").active_partitions.len();
    }
    active
}

async fn claims(ctl: &Controller) -> i64 {
    scalar(ctl, "SELECT COUNT(*) FROM gpu_claim").await
}

/// The GPU claims of the instance named `name` (the replica test reuses its database).
async fn claims_of(ctl: &Controller, name: &str) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM gpu_claim JOIN instance ON instance.id = gpu_claim.instance_id \
         WHERE instance.name = '{name}'"
    );
    scalar(ctl, &sql).await
}

async fn state_of(ctl: &Controller, name: &str) -> String {
    let db = ctl.datastore().connection();
    let sql = format!("SELECT state FROM instance WHERE name = '{name}' ORDER BY created_at DESC");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .expect("the instance exists");
    row.try_get_by_index::<String>(0).unwrap()
}

/// Launches `name` (one h100x1) and waits for its saga.
async fn launched(stack: &Stack, name: &str) {
    let admin = &op(&stack.admin);
    stack.controller.instance_create(admin, &launch(name, "h100x1")).await.unwrap();
    sagas_done(&stack.controller).await;
}

/// Deletes `name` and waits for its saga.
async fn deleted(stack: &Stack, name: &str) {
    let admin = &op(&stack.admin);
    let list = stack.controller.instance_list(admin).await.unwrap();
    let id = list.iter().find(|i| i.name == name).expect("the instance is listed").id;
    stack.controller.instance_delete(admin, id).await.unwrap();
    sagas_done(&stack.controller).await;
}

/// Ports the sim DPUs hold.
fn dpu_ports(stack: &Stack) -> usize {
    stack.fleet.dpus().map(|d| d.port_count()).sum()
}

/// Nothing left of a launch or delete: no VM, no active partition, no claim, no port (in
/// the database or on a DPU), no security group membership, no GPU fabric address, no
/// tenant VPC or GPU fabric on a leaf.
async fn nothing_left(stack: &Stack) {
    eventually(10, "the VMs gone", async || vms(stack) == 0).await;
    assert_eq!(partitions(stack).await, 0);
    assert_eq!(claims(&stack.controller).await, 0);
    // A delete stopped after its VM was removed leaves the port to the reconciler's sweep.
    let ctl = &stack.controller;
    eventually(10, "the ports gone", async || {
        scalar(ctl, "SELECT COUNT(*) FROM port").await == 0
            && scalar(ctl, "SELECT COUNT(*) FROM port_security_group").await == 0
            && scalar(ctl, "SELECT COUNT(*) FROM fabric_nic").await == 0
            && dpu_ports(stack) == 0
    })
    .await;
    eventually(10, "the leaves' VPCs gone", async || {
        stack.fleet.switches().map(|s| s.vpc_count()).sum::<usize>() == 0
    })
    .await;
}

async fn actions_succeed_idempotently(url: &str) {
    let stack = stack(url).await;
    let ctl = &stack.controller;
    for node in CREATE_NODES {
        ctl.testing_inject_next_saga(Injection::Repeat(node));
    }
    launched(&stack, "twice").await;
    assert_eq!(state_of(ctl, "twice").await, "running");
    assert_eq!((vms(&stack), partitions(&stack).await), (1, 1));
    assert_eq!(claims(ctl).await, 1);
    assert_eq!((scalar(ctl, "SELECT COUNT(*) FROM port").await, dpu_ports(&stack)), (1, 1));
    assert_eq!(scalar(ctl, "SELECT COUNT(*) FROM fabric_nic").await, 1, "one address");
    for node in DELETE_NODES {
        ctl.testing_inject_next_saga(Injection::Repeat(node));
    }
    deleted(&stack, "twice").await;
    assert_eq!(state_of(ctl, "twice").await, "deleted");
    nothing_left(&stack).await;
}

/// `repeat_undos`: the nodes before the failing one run their action and undo twice.
async fn action_failure_can_unwind(url: &str, repeat_undos: bool) {
    let stack = stack(url).await;
    let ctl = &stack.controller;
    for (n, node) in CREATE_NODES.iter().enumerate().skip(1) {
        if repeat_undos {
            for earlier in &CREATE_NODES[..n] {
                ctl.testing_inject_next_saga(Injection::Repeat(earlier));
            }
        }
        ctl.testing_inject_next_saga(Injection::Error(node));
        let name = format!("fail-{}", node.replace('_', "-"));
        launched(&stack, &name).await;
        assert_eq!(state_of(ctl, &name).await, "failed", "failure at {node}");
        nothing_left(&stack).await;
    }
    for (n, node) in DELETE_NODES.iter().enumerate().skip(1) {
        let name = format!("undeleted-{}", node.replace('_', "-"));
        launched(&stack, &name).await;
        if repeat_undos {
            for earlier in &DELETE_NODES[..n] {
                ctl.testing_inject_next_saga(Injection::Repeat(earlier));
            }
        }
        ctl.testing_inject_next_saga(Injection::Error(node));
        deleted(&stack, &name).await;
        if *node == "port_removed" {
            // The VM is gone (nothing undoes that): deleted, and its port swept.
            assert_eq!(state_of(ctl, &name).await, "deleted");
            nothing_left(&stack).await;
            continue;
        }
        // A delete that did not happen: failed, to be deleted again; its VM keeps its GPU.
        assert_eq!(state_of(ctl, &name).await, "failed", "failure at {node}");
        assert_eq!((vms(&stack), claims(ctl).await), (1, 1));
        deleted(&stack, &name).await;
        assert_eq!(state_of(ctl, &name).await, "deleted");
        nothing_left(&stack).await;
    }
}

/// Stops the replica once `node` succeeded, opens another on the same database and fleet,
/// and returns it once it finished (or unwound) every saga.
async fn die_after(
    stack: &Stack,
    url: &str,
    node: &'static str,
    step: impl AsyncFnOnce(),
) -> std::sync::Arc<Controller> {
    stack.controller.testing_inject_next_saga(Injection::HangAfter(node));
    let stopped = stack.controller.testing_saga_stopped();
    step().await;
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the saga reaches the node");
    stack.controller.stop();
    let next = Controller::open(&ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        saga_lease: LEASE,
        ..ControllerConfig::new(url)
    })
    .await
    .unwrap();
    attach_all(&next, &stack.fleet, &stack.tls).await;
    sagas_done(&next).await;
    next
}

/// Stops both replicas of one round and closes their connection pools: a stopped replica's
/// tasks keep it alive, and six rounds of open pools would exhaust PostgreSQL's connections.
async fn close(replicas: &[&Controller]) {
    for replica in replicas {
        replica.stop();
        let _ = replica.datastore().connection().clone().close().await;
    }
}

async fn a_replica_dying_after_any_node_is_taken_over(url: &str) {
    for node in CREATE_NODES {
        let stack = stack(url).await;
        let admin = &op(&stack.admin);
        let name = format!("resumed-{}", node.replace('_', "-"));
        let next = die_after(&stack, url, node, async || {
            stack.controller.instance_create(admin, &launch(&name, "h100x1")).await.unwrap();
        })
        .await;
        eventually(10, "the VM runs", async || state_of(&next, &name).await == "running").await;
        assert_eq!((vms(&stack), claims_of(&next, &name).await), (1, 1), "stopped after {node}");
        close(&[&stack.controller, &next]).await;
    }
    for node in DELETE_NODES {
        let stack = stack(url).await;
        let admin = &op(&stack.admin);
        let name = format!("removed-{}", node.replace('_', "-"));
        launched(&stack, &name).await;
        let list = stack.controller.instance_list(admin).await.unwrap();
        let id = list.iter().find(|i| i.name == name).unwrap().id;
        let next = die_after(&stack, url, node, async || {
            stack.controller.instance_delete(admin, id).await.unwrap();
        })
        .await;
        assert_eq!(state_of(&next, &name).await, "deleted", "stopped after {node}");
        eventually(10, "the VM gone", async || vms(&stack) == 0).await;
        assert_eq!(claims_of(&next, &name).await, 0);
        close(&[&stack.controller, &next]).await;
    }
}

/// An agent error that may pass (the sim's injected faults answer `Unavailable`) is retried
/// inside the step: the launch runs, nothing was undone.
async fn transient_agent_errors_are_retried_inside_the_step(url: &str) {
    let stack = stack(url).await;
    for host in stack.fleet.hosts() {
        host.faults().fail_nth(sim_fleet::HostOp::DomainDefine, 1);
        host.faults().fail_nth(sim_fleet::HostOp::DomainDefine, 2);
    }
    launched(&stack, "retried").await;
    assert_eq!(state_of(&stack.controller, "retried").await, "running");
    assert_eq!((vms(&stack), claims(&stack.controller).await), (1, 1));
}

/// A replica restarted with its own id resumes its unfinished sagas at once, not after their
/// lease (an hour here).
async fn a_restarted_replica_resumes_its_own_sagas_at_once(url: &str) {
    let replica = uuid::Uuid::new_v4();
    let long = Duration::from_secs(3600);
    let stack = start_with(url, 1, |c| {
        c.saga_lease = long;
        c.replica_id = Some(replica);
    })
    .await;
    let admin = &op(&stack.admin);
    stack.controller.testing_inject_next_saga(Injection::HangAfter("partition_activated"));
    let stopped = stack.controller.testing_saga_stopped();
    stack.controller.instance_create(admin, &launch("own", "h100x1")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the saga reaches the node");
    stack.controller.stop();
    let restarted = Controller::open(&ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        saga_lease: long,
        replica_id: Some(replica),
        ..ControllerConfig::new(url)
    })
    .await
    .unwrap();
    attach_all(&restarted, &stack.fleet, &stack.tls).await;
    eventually(20, "the VM runs", async || state_of(&restarted, "own").await == "running").await;
    assert_eq!((vms(&stack), claims_of(&restarted, "own").await), (1, 1));
    close(&[&stack.controller, &restarted]).await;
}

/// `instance_power`: every action twice stops the VM once; a failure injected at its last
/// node (undos twice) leaves the instance running as it was, with a sentence; a replica
/// dying after any node is taken over and the stop happens.
async fn power_saga_generic(url: &str) {
    use portal_types::params::PowerAction;
    let stack = stack(url).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let id_of = async |name: &str| {
        let list = ctl.instance_list(admin).await.unwrap();
        list.iter().find(|i| i.name == name).unwrap().id
    };
    launched(&stack, "twice").await;
    for node in POWER_NODES {
        ctl.testing_inject_next_saga(Injection::Repeat(node));
    }
    ctl.instance_power(admin, id_of("twice").await, PowerAction::Stop).await.unwrap();
    sagas_done(ctl).await;
    eventually(20, "stopped", async || state_of(ctl, "twice").await == "stopped").await;

    launched(&stack, "refused").await;
    ctl.testing_inject_next_saga(Injection::Repeat("requested"));
    ctl.testing_inject_next_saga(Injection::Error("power_set"));
    ctl.instance_power(admin, id_of("refused").await, PowerAction::Stop).await.unwrap();
    sagas_done(ctl).await;
    assert_eq!(state_of(ctl, "refused").await, "running");
    let listed = ctl.instance_list(admin).await.unwrap();
    let refused = listed.iter().find(|i| i.name == "refused").unwrap();
    assert!(refused.message.as_deref().is_some_and(|m| m.starts_with("The stop did not happen")));
    assert_eq!(vms(&stack), 2);

    close(&[ctl]).await;
    for node in POWER_NODES {
        let stack = self::stack(url).await;
        let admin = &op(&stack.admin);
        let name = format!("taken-over-{}", node.replace('_', "-"));
        launched(&stack, &name).await;
        let list = stack.controller.instance_list(admin).await.unwrap();
        let id = list.iter().find(|i| i.name == name).unwrap().id;
        let next = die_after(&stack, url, node, async || {
            stack.controller.instance_power(admin, id, PowerAction::Stop).await.unwrap();
        })
        .await;
        eventually(20, "stopped", async || state_of(&next, &name).await == "stopped").await;
        close(&[&stack.controller, &next]).await;
    }
}

/// Runs a test on SQLite, then on PostgreSQL when the run has one.
macro_rules! on_both {
    ($name:ident, $body:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $body(&sqlite_url(stringify!($name))).await;
            if let Some(url) = postgres_url(stringify!($name)).await {
                $body(&url).await;
            }
        }
    };
}

async fn unwind(url: &str) {
    action_failure_can_unwind(url, false).await
}

async fn unwind_idempotently(url: &str) {
    action_failure_can_unwind(url, true).await
}

on_both!(instance_sagas_actions_succeed_idempotently, actions_succeed_idempotently);
on_both!(instance_sagas_action_failure_can_unwind, unwind);
on_both!(instance_sagas_action_failure_can_unwind_idempotently, unwind_idempotently);
on_both!(
    instance_sagas_retry_transient_agent_errors,
    transient_agent_errors_are_retried_inside_the_step
);
on_both!(
    instance_sagas_survive_a_replica_dying_after_any_node,
    a_replica_dying_after_any_node_is_taken_over
);
on_both!(
    instance_sagas_resume_at_once_on_the_same_replica,
    a_restarted_replica_resumes_its_own_sagas_at_once
);
on_both!(instance_power_saga_is_idempotent_unwinds_and_survives_a_replica, power_saga_generic);
