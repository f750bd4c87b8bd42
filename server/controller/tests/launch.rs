//! The walking skeleton end to end below the browser: a simulated fleet served over gRPC on
//! loopback, the control plane attached to it, and launches and deletes driven through the
//! host agents' watch streams — on SQLite, and on PostgreSQL when the test run provides one
//! (`PORTAL_TEST_POSTGRES_URL`, set by `.ci/test`).

use std::sync::Arc;
use std::time::Duration;

use portal_controller::{Controller, ControllerConfig, StartError};
use portal_types::Error;
use portal_types::params::{InstanceCreate, PlacementPolicy, QuotaLimit};
use portal_types::views::{AgentLink, InstanceState};

mod common;

use common::*;

async fn launch_run_delete(stack: &Stack) {
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let fleet = ctl.fleet_summary(admin).await.unwrap();
    assert_eq!(fleet.hosts.len(), 32);
    assert_eq!(fleet.gpus_total(), 256);
    assert_eq!(fleet.gpus_used(), 0);
    assert_eq!(fleet.dpus, 64);
    assert_eq!(fleet.switches, 8);

    let mut events = ctl.events().subscribe();
    let create = launch("train-1", "h100x2");
    let created = ctl.instance_create(admin, &create).await.unwrap().remove(0);
    assert_eq!(created.state, InstanceState::Provisioning);
    assert_eq!((created.gpu_count, created.vcpus, created.memory_gib), (2, 40, 400));
    wait_for_state(&mut events, "train-1", InstanceState::Running).await;
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 2);

    // Same name while it exists: a conflict with a sentence, nothing written.
    let again = ctl.instance_create(admin, &create).await.unwrap_err();
    assert_eq!(again.status_code(), 409, "{again}");
    assert_eq!(ctl.instance_list(admin).await.unwrap().len(), 1);

    ctl.instance_delete(admin, created.id).await.unwrap();
    wait_for_state(&mut events, "train-1", InstanceState::Deleted).await;
    assert!(ctl.instance_list(admin).await.unwrap().is_empty());
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);
    // Deleting a deleted instance: not found.
    assert_eq!(ctl.instance_delete(admin, created.id).await.unwrap_err().status_code(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_run_delete_on_sqlite() {
    let stack = start(&sqlite_url("lrd"), 1).await;
    launch_run_delete(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_run_delete_on_postgres() {
    let Some(url) = postgres_url("lrd").await else { return };
    let stack = start(&url, 1).await;
    launch_run_delete(&stack).await;
}

/// 40 concurrent 8-GPU launches for 32 hosts: exactly 32 win, the rest are told why, and no
/// GPU is claimed twice.
async fn full_fleet_race(stack: &Stack) {
    let ctl = &stack.controller;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let ctl = Arc::clone(ctl);
            let admin = stack.admin.clone();
            tokio::spawn(async move {
                ctl.instance_create(&op(&admin), &launch(&format!("big-{i}"), "h100x8")).await
            })
        })
        .collect();
    let mut won = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::InsufficientCapacity { message }) => {
                assert!(message.contains("8 free"), "{message}");
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((won, refused), (32, 8));
    let fleet = ctl.fleet_summary(&op(&stack.admin)).await.unwrap();
    assert_eq!(fleet.gpus_used(), 256);
    assert!(fleet.hosts.iter().all(|h| h.gpus_used == 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_fleet_race_on_sqlite() {
    let stack = start(&sqlite_url("race"), 1).await;
    full_fleet_race(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_fleet_race_on_postgres() {
    let Some(url) = postgres_url("race").await else { return };
    let stack = start(&url, 1).await;
    full_fleet_race(&stack).await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_sentence_and_nothing_written() {
    let stack = start(&sqlite_url("bad"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for (name, instance_type, status) in
        [("Bad Name", "h100x1", 400), ("ok", "", 400), ("", "h100x1", 400), ("ok", "h100x3", 404)]
    {
        let err = ctl.instance_create(admin, &launch(name, instance_type)).await.unwrap_err();
        assert_eq!(err.status_code(), status, "{err}");
    }
    assert!(ctl.instance_list(admin).await.unwrap().is_empty());
    // Anonymous callers get 401 from every method.
    assert_eq!(
        ctl.instance_list(&OpContext::anonymous()).await.unwrap_err(),
        Error::Unauthenticated
    );
    assert_eq!(
        ctl.fleet_summary(&OpContext::anonymous()).await.unwrap_err(),
        Error::Unauthenticated
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let stack = start(&sqlite_url("login"), 1).await;
    let ctl = &stack.controller;
    let wrong = ctl.login("admin", "wrong password", None).await.unwrap_err();
    let unknown = ctl.login("nobody", "wrong password", None).await.unwrap_err();
    assert_eq!(wrong, Error::BadCredentials);
    assert_eq!(wrong, unknown);
}

/// Serves a simulated su1-h01 at `addr` with its own certificate, until the sender is dropped
/// or sends `true`.
async fn serve_su1_h01(
    pki: &agent_common::tls::PkiDir,
    addr: std::net::SocketAddr,
) -> tokio::sync::watch::Sender<bool> {
    let name = agent_common::tls::AgentName { kind: "host", id: "su1-h01" };
    let description = sim_fleet::Topology::hgx_h100(1).hosts().remove(0);
    let sim = host_agent::SimHost::new(description, Default::default());
    let router = host_agent::HostAgentService::new(sim.manager().clone())
        .into_router(&pki.agent(name).unwrap())
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    sim_fleet::serve::serve_on(addr, router, stopped).await.unwrap();
    stop
}

async fn su1_h01_link(ctl: &Controller, admin: &portal_controller::OpContext) -> Option<AgentLink> {
    let fleet = ctl.fleet_summary(admin).await.unwrap();
    fleet.hosts.iter().find(|h| h.name == "su1-h01").map(|h| h.agent)
}

/// The control plane starts without an agent that does not answer, names it, and attaches it
/// once it does; a host the database knows is shown unreachable meanwhile and gets no VMs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_down_at_startup_is_named_shown_unreachable_and_attached_when_it_answers() {
    let pki = temp_pki("late-agent");
    pki.ensure(&[agent_common::tls::AgentName { kind: "host", id: "su1-h01" }], false).unwrap();
    let tls = pki.control_plane().unwrap();
    // Bind then drop a listener: the port is closed for the first attach.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = agent_proto::AgentEndpoint {
        kind: agent_proto::AgentKind::Host,
        id: "su1-h01".into(),
        url: format!("https://{addr}"),
    };
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(sqlite_url("late-agent"))
    };

    // First start: the agent never answered, so the fleet is empty until it does.
    let first = Controller::open(&config).await.unwrap();
    let unattached = first.attach_agents(std::slice::from_ref(&endpoint), &tls).await.unwrap();
    assert!(matches!(unattached.as_slice(), [StartError::AgentUnreachable(_)]), "{unattached:?}");
    let text = unattached[0].to_string();
    assert!(
        text.starts_with(&format!("cannot reach the host agent su1-h01 at https://{addr}")),
        "{text}"
    );
    assert!(text.ends_with("start it, or remove it from the agents file"), "{text}");
    let user = first.login("admin", PASSWORD, None).await.unwrap();
    let admin = op(&first.actor(user).await.unwrap().unwrap());
    assert_eq!(su1_h01_link(&first, &admin).await, None);
    let agent = serve_su1_h01(&pki, addr).await;
    eventually(30, "the late agent attached", async || {
        su1_h01_link(&first, &admin).await == Some(AgentLink::Connected)
    })
    .await;
    let mut events = first.events().subscribe();
    first.instance_create(&admin, &launch("late", "h100x1")).await.unwrap();
    wait_for_state(&mut events, "late", InstanceState::Running).await;
    first.stop();
    drop(agent);

    // Restart with the agent down: the host is known, shown unreachable, and gets nothing.
    let second = Controller::open(&config).await.unwrap();
    let unattached = second.attach_agents(std::slice::from_ref(&endpoint), &tls).await.unwrap();
    assert_eq!(unattached.len(), 1, "{unattached:?}");
    assert_eq!(su1_h01_link(&second, &admin).await, Some(AgentLink::Unreachable));
    let refused = second.instance_create(&admin, &launch("while-down", "h100x1")).await;
    assert!(matches!(refused, Err(Error::InsufficientCapacity { .. })), "{refused:?}");
    let _agent = serve_su1_h01(&pki, addr).await;
    eventually(30, "the agent attached again", async || {
        su1_h01_link(&second, &admin).await == Some(AgentLink::Connected)
    })
    .await;
    let mut events = second.events().subscribe();
    second.instance_create(&admin, &launch("after", "h100x1")).await.unwrap();
    wait_for_state(&mut events, "after", InstanceState::Running).await;
    second.stop();
}

/// The last 8 GPUs of the fleet, 64 concurrent 1-GPU launches: exactly 8 win.
async fn last_gpus_race(stack: &Stack) {
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for i in 0..31 {
        ctl.instance_create(admin, &launch(&format!("fill-{i}"), "h100x8")).await.unwrap();
    }
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_free(), 8);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let ctl = Arc::clone(ctl);
            let admin = stack.admin.clone();
            tokio::spawn(async move {
                ctl.instance_create(&op(&admin), &launch(&format!("last-{i}"), "h100x1")).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::InsufficientCapacity { message }) => {
                assert!(message.starts_with("No host has a free H100"), "{message}");
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(won, 8);
    let fleet = ctl.fleet_summary(admin).await.unwrap();
    assert_eq!((fleet.gpus_used(), fleet.gpus_free()), (256, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_gpus_race_on_sqlite() {
    let stack = start(&sqlite_url("last"), 1).await;
    last_gpus_race(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_gpus_race_on_postgres() {
    let Some(url) = postgres_url("last").await else { return };
    let stack = start(&url, 1).await;
    last_gpus_race(&stack).await;
}

/// A GPU quota of 4 and 16 concurrent 1-GPU launches: exactly 4 win, the rest are told
/// what is left; usage is reported against the quota.
async fn quota_race(stack: &Stack) {
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let tenant = stack.admin.tenant_id;
    ctl.quota_set(admin, tenant, "gpus:H100-SXM5-80GB", QuotaLimit::Max(4)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let ctl = Arc::clone(ctl);
            let admin = stack.admin.clone();
            tokio::spawn(async move {
                ctl.instance_create(&op(&admin), &launch(&format!("q-{i}"), "h100x1")).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict { message }) => {
                assert!(message.contains("quota of 4"), "{message}");
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(won, 4);
    // Each launch is in the audit log once: the 4 with their claim, the 12 with their refusal.
    let audit =
        ctl.audit_list(admin, Some("instance.create"), None, &newest()).await.unwrap().items;
    assert_eq!(audit.iter().filter(|e| e.outcome == "ok").count(), 4);
    assert_eq!(audit.iter().filter(|e| e.outcome.starts_with("409")).count(), 12);
    let quota = ctl.quota_get(admin, None).await.unwrap();
    let gpus = quota.lines.iter().find(|l| l.resource == "gpus:H100-SXM5-80GB").unwrap();
    assert_eq!((gpus.used, gpus.limit), (4, Some(4)));
    // CPU-only VMs do not count against the GPU quota.
    ctl.instance_create(admin, &launch("cpu-1", "c8m32")).await.unwrap();
    // Lifting the limit lets the next launch through.
    ctl.quota_set(admin, tenant, "gpus:H100-SXM5-80GB", QuotaLimit::Unlimited).await.unwrap();
    ctl.instance_create(admin, &launch("q-after", "h100x1")).await.unwrap();
    // Eight launches of one name at once (most of them decided in one batch): one wins.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ctl = Arc::clone(ctl);
            let admin = stack.admin.clone();
            tokio::spawn(async move {
                ctl.instance_create(&op(&admin), &launch("twin", "h100x1")).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert!(e.to_string().contains("already exists"), "{e}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_race_on_sqlite() {
    let stack = start(&sqlite_url("quota"), 1).await;
    quota_race(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_race_on_postgres() {
    let Some(url) = postgres_url("quota").await else { return };
    let stack = start(&url, 1).await;
    quota_race(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cpu_only_vms_run_and_capacity_counts_partitions() {
    let stack = start(&sqlite_url("cpu"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let before = ctl.capacity(admin).await.unwrap();
    assert_eq!(before.fleet[0].launchable.x8, 32);
    assert_eq!(before.scalable_units.len(), 1);

    let mut events = ctl.events().subscribe();
    let cpu = ctl.instance_create(admin, &launch("web-1", "c16m64")).await.unwrap().remove(0);
    assert_eq!((cpu.gpu_count, cpu.vcpus), (0, 16));
    wait_for_state(&mut events, "web-1", InstanceState::Running).await;

    ctl.instance_create(admin, &launch("one", "h100x1")).await.unwrap();
    let after = ctl.capacity(admin).await.unwrap();
    let l = after.fleet[0].launchable;
    // One host lost its 8-partition to the 1-GPU VM: 1×4 + 1×2 + 1×1 remain there.
    assert_eq!((l.x8, l.x4, l.x2, l.x1), (31, 1, 1, 1), "{l}");
}

/// Groups are all or nothing: a cluster of 4 × 8 GPUs lands in one scalable unit on 4
/// hosts; a spread group uses distinct hosts; a group that does not fit leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_groups_are_all_or_nothing() {
    let stack = start(&sqlite_url("groups"), 2).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let cluster = InstanceCreate {
        count: 4,
        placement: PlacementPolicy::Cluster,
        ..launch("train", "h100x8")
    };
    let vms = ctl.instance_create(admin, &cluster).await.unwrap();
    let names: Vec<_> = vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["train-1", "train-2", "train-3", "train-4"]);
    let hosts: std::collections::HashSet<_> =
        vms.iter().map(|v| v.host_name.clone().unwrap()).collect();
    assert_eq!(hosts.len(), 4);
    let units: std::collections::HashSet<_> =
        hosts.iter().map(|h| h.split('-').next().unwrap().to_owned()).collect();
    assert_eq!(units.len(), 1, "{hosts:?}");

    let spread =
        InstanceCreate { count: 3, placement: PlacementPolicy::Spread, ..launch("web", "h100x1") };
    let vms = ctl.instance_create(admin, &spread).await.unwrap();
    let hosts: std::collections::HashSet<_> =
        vms.iter().map(|v| v.host_name.clone().unwrap()).collect();
    assert_eq!(hosts.len(), 3);

    // 2 scalable units of 32 hosts: a cluster of 33 full hosts cannot fit in one unit.
    let before = ctl.instance_list(admin).await.unwrap().len();
    let too_big = InstanceCreate {
        count: 33,
        placement: PlacementPolicy::Cluster,
        ..launch("huge", "h100x8")
    };
    let err = ctl.instance_create(admin, &too_big).await.unwrap_err();
    assert_eq!(err.status_code(), 507, "{err}");
    assert!(err.to_string().contains("scalable unit"), "{err}");
    assert_eq!(ctl.instance_list(admin).await.unwrap().len(), before, "nothing half-written");

    // A member name already taken refuses the whole group.
    let clash = InstanceCreate { count: 2, ..launch("train", "h100x1") };
    let err = ctl.instance_create(admin, &clash).await.unwrap_err();
    assert_eq!(err.status_code(), 409, "{err}");
    assert_eq!(ctl.instance_list(admin).await.unwrap().len(), before);
}

/// A cordoned host gets no new VMs and keeps its running ones; uncordoned it is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cordoned_hosts_get_no_new_vms() {
    let stack = start(&sqlite_url("cordon"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let first = ctl.instance_create(admin, &launch("keep", "h100x8")).await.unwrap().remove(0);
    let host = first.host_name.unwrap();
    // Cordon every other host but one.
    let fleet = ctl.fleet_summary(admin).await.unwrap();
    let others: Vec<_> =
        fleet.hosts.iter().map(|h| h.name.clone()).filter(|n| *n != host).collect();
    for name in &others[1..] {
        ctl.host_set_cordoned(admin, name, true).await.unwrap();
    }
    ctl.instance_create(admin, &launch("last", "h100x8")).await.unwrap();
    let err = ctl.instance_create(admin, &launch("none", "h100x1")).await.unwrap_err();
    assert_eq!(err.status_code(), 507, "{err}");
    assert!(
        ctl.fleet_summary(admin).await.unwrap().hosts.iter().filter(|h| h.cordoned).count() == 30
    );
    ctl.host_set_cordoned(admin, &others[1], false).await.unwrap();
    let back = ctl.instance_create(admin, &launch("back", "h100x1")).await.unwrap().remove(0);
    assert_eq!(back.host_name.as_deref(), Some(others[1].as_str()));
    assert_eq!(
        ctl.host_set_cordoned(admin, "no-such-host", true).await.unwrap_err().status_code(),
        404
    );
}

/// A host that never finishes booting: the launch is undone at its deadline, the VM removed
/// from the host, the GPUs released and the instance says why; a launch whose agent call
/// failed outright is undone at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stuck_and_refused_launches_are_undone() {
    // Long enough for the steps before the start (the port, the 4 rail leaves taking the GPU
    // fabric) on a loaded machine; the start itself never comes.
    let stack = start_with_deadline(&sqlite_url("deadline"), 1, Duration::from_secs(8)).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for host in stack.fleet.hosts() {
        host.faults().delay(sim_fleet::HostOp::DomainStart, Duration::from_secs(3600));
    }
    let mut events = ctl.events().subscribe();
    let stuck = ctl.instance_create(admin, &launch("stuck", "h100x4")).await.unwrap().remove(0);
    wait_for_state(&mut events, "stuck", InstanceState::Failed).await;
    let row =
        ctl.instance_list(admin).await.unwrap().into_iter().find(|i| i.id == stuck.id).unwrap();
    assert!(
        row.message.as_deref().unwrap_or("").contains("did not start within 1 minute"),
        "{row:?}"
    );
    let host = stack.fleet.host(stuck.host_name.as_deref().unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while host.vm_count() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the VM is removed from its host");
    // The GPUs are released once the host confirmed the VM is gone, not before.
    eventually(10, "the release", async || {
        ctl.fleet_summary(admin).await.unwrap().gpus_used() == 0
    })
    .await;

    for host in stack.fleet.hosts() {
        host.faults().clear();
        host.faults().fail_always(sim_fleet::HostOp::DomainDefine);
    }
    ctl.instance_create(admin, &launch("refused", "h100x1")).await.unwrap();
    wait_for_state(&mut events, "refused", InstanceState::Failed).await;
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);
}

/// After five wrong passwords an account must wait before the next attempt, even with the
/// right password, on every replica; other accounts are unaffected.
#[tokio::test]
async fn repeated_failures_slow_the_account_down_on_every_replica() {
    let url = sqlite_url("throttle");
    let stack = start(&url, 1).await;
    let ctl = &stack.controller;
    // A second replica on the same database shares the count.
    let other = Controller::open(&ControllerConfig::new(&url)).await.unwrap();
    let client = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    for i in 0..5 {
        let replica = if i % 2 == 0 { ctl } else { &other };
        assert_eq!(
            replica.login("admin", "wrong", client).await.unwrap_err(),
            Error::BadCredentials
        );
    }
    assert!(matches!(other.login("admin", PASSWORD, None).await, Err(Error::Throttled { .. })));
    let slowed = ctl.login("admin", PASSWORD, client).await.unwrap_err();
    assert!(matches!(slowed, Error::Throttled { retry_after_secs: 1 }), "{slowed:?}");
    assert_eq!(slowed.status_code(), 429);
    assert!(slowed.to_string().starts_with("Too many failed sign-in attempts; try again in"));
    assert_eq!(ctl.login("nobody", "wrong", None).await.unwrap_err(), Error::BadCredentials);
    // The wait is short and refused attempts do not lengthen it: the owner gets in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ctl.login("admin", PASSWORD, client).await.expect("the right password after the wait");
}

/// A burst of concurrent guesses is counted before any password is hashed: only the free
/// failures reach the password check, every other guess is refused as throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_are_counted_before_hashing() {
    let stack = start(&sqlite_url("guesses"), 1).await;
    let ctl = stack.controller.clone();
    let guesses = (0..64).map(|i| {
        let ctl = ctl.clone();
        let client = Some(std::net::IpAddr::from([127, 1, 0, i as u8 + 1]));
        tokio::spawn(async move { ctl.login("admin", "wrong", client).await.unwrap_err() })
    });
    let results = futures::future::join_all(guesses).await;
    let checked = results.iter().filter(|r| *r.as_ref().unwrap() == Error::BadCredentials).count();
    let throttled =
        results.iter().filter(|r| matches!(r.as_ref().unwrap(), Error::Throttled { .. })).count();
    assert!(checked <= 5, "{checked} guesses reached the password check");
    assert_eq!(checked + throttled, 64);
}

/// The control plane goes down; meanwhile one VM vanishes from its host. The next control
/// plane on the same database learns it from the host's snapshot: that instance failed with
/// a sentence, the other one still runs, and deleting the failed one frees its GPUs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vm_that_vanished_while_the_control_plane_was_down_is_failed() {
    let url = sqlite_url("vanished");
    let stack = start(&url, 1).await;
    let first = &stack.controller;
    let admin = &op(&stack.admin);
    let kept = first.instance_create(admin, &launch("kept", "h100x8")).await.unwrap().remove(0);
    let lost = first.instance_create(admin, &launch("lost", "h100x8")).await.unwrap().remove(0);
    // Either may run first (their sagas run side by side).
    eventually(20, "both running", async || {
        let list = first.instance_list(admin).await.unwrap();
        list.iter().filter(|i| i.state == InstanceState::Running).count() == 2
    })
    .await;
    first.stop();

    let host = stack.fleet.host(lost.host_name.as_deref().unwrap()).expect("sim host");
    host.vm_remove(&lost.id.to_string(), 0).await.expect("the VM goes");
    tokio::time::timeout(Duration::from_secs(10), async {
        while host.vm_status(&lost.id.to_string()).is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sim host deletes the VM");

    let second = Controller::open(&ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(&url)
    })
    .await
    .unwrap();
    attach_all(&second, &stack.fleet, &stack.tls).await;
    let admin = second.actor(stack.admin.user_id).await.unwrap().unwrap();
    let admin = &op(&admin);
    let failed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let list = second.instance_list(admin).await.unwrap();
            if let Some(i) =
                list.iter().find(|i| i.id == lost.id && i.state == InstanceState::Failed)
            {
                return i.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the vanished VM is marked failed");
    assert!(failed.message.unwrap().contains("no longer on its host"));
    let list = second.instance_list(admin).await.unwrap();
    let still = list.iter().find(|i| i.id == kept.id).unwrap();
    assert_eq!(still.state, InstanceState::Running);

    let mut events = second.events().subscribe();
    second.instance_delete(admin, lost.id).await.unwrap();
    wait_for_state(&mut events, "lost", InstanceState::Deleted).await;
    assert_eq!(second.fleet_summary(admin).await.unwrap().gpus_used(), 8);
}

/// Deleted while its EnsureVm is still on the way: the agent removes nothing (yet), the
/// claims are released, and when the late EnsureVm arrives the agent refuses it, so no VM
/// appears on a host whose GPUs the portal already gave back. The instance stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_deleted_before_its_vm_existed_never_starts() {
    let stack = start(&sqlite_url("late-ensure"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for host in stack.fleet.hosts() {
        host.faults().delay(sim_fleet::HostOp::DomainDefine, Duration::from_millis(500));
    }
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("fleeting", "h100x8")).await.unwrap().remove(0);
    ctl.instance_delete(admin, vm.id).await.unwrap();
    wait_for_state(&mut events, "fleeting", InstanceState::Deleted).await;
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);

    // Well after the delayed EnsureVm arrived: refused, and the row is still deleted.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let host = stack.fleet.host(vm.host_name.as_deref().unwrap()).unwrap();
    assert_eq!(host.vm_count(), 0, "the late EnsureVm did not create the VM");
    assert!(ctl.instance_list(admin).await.unwrap().is_empty());
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);
}

/// Four replicas start at once on an empty PostgreSQL database: they take turns, so one
/// migrates and seeds, and all four come up with one admin and one catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_on_postgres_take_turns() {
    let Some(url) = postgres_url("replicas").await else { return };
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(&url)
    };
    let opened = futures::future::join_all((0..4).map(|_| Controller::open(&config))).await;
    let replicas: Vec<_> = opened.into_iter().map(|r| r.expect("every replica starts")).collect();
    let user = replicas[3].login("admin", PASSWORD, None).await.expect("one admin");
    let admin = replicas[0].actor(user).await.unwrap().unwrap();
    let types = replicas[1].instance_type_list(&op(&admin)).await.unwrap();
    assert_eq!(types.len(), 7, "the catalog was seeded once");
}

/// The image catalog: seeded images, launches record the image they boot (the newest by
/// default), bad and duplicate images are refused with a sentence, and a retired image is
/// offered and launched no more while its instances keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_launched_by_name_and_retired_ones_no_more() {
    let stack = start(&sqlite_url("images"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let names = |list: Vec<portal_types::views::ImageView>| {
        list.into_iter().map(|i| i.name).collect::<Vec<_>>()
    };
    let seeded = names(ctl.image_list(admin, false).await.unwrap());
    assert_eq!(seeded, ["ubuntu-24.04-cuda-12.8", "ubuntu-22.04-cuda-12.4", "tiny-test"]);

    let mut events = ctl.events().subscribe();
    let default = ctl.instance_create(admin, &launch("default-image", "h100x1")).await.unwrap();
    assert_eq!(default[0].image.as_deref(), Some("ubuntu-24.04-cuda-12.8"));
    let older =
        InstanceCreate { image: "ubuntu-22.04-cuda-12.4".into(), ..launch("older", "c8m32") };
    let older = ctl.instance_create(admin, &older).await.unwrap().remove(0);
    assert_eq!(older.image.as_deref(), Some("ubuntu-22.04-cuda-12.4"));
    wait_for_state(&mut events, "older", InstanceState::Running).await;

    let custom = portal_types::params::ImageCreate {
        name: "rocky-9".into(),
        os: "Rocky Linux 9".into(),
        cuda_version: String::new(),
        driver_version: String::new(),
        default_user: "rocky".into(),
        source: "rocky-9.qcow2".into(),
    };
    let bad =
        portal_types::params::ImageCreate { source: "../etc/passwd".into(), ..custom.clone() };
    let refused = ctl.image_create(admin, &bad).await.unwrap_err();
    assert!(refused.to_string().contains("is not a file name in the image store"), "{refused}");
    let created = ctl.image_create(admin, &custom).await.unwrap();
    assert_eq!(ctl.image_create(admin, &custom).await.unwrap_err().status_code(), 409);
    assert_eq!(names(ctl.image_list(admin, false).await.unwrap())[0], "rocky-9");

    let retired = ctl.image_retire(admin, created.id).await.unwrap();
    assert!(retired.retired);
    assert!(!names(ctl.image_list(admin, false).await.unwrap()).contains(&"rocky-9".to_owned()));
    assert!(names(ctl.image_list(admin, true).await.unwrap()).contains(&"rocky-9".to_owned()));
    let on_retired = InstanceCreate { image: "rocky-9".into(), ..launch("late", "c8m32") };
    let refused = ctl.instance_create(admin, &on_retired).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "There is no image named \"rocky-9\" to launch (it may have been retired); pick one \
         from the list."
    );
    // Retiring the image an instance booted changes nothing for it.
    let ubuntu_22 = ctl.image_list(admin, false).await.unwrap();
    let ubuntu_22 = ubuntu_22.iter().find(|i| i.name == "ubuntu-22.04-cuda-12.4").unwrap();
    ctl.image_retire(admin, ubuntu_22.id).await.unwrap();
    let listed = ctl.instance_list(admin).await.unwrap();
    let older_now = listed.iter().find(|i| i.name == "older").unwrap();
    assert_eq!(older_now.image.as_deref(), Some("ubuntu-22.04-cuda-12.4"));
    assert_eq!(older_now.state, InstanceState::Running);

    // The launch form's choices: current images only, newest first; types GPU first; the
    // tenant's default network preselected.
    let options = ctl.launch_options(admin).await.unwrap();
    let values = |c: &[portal_types::views::LaunchChoice]| {
        c.iter().map(|c| c.value.clone()).collect::<Vec<_>>()
    };
    assert_eq!(values(&options.images), ["ubuntu-24.04-cuda-12.8", "tiny-test"]);
    assert_eq!(options.instance_types[0].value, "h100x1");
    assert!(options.instance_types[0].label.starts_with("h100x1 — 1 × H100-SXM5-80GB · 20 vCPUs"));
    assert!(options.ssh_keys.is_empty());
    assert_eq!(options.subnets[0].label, "default / default (10.0.0.0/20)");
    let preselected: Vec<_> =
        options.security_groups.iter().filter(|g| g.preselected).map(|g| &g.label).collect();
    assert_eq!(preselected, ["default"]);
}

/// 100 identical launches at once with one idempotency key make one instance (every caller
/// gets it); the key again later returns it; the key with other parameters is a conflict.
async fn idempotent_launches(url: &str) {
    let stack = start(url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let once = InstanceCreate { idempotency_key: "retry-me-1".into(), ..launch("once", "h100x1") };
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (ctl, admin, once) = (Arc::clone(ctl), admin.clone(), once.clone());
            tokio::spawn(async move { ctl.instance_create(&admin, &once).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for call in calls {
        let views = call.await.unwrap().unwrap();
        assert_eq!(views.len(), 1);
        ids.insert(views[0].id);
    }
    assert_eq!(ids.len(), 1, "one instance for 100 identical requests");
    let listed = ctl.instance_list(admin).await.unwrap();
    assert_eq!(listed.iter().filter(|i| i.name == "once").count(), 1);
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 1);
    let again = ctl.instance_create(admin, &once).await.unwrap();
    assert_eq!(again[0].id, *ids.first().unwrap());
    let other =
        InstanceCreate { idempotency_key: "retry-me-1".into(), ..launch("other", "h100x1") };
    assert_eq!(ctl.instance_create(admin, &other).await.unwrap_err().status_code(), 409);
    // A group: each VM keeps its own key; the repeat returns the whole group.
    let group =
        InstanceCreate { count: 3, idempotency_key: "group-1".into(), ..launch("grp", "h100x1") };
    let first = ctl.instance_create(admin, &group).await.unwrap();
    let repeat = ctl.instance_create(admin, &group).await.unwrap();
    assert_eq!(
        first.iter().map(|v| v.id).collect::<Vec<_>>(),
        repeat.iter().map(|v| v.id).collect::<Vec<_>>()
    );
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_launches_on_sqlite() {
    idempotent_launches(&sqlite_url("idempotent")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_launches_on_postgres() {
    if let Some(url) = postgres_url("idempotent").await {
        idempotent_launches(&url).await;
    }
}

/// Stop, start, reboot and power off through the host: each answers with the transitional
/// state and the host's watch stream brings the end state; refused actions say what is
/// possible; a stopped instance keeps its GPU and is deleted like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_stop_start_reboot_and_power_off() {
    use portal_types::params::PowerAction;
    let stack = start(&sqlite_url("power"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("powered", "h100x1")).await.unwrap().remove(0);
    let early = ctl.instance_power(admin, vm.id, PowerAction::Stop).await.unwrap_err();
    assert_eq!(
        early.to_string(),
        "powered is provisioning, so it cannot stop; wait until it runs."
    );
    wait_for_state(&mut events, "powered", InstanceState::Running).await;

    let stopping = ctl.instance_power(admin, vm.id, PowerAction::Stop).await.unwrap();
    assert_eq!(stopping.state, InstanceState::Stopping);
    wait_for_state(&mut events, "powered", InstanceState::Stopped).await;
    assert_eq!(
        ctl.fleet_summary(admin).await.unwrap().gpus_used(),
        1,
        "a stopped VM keeps its GPU"
    );
    let refused = ctl.instance_power(admin, vm.id, PowerAction::Reboot).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "powered is stopped, so it cannot reboot; you can start it now."
    );

    let starting = ctl.instance_power(admin, vm.id, PowerAction::Start).await.unwrap();
    assert_eq!(starting.state, InstanceState::Starting);
    wait_for_state(&mut events, "powered", InstanceState::Running).await;
    let rebooting = ctl.instance_power(admin, vm.id, PowerAction::Reboot).await.unwrap();
    assert_eq!(rebooting.state, InstanceState::Rebooting);
    wait_for_state(&mut events, "powered", InstanceState::Running).await;
    ctl.instance_power(admin, vm.id, PowerAction::PowerOff).await.unwrap();
    wait_for_state(&mut events, "powered", InstanceState::Stopped).await;

    ctl.instance_delete(admin, vm.id).await.unwrap();
    wait_for_state(&mut events, "powered", InstanceState::Deleted).await;
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);
    assert_eq!(stack.fleet.hosts().map(|h| h.vm_count()).sum::<usize>(), 0);
}

/// A launch puts the caller's chosen SSH keys and the instance's name as host name into the
/// VM's spec, records the key names with the instance, and refuses a key that is not theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_put_the_chosen_ssh_keys_into_the_vm() {
    let stack = start(&sqlite_url("launch-keys"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti me@laptop";
    let create =
        portal_types::params::SshKeyCreate { name: "laptop".into(), public_key: line.into() };
    let key = ctl.ssh_key_create(admin, &create).await.unwrap();
    let mut events = ctl.events().subscribe();
    let user_data = "#cloud-config\npackages: [htop]\n".to_owned();
    let with_key = InstanceCreate {
        ssh_keys: vec![key.id],
        user_data: user_data.clone(),
        ..launch("keyed", "c8m32")
    };
    let vm = ctl.instance_create(admin, &with_key).await.unwrap().remove(0);
    assert_eq!(vm.ssh_keys, ["laptop"]);
    wait_for_state(&mut events, "keyed", InstanceState::Running).await;
    let host = stack.fleet.host(vm.host_name.as_deref().unwrap()).unwrap();
    let spec = host.manager().vm_spec(&vm.id.to_string()).expect("the host has the VM");
    assert_eq!(spec.ssh_authorized_keys, [line]);
    assert_eq!(spec.hostname, "keyed");
    assert_eq!(spec.user_data, user_data);
    assert_eq!(spec.image, "ubuntu-24.04-cuda-12.8.qcow2");

    let not_cloud_init =
        InstanceCreate { user_data: "apt install htop".into(), ..launch("bad-data", "c8m32") };
    let err = ctl.instance_create(admin, &not_cloud_init).await.unwrap_err();
    assert!(err.to_string().starts_with("User data starts with #cloud-config"), "{err}");

    let foreign = portal_types::ids::SshKeyUuid::new_v4();
    let refused = InstanceCreate { ssh_keys: vec![foreign], ..launch("unkeyed", "c8m32") };
    let err = ctl.instance_create(admin, &refused).await.unwrap_err();
    assert_eq!(err.status_code(), 400, "{err}");
    assert!(err.to_string().contains("is not one of your keys"), "{err}");
}

/// On PostgreSQL, a browser on one replica sees what another replica does, live: the events
/// cross over LISTEN/NOTIFY, each exactly once, and a replica's own events are not echoed
/// back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_cross_replicas_once() {
    use portal_types::views::LiveEvent;
    let Some(url) = postgres_url("event_relay").await else { return };
    let stack = start(&url, 1).await;
    let other = Controller::open(&ControllerConfig::new(&url)).await.unwrap();
    let mut on_other = other.events().subscribe();
    let mut on_first = stack.controller.events().subscribe();
    // The listener of the other replica is up once an event of the first reaches it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        stack.controller.events().publish(None, LiveEvent::FleetChanged);
        match tokio::time::timeout(Duration::from_millis(500), on_other.recv()).await {
            Ok(Ok(_)) => break,
            _ => assert!(std::time::Instant::now() < deadline, "no event crossed"),
        }
    }
    while on_other.try_recv().is_ok() {}
    while on_first.try_recv().is_ok() {}

    let made = stack.controller.instance_create(&op(&stack.admin), &launch("seen", "c8m32")).await;
    let id = made.unwrap()[0].id;
    let mut states = Vec::new();
    while !states.contains(&InstanceState::Running) {
        let event = tokio::time::timeout(Duration::from_secs(20), on_other.recv())
            .await
            .expect("the launch reaches the other replica")
            .unwrap();
        if let LiveEvent::Instance(i) = event.event
            && i.id == id
        {
            assert_eq!(event.tenant_id, Some(stack.admin.tenant_id));
            states.push(i.state);
        }
    }
    assert_eq!(states, [InstanceState::Provisioning, InstanceState::Running], "each once");

    // The other replica's own events reach its browsers once, not again through the relay,
    // and reach the first replica.
    other.events().publish(Some(stack.admin.tenant_id), LiveEvent::FleetChanged);
    let own = tokio::time::timeout(Duration::from_secs(5), on_other.recv()).await.unwrap();
    assert!(matches!(own.unwrap().event, LiveEvent::FleetChanged));
    let crossed = async {
        loop {
            let e = on_first.recv().await.unwrap();
            if e.tenant_id.is_some() && matches!(e.event, LiveEvent::FleetChanged) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), crossed).await.expect("it crosses back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let echoed = std::iter::from_fn(|| on_other.try_recv().ok())
        .filter(|e| e.tenant_id.is_some() && matches!(e.event, LiveEvent::FleetChanged))
        .count();
    assert_eq!(echoed, 0, "a replica's own event came back to it");
}
