//! Public IPs through the control plane against the simulated fleet: provider pools and
//! their refusals; a tenant takes addresses within its quota, attaches one to a running VM
//! (its DPU gets the mapping, the SSH command uses it), detaches and releases it; deleting
//! the VM detaches it (each attachment logged for metering); concurrent requests never hand out an address twice; another tenant
//! finds none of it.

mod common;

use common::*;
use portal_controller::datastore::entity::public_ip_event;
use portal_types::Error;
use portal_types::ids::GenericUuid;
use portal_types::params::QuotaLimit;
use portal_types::public_ip::{PublicIpCreate, PublicIpPoolCreate, PublicIpState};
use portal_types::views::InstanceState;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

fn pool(name: &str, cidr: &str) -> PublicIpPoolCreate {
    PublicIpPoolCreate { name: name.into(), cidr: cidr.into() }
}

fn ip(name: &str) -> PublicIpCreate {
    PublicIpCreate { name: name.into(), pool: None }
}

/// The public IP the simulated DPU maps to the port, if any.
fn dpu_public_ip(stack: &Stack, dpu: &str, port: &str) -> Option<String> {
    let spec = stack.fleet.dpu(dpu).expect("the DPU exists").port(port)?;
    spec.public_ip.map(|ip| ip.to_string())
}

