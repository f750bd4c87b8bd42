//! An instance's serial console (`Controller::instance_console`) against the simulated
//! fleet, whose guests print a boot banner and a `<hostname>:~$ ` prompt and echo what is
//! typed: members type, viewers only watch, another tenant's instance and an unknown one are
//! not found, a user has at most 8 consoles open on all replicas together, and deleting the VM ends its consoles — on SQLite, and on PostgreSQL when the
//! test run provides one.

mod common;

use common::*;
use portal_controller::{
    Console, ConsoleStream, Controller, ControllerConfig, MAX_CONSOLES_PER_USER,
};
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::views::InstanceState;

/// Reads the console into `seen` until it contains `wanted` (10 s at most).
async fn read_until(output: &mut ConsoleStream, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(wanted) {
        match tokio::time::timeout_at(deadline, output.next()).await {
            Ok(Some(Ok(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Err(e))) => panic!("the console broke: {e}; so far: {seen:?}"),
            Ok(None) => panic!("the console ended before {wanted:?}; so far: {seen:?}"),
            Err(_) => panic!("no {wanted:?} within 10 s; so far: {seen:?}"),
        }
    }
}

async fn console(stack: &Stack, url: &str) {
    let stack_config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(url)
    };
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("consoled", "h100x1")).await.unwrap().remove(0);
    wait_for_state(&mut events, "consoled", InstanceState::Running).await;
    let home = stack.admin.tenant_id;
    let mia = member(ctl, &stack.admin, home, "mia", "member").await;
    let vic = member(ctl, &stack.admin, home, "vic", "viewer").await;

    // A member types: the guest echoes the line and prompts again.
    let Console { mut output, input, instance_name } =
        ctl.instance_console(&op(&mia), vm.id).await.expect("a member opens the console");
    assert_eq!(instance_name, "consoled");
    let mut input = input.expect("a member may type");
    let mut seen = String::new();
    read_until(&mut output, &mut seen, "consoled:~$ ").await;
    input.send(b"echo hello-from-mia\r").await.unwrap();
    let before = seen.len();
    read_until(&mut output, &mut seen, "echo hello-from-mia").await;
    assert!(seen[before..].contains("echo hello-from-mia"), "{seen:?}");

    // A viewer watches the same console (with what was printed before) and cannot type.
    let watched = ctl.instance_console(&op(&vic), vm.id).await.expect("a viewer watches");
    assert!(watched.input.is_none(), "a viewer gets no input");
    let mut output_v = watched.output;
    let mut seen_v = String::new();
    read_until(&mut output_v, &mut seen_v, "echo hello-from-mia").await;

    // Another tenant's admin does not find it; nobody finds an unknown id.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let otto = member(ctl, &stack.admin, acme.id, "otto", "tenant-admin").await;
    let refused = ctl.instance_console(&op(&otto), vm.id).await.err().expect("refused");
    assert_eq!(refused.status_code(), 404, "{refused}");
    let unknown = InstanceUuid::from_untyped_uuid(uuid::Uuid::new_v4());
    let refused = ctl.instance_console(&op(&mia), unknown).await.err().expect("refused");
    assert_eq!(refused.status_code(), 404, "{refused}");

    // At most 8 consoles a user; closing one makes room.
    let mut open = Vec::new();
    while open.len() < MAX_CONSOLES_PER_USER - 1 {
        open.push(ctl.instance_console(&op(&mia), vm.id).await.expect("under the limit"));
    }
    let refused = ctl.instance_console(&op(&mia), vm.id).await.err().expect("over the limit");
    assert_eq!(refused.status_code(), 409, "{refused}");
    assert!(refused.to_string().contains("close one first"), "{refused}");
    // The limit holds across replicas: another one on the same database refuses too.
    let other = Controller::open(&stack_config).await.unwrap();
    attach_all(&other, &stack.fleet, &stack.tls).await;
    let refused = other.instance_console(&op(&mia), vm.id).await.err().expect("over the limit");
    assert!(refused.to_string().contains("close one first"), "{refused}");
    open.pop();
    let mut again = None;
    eventually(10, "room again", async || {
        again = other.instance_console(&op(&mia), vm.id).await.ok();
        again.is_some()
    })
    .await;
    other.stop();
    drop((open, again));

    // Deleting the VM ends its consoles, and no new one opens.
    ctl.instance_delete(admin, vm.id).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match output_v.next().await {
                Some(Ok(_)) => {}
                other => return other.map(|r| r.map(|_| ())),
            }
        }
    })
    .await
    .expect("the console ends when the VM is removed");
    assert!(ended.is_none(), "ended cleanly, not {ended:?}");
    let refused = ctl.instance_console(&op(&mia), vm.id).await.err().expect("refused");
    assert!(matches!(refused.status_code(), 404 | 409), "{refused}");
    drop((output, input));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_on_sqlite() {
    let url = sqlite_url("console");
    let stack = start(&url, 1).await;
    console(&stack, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_on_postgres() {
    let Some(url) = postgres_url("console").await else { return };
    let stack = start(&url, 1).await;
    console(&stack, &url).await;
}