async fn public_ips(url: &str) {
    let stack = start(url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let tenant = stack.admin.tenant_id;

    // No pool yet: a sentence that says who can help.
    let none = ctl.public_ip_allocate(admin, &ip("web")).await.unwrap_err().to_string();
    assert!(none.contains("no public IP pools yet"), "{none}");

    // Pools: validated, no overlaps, unique names.
    let internet = ctl.public_ip_pool_create(admin, &pool("internet", "203.0.113.0/29")).await;
    let internet = internet.unwrap();
    assert_eq!((internet.size, internet.allocated), (6, 0));
    let overlap = ctl.public_ip_pool_create(admin, &pool("more", "203.0.113.4/30")).await;
    assert!(overlap.unwrap_err().to_string().contains("overlaps pool \"internet\""));
    let bad = ctl.public_ip_pool_create(admin, &pool("loop", "127.0.0.0/24")).await;
    assert!(matches!(bad, Err(Error::InvalidRequest { .. })), "{bad:?}");
    let twice = ctl.public_ip_pool_create(admin, &pool("internet", "198.51.100.0/30")).await;
    assert!(matches!(twice, Err(Error::Conflict { .. })), "{twice:?}");

    // The default quota is 5 addresses; the lowest free one comes first; names are unique.
    let web = ctl.public_ip_allocate(admin, &ip("web")).await.unwrap();
    assert_eq!((web.address.as_str(), web.state), ("203.0.113.1", PublicIpState::Free));
    let same = ctl.public_ip_allocate(admin, &ip("web")).await.unwrap_err().to_string();
    assert!(same.contains("already have a public IP named \"web\""), "{same}");
    for n in 2..=5 {
        ctl.public_ip_allocate(admin, &ip(&format!("spare{n}"))).await.unwrap();
    }
    let over = ctl.public_ip_allocate(admin, &ip("sixth")).await.unwrap_err().to_string();
    assert!(over.contains("of its quota of 5 public IPs"), "{over}");
    let quota = ctl.quota_get(admin, None).await.unwrap();
    let line = quota.lines.iter().find(|l| l.resource == "public_ips").expect("a quota line");
    assert_eq!((line.used, line.limit), (5, Some(5)));
    ctl.quota_set(admin, tenant, "public_ips", QuotaLimit::Unlimited).await.unwrap();
    ctl.public_ip_allocate(admin, &ip("sixth")).await.unwrap();
    let full = ctl.public_ip_allocate(admin, &ip("seventh")).await.unwrap_err().to_string();
    assert!(full.contains("Every pool has no free address left"), "{full}");
    for n in 2..=5 {
        let spare = ctl.public_ips(admin).await.unwrap();
        let spare = spare.iter().find(|p| p.name == format!("spare{n}")).unwrap();
        ctl.public_ip_release(admin, spare.id).await.unwrap();
    }
    let pools = ctl.public_ip_pools(admin).await.unwrap();
    assert_eq!(pools[0].allocated, 2);

    // Attached to a running VM: its DPU maps it, and the SSH command uses it.
    let vm = ctl.instance_create(admin, &launch("pub-a", "h100x1")).await.unwrap()[0].id;
    eventually(20, "running", async || {
        ctl.instance_get(admin, vm).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    let attached = ctl.public_ip_attach(admin, web.id, vm).await.unwrap();
    assert_eq!(attached.instance_name.as_deref(), Some("pub-a"));
    eventually(10, "attached", async || {
        ctl.public_ip_get(admin, web.id).await.unwrap().state == PublicIpState::Attached
    })
    .await;
    let detail = ctl.instance_get(admin, vm).await.unwrap();
    let port = &detail.ports[0];
    assert_eq!(port.public_ip.as_deref(), Some("203.0.113.1"));
    assert_eq!(detail.ssh_command.as_deref(), Some("ssh ubuntu@203.0.113.1"));
    let dpu = port.dpu.clone().expect("HGX hosts have a DPU");
    let port_id = port.id.to_string();
    assert_eq!(dpu_public_ip(&stack, &dpu, &port_id).as_deref(), Some("203.0.113.1"));

    // One public IP per VM, one VM per public IP; an attached one cannot be released.
    let sixth = ctl.public_ips(admin).await.unwrap();
    let sixth = sixth.iter().find(|p| p.name == "sixth").unwrap().id;
    let second = ctl.public_ip_attach(admin, sixth, vm).await.unwrap_err().to_string();
    assert!(second.contains("already has public IP 203.0.113.1 (web)"), "{second}");
    let other_vm = ctl.instance_create(admin, &launch("pub-b", "h100x1")).await.unwrap()[0].id;
    let taken = ctl.public_ip_attach(admin, web.id, other_vm).await.unwrap_err().to_string();
    assert!(taken.contains("is attached to instance \"pub-a\""), "{taken}");
    let busy = ctl.public_ip_release(admin, web.id).await.unwrap_err().to_string();
    assert!(busy.contains("detach it before releasing it"), "{busy}");
    // Attaching again to the same VM changes nothing.
    ctl.public_ip_attach(admin, web.id, vm).await.unwrap();

    // A DPU that refuses the mapping (a port there holds the address already): the refusal
    // is shown while it is retried, and gone once the DPU takes it.
    eventually(20, "pub-b running", async || {
        ctl.instance_get(admin, other_vm).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    let b_dpu = ctl.instance_get(admin, other_vm).await.unwrap().ports[0].dpu.clone().unwrap();
    let b_dpu = stack.fleet.dpu(&b_dpu).unwrap().manager();
    let squatter = dpu_agent::PortSpec {
        port_id: "0190c2f4-7a1b-4c3d-8e9f-00000000cafe".into(),
        vm_id: "0190c2f4-7a1b-4c3d-8e9f-00000000f00d".into(),
        generation: 1,
        vni: 4_000_001,
        mac: "02:00:00:00:ca:fe".into(),
        ip: "10.98.0.2".parse().unwrap(),
        rules: Vec::new(),
        gateway: None,
        public_ip: Some("203.0.113.6".parse().unwrap()),
    };
    b_dpu.port_ensure(squatter.clone()).await.expect("a port holding the address");
    assert_eq!(ctl.public_ip_get(admin, sixth).await.unwrap().address, "203.0.113.6");
    ctl.public_ip_attach(admin, sixth, other_vm).await.unwrap();
    eventually(20, "the refusal shown", async || {
        let view = ctl.public_ip_get(admin, sixth).await.unwrap();
        view.state == PublicIpState::Attaching
            && view.message.is_some_and(|m| m.contains("public IP 203.0.113.6 is already mapped"))
    })
    .await;
    let port = &ctl.instance_get(admin, other_vm).await.unwrap().ports[0];
    assert!(port.message.as_deref().is_some_and(|m| m.contains("refused")), "{port:?}");
    b_dpu.port_remove(&squatter.port_id, 0).await.unwrap();
    eventually(20, "attached once the DPU takes it", async || {
        let view = ctl.public_ip_get(admin, sixth).await.unwrap();
        view.state == PublicIpState::Attached && view.message.is_none()
    })
    .await;
    ctl.public_ip_detach(admin, sixth).await.unwrap();

    // Detached: the DPU drops the mapping; attached again, then the VM is deleted: the
    // address stays the tenant's, free.
    ctl.public_ip_detach(admin, web.id).await.unwrap();
    eventually(10, "the mapping gone", async || dpu_public_ip(&stack, &dpu, &port_id).is_none())
        .await;
    assert_eq!(
        ctl.instance_get(admin, vm).await.unwrap().ssh_command.as_deref(),
        Some("ssh ubuntu@10.0.0.2")
    );
    ctl.public_ip_attach(admin, web.id, vm).await.unwrap();
    eventually(10, "mapped again", async || {
        dpu_public_ip(&stack, &dpu, &port_id).as_deref() == Some("203.0.113.1")
    })
    .await;
    ctl.instance_delete(admin, vm).await.unwrap();
    eventually(20, "free again", async || {
        ctl.public_ip_get(admin, web.id).await.unwrap().state == PublicIpState::Free
    })
    .await;
    let gone = ctl.public_ip_attach(admin, web.id, vm).await.unwrap_err();
    assert!(matches!(gone, Error::NotFound { .. }), "{gone:?}");
    // Metering saw every attachment, the deletion's detachment too (attaching twice is one).
    let log: Vec<bool> = public_ip_event::Entity::find()
        .filter(public_ip_event::Column::InstanceId.eq(vm.into_untyped_uuid()))
        .order_by_asc(public_ip_event::Column::Id)
        .all(ctl.datastore().connection())
        .await
        .unwrap()
        .iter()
        .map(|e| e.attached)
        .collect();
    assert_eq!(log, [true, false, true, false]);

    // Another tenant: none of this is found; its members may take addresses, viewers not.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let alice = member(ctl, &stack.admin, acme.id, "alice", "member").await;
    let alice = &op(&alice);
    assert!(ctl.public_ips(alice).await.unwrap().is_empty());
    let foreign = ctl.public_ip_detach(alice, web.id).await.unwrap_err();
    assert!(matches!(foreign, Error::NotFound { .. }), "{foreign:?}");
    let theirs = ctl.public_ip_allocate(alice, &ip("mine")).await.unwrap();
    let onto_foreign = ctl.public_ip_attach(alice, theirs.id, other_vm).await.unwrap_err();
    assert!(matches!(onto_foreign, Error::NotFound { .. }), "{onto_foreign:?}");
    let vic = member(ctl, &stack.admin, acme.id, "vic", "viewer").await;
    let vic = &op(&vic);
    assert_eq!(ctl.public_ips(vic).await.unwrap().len(), 1);
    let denied = ctl.public_ip_allocate(vic, &ip("nope")).await.unwrap_err();
    assert!(matches!(denied, Error::Forbidden { .. }), "{denied:?}");
    let not_admin = ctl.public_ip_pool_create(alice, &pool("mine", "198.51.100.0/30")).await;
    assert!(matches!(not_admin, Err(Error::Forbidden { .. })), "{not_admin:?}");

    // A pool with addresses held cannot go; once they are released it can.
    let held = ctl.public_ip_pool_delete(admin, internet.id).await.unwrap_err().to_string();
    assert!(held.contains("still hold 3 address(es)"), "{held}");
    ctl.public_ip_release(alice, theirs.id).await.unwrap();
    for held in ctl.public_ips(admin).await.unwrap() {
        ctl.public_ip_release(admin, held.id).await.unwrap();
    }
    ctl.public_ip_pool_delete(admin, internet.id).await.unwrap();

    // Concurrent requests share a small pool out exactly once.
    ctl.public_ip_pool_create(admin, &pool("small", "198.51.100.0/29")).await.unwrap();
    let tries = (0..16).map(|n| {
        let ctl = ctl.clone();
        let admin = admin.clone();
        tokio::spawn(async move { ctl.public_ip_allocate(&admin, &ip(&format!("race{n}"))).await })
    });
    let mut won = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Ok(view) => won.push(view.address),
            Err(e) => assert!(e.to_string().contains("no free address left"), "{e}"),
        }
    }
    won.sort();
    won.dedup();
    assert_eq!(won.len(), 6, "{won:?}");
    let audit = ctl.audit_list(admin, Some("public_ip."), None, &newest()).await.unwrap().items;
    assert!(audit.iter().any(|e| e.action == "public_ip.attach"), "attaching is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_ips_on_sqlite_and_postgres() {
    public_ips(&sqlite_url("public-ips")).await;
    if let Some(url) = postgres_url("public-ips").await {
        public_ips(&url).await;
    }
}
