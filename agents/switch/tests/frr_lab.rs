//! A two-leaf BGP EVPN lab for the FRR backend: network namespaces `leaf1-PID` and
//! `leaf2-PID` joined by a veth underlay, each with a loopback VTEP and its own zebra
//! (`--vrfwnetns`: this kernel has no VRF devices) and bgpd. Each leaf's daemons live in a
//! private mount namespace with an empty `/run/netns`, so a leaf sees only its own tenant
//! VRF namespaces (named namespaces are otherwise global). The backend reaches them through
//! `nsenter -t <zebra pid> -m -n`.
//!
//! Needs root and FRR (`/usr/lib/frr/zebra`); without them the test says why and passes.
//! Everything it creates is removed by [`Lab`]'s `Drop`, also after a panic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_common::validate::cidr;
use agent_proto::v1 as pb;
use agent_proto::v1::switch_agent_server::SwitchAgent;
use switch_agent::backend::frr::status::EvpnStatus;
use switch_agent::{
    FrrSettings, FrrSwitchBackend, Segment, SwitchAgentService, SwitchBackend, SwitchDescription,
    SwitchManager, SwitchRole, VpcSpec, VrfMode,
};

const FRR_DIR: &str = "/usr/lib/frr";
const VRF: &str = "vpc-t1";
const L3_VNI: u32 = 4001;
/// How long the lab waits for BGP to converge or a route to arrive.
const CONVERGE: Duration = Duration::from_secs(60);

fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().next())
        == Some("0");
    if !root {
        return Some("the FRR lab needs root (network namespaces, FRR daemons)".into());
    }
    ["zebra", "bgpd"]
        .iter()
        .map(|d| Path::new(FRR_DIR).join(d))
        .chain([PathBuf::from("/usr/bin/vtysh")])
        .find(|p| !p.exists())
        .map(|p| format!("the FRR lab needs FRR: {} is missing", p.display()))
}

/// Runs a command to completion; panics with its stderr if it fails.
fn run(argv: &[&str]) -> String {
    let output = Command::new(argv[0]).args(&argv[1..]).output().expect("spawn");
    assert!(
        output.status.success(),
        "`{}` failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(15), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the lab created, removed on drop in reverse: daemons (by pid, each with the signal
/// that stops it), namespaces, files.
#[derive(Default)]
struct Lab {
    daemons: Vec<(Child, &'static str)>,
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (child, signal) in self.daemons.iter_mut().rev() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args([*signal, &pid]).status();
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for name in self.netns.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct Leaf {
    name: String,
    zebra_pid: u32,
    vtep: String,
    backend: Arc<FrrSwitchBackend>,
}

impl Leaf {
    /// Runs a command in this leaf's namespaces, as its daemons see them.
    fn exec(&self, argv: &[&str]) -> String {
        let pid = self.zebra_pid.to_string();
        run(&[&["nsenter", "-t", &pid, "-m", "-n"], argv].concat())
    }

    /// The VRF namespaces this leaf has.
    fn tenant_netns(&self) -> String {
        self.exec(&["ip", "netns", "list"])
    }
}

/// The base configuration: eBGP to the other leaf, its loopback in ipv4, EVPN with
/// `advertise-all-vni`; no EVPN multihoming startup delay, which would hold the fresh
/// daemons' VXLAN devices protodown for 180 s.
fn base_config(name: &str, i: u32, other: u32) -> String {
    format!(
        "frr defaults datacenter
hostname {name}
evpn mh startup-delay 0
router bgp {asn}
 bgp router-id 10.255.0.{i}
 no bgp ebgp-requires-policy
 neighbor 192.168.1.{other} remote-as {other_asn}
 address-family ipv4 unicast
  network 10.255.0.{i}/32
 exit-address-family
 address-family l2vpn evpn
  neighbor 192.168.1.{other} activate
  advertise-all-vni
 exit-address-family
exit
",
        asn = 65000 + i,
        other_asn = 65000 + other,
    )
}

/// Creates the underlay and starts both leaves' daemons.
fn start(lab: &mut Lab) -> Vec<Leaf> {
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("frr-lab-{pid}"));
    std::fs::create_dir_all(&dir).expect("lab dir");
    lab.dirs.push(dir.clone());
    run(&["chown", "frr:frr", &dir.display().to_string()]);

    let names: Vec<String> = (1..=2).map(|i| format!("leaf{i}-{pid}")).collect();
    for (i, name) in (1..).zip(&names) {
        run(&["ip", "netns", "add", name]);
        lab.netns.push(name.clone());
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        run(&["ip", "-n", name, "addr", "add", &format!("10.255.0.{i}/32"), "dev", "lo"]);
    }
    // Created inside the namespaces directly: the host's links are never touched.
    run(&[
        "ip", "link", "add", "uplink", "netns", &names[0], "type", "veth", "peer", "name",
        "uplink", "netns", &names[1],
    ]);
    for (i, name) in (1..).zip(&names) {
        run(&["ip", "-n", name, "addr", "add", &format!("192.168.1.{i}/30"), "dev", "uplink"]);
        run(&["ip", "-n", name, "link", "set", "uplink", "up"]);
    }

    let mut leaves = Vec::new();
    for (i, name) in (1u32..).zip(&names) {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, base_config(name, i, 3 - i)).expect("write config");
        let rundir = PathBuf::from("/var/run/frr").join(name);
        std::fs::create_dir_all(&rundir).expect("pathspace dir");
        lab.dirs.push(rundir.clone());
        run(&["chown", "frr:frr", &rundir.display().to_string()]);
        let daemon_args = |daemon: &str| {
            format!(
                "-N {name} -f {} -i {}/{daemon}.pid --log file:{}/{name}-{daemon}.log",
                config.display(),
                rundir.display(),
                dir.display()
            )
        };

        // zebra in the leaf's network namespace and a private mount namespace whose
        // /run/netns starts empty; the nsenter, unshare and sh all exec, so the child's
        // pid is zebra's.
        let zebra = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{name}"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs tmpfs /run/netns && exec {FRR_DIR}/zebra --vrfwnetns {}",
                daemon_args("zebra")
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start zebra");
        let zebra_pid = zebra.id();
        // FRR 8.4's zebra crashes while terminating after a VRF namespace was deleted
        // (route_table_finish from zebra_ns_disabled); its namespaces go away with it anyway.
        lab.daemons.push((zebra, "-KILL"));
        wait_for_file(&rundir.join("zebra.vty"));

        let bgpd = Command::new("nsenter")
            .args(["-t", &zebra_pid.to_string(), "-m", "-n", &format!("{FRR_DIR}/bgpd")])
            .args(daemon_args("bgpd").split(' '))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start bgpd");
        lab.daemons.push((bgpd, "-TERM"));
        wait_for_file(&rundir.join("bgpd.vty"));

        let vtep = format!("10.255.0.{i}");
        let backend = Arc::new(FrrSwitchBackend::new(FrrSettings {
            vrf_mode: VrfMode::Netns,
            pathspace: Some(name.clone()),
            vtysh: PathBuf::from("/usr/bin/vtysh"),
            command_wrapper: ["nsenter", "-t", &zebra_pid.to_string(), "-m", "-n"]
                .map(String::from)
                .to_vec(),
            command_timeout_ms: 15_000,
            switch: SwitchDescription {
                switch_id: format!("leaf{i}"),
                model: "FRR lab".into(),
                role: SwitchRole::RailLeaf,
                scalable_unit: 1,
                rail: i,
                asn: 65000 + i,
                loopback_ip: vtep.clone(),
                ports: Vec::new(),
            },
        }));
        leaves.push(Leaf { name: name.clone(), zebra_pid, vtep, backend });
    }
    leaves
}

fn spec(generation: u64, segments: &[(u32, &str)]) -> VpcSpec {
    VpcSpec {
        vpc_id: "6f1c2a3e-0000-4000-8000-000000000001".into(),
        generation,
        vrf_name: VRF.into(),
        l3_vni: L3_VNI,
        segments: segments
            .iter()
            .map(|(vni, net)| Segment {
                l2_vni: *vni,
                cidr: cidr("cidr", net).expect("cidr"),
                access_ports: Vec::new(),
            })
            .collect(),
    }
}

/// Polls `seen` every 50 ms until it holds, printing how long that took since `since`;
/// panics after [`CONVERGE`] with `what`.
async fn wait_until<F, Fut>(what: &str, since: Instant, mut seen: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if seen().await {
            println!("{what}: seen {:.1?} after the change began", since.elapsed());
            return;
        }
        assert!(start.elapsed() < CONVERGE, "{what}: not seen within {CONVERGE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn evpn(leaf: &Leaf) -> EvpnStatus {
    leaf.backend.evpn_status().await.expect("evpn status")
}

/// Whether `leaf`'s VRF has `prefix` from VTEP `from` (EVPN type-5).
async fn has_route(leaf: &Leaf, prefix: &str, from: &str) -> bool {
    let routes = leaf.backend.remote_routes(VRF).await.expect("routes");
    routes.iter().any(|r| r.prefix == prefix && r.vteps.iter().any(|v| v == from))
}

#[tokio::test]
async fn test_two_leaves_exchange_a_tenant_vpc() {
    if let Some(why) = missing_prerequisite() {
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::default();
    let leaves = start(&mut lab);
    let (leaf1, leaf2) = (&leaves[0], &leaves[1]);

    let started = Instant::now();
    wait_until("underlay EVPN peering established on both leaves", started, || async {
        evpn(leaf1).await.established_peers() == 1 && evpn(leaf2).await.established_peers() == 1
    })
    .await;

    // Provision; the routes reach the other leaf; provisioning again is a no-op.
    let one_segment = spec(1, &[(100, "10.1.0.0/24")]);
    let provisioning = Instant::now();
    for leaf in &leaves {
        let changes = leaf.backend.apply_vpc(&one_segment).await.expect("apply");
        assert!(!changes.frr.is_empty() && !changes.kernel.is_empty(), "{changes:?}");
    }
    println!("both leaves provisioned in {:.1?}", provisioning.elapsed());
    for (leaf, remote) in [(leaf1, leaf2), (leaf2, leaf1)] {
        wait_until(
            &format!("{}: type-3 IMET of VNI 100 from {}", leaf.name, remote.vtep),
            provisioning,
            || async {
                evpn(leaf)
                    .await
                    .vni(100)
                    .is_some_and(|v| v.vrf == VRF && v.remote_vteps.contains(&remote.vtep))
            },
        )
        .await;
        wait_until(
            &format!("{}: type-5 10.1.0.0/24 from {}", leaf.name, remote.vtep),
            provisioning,
            || has_route(leaf, "10.1.0.0/24", &remote.vtep),
        )
        .await;
    }
    let status = evpn(leaf2).await;
    assert_eq!(status.vni(L3_VNI).map(|v| v.vrf.as_str()), Some(VRF), "{status:?}");
    // The same, as the agent's gRPC service answers it (through the manager).
    let description = SwitchBackend::hardware(leaf2.backend.as_ref()).await.expect("hardware");
    let manager = SwitchManager::new(description, leaf2.backend.clone(), 16);
    let reply = SwitchAgentService::new(manager)
        .evpn_status(tonic::Request::new(pb::EvpnStatusRequest {}))
        .await
        .expect("EvpnStatus")
        .into_inner();
    assert!(!reply.simulated);
    let peers: Vec<(&str, Option<u64>)> =
        reply.peers.iter().map(|p| (p.state.as_str(), p.prefixes_received)).collect();
    assert!(matches!(peers[..], [("Established", Some(_))]), "{reply:?}");
    let vnis: Vec<(u32, i32, &str, u32)> =
        reply.vnis.iter().map(|v| (v.vni, v.kind, v.vrf.as_str(), v.remote_vteps)).collect();
    assert_eq!(
        vnis,
        [(100, pb::VniKind::L2.into(), VRF, 1), (L3_VNI, pb::VniKind::L3.into(), VRF, 0)],
        "{reply:?}"
    );
    for leaf in &leaves {
        let again = leaf.backend.apply_vpc(&one_segment).await.expect("apply again");
        assert!(again.is_empty(), "{}: the second apply changed {again:?}", leaf.name);
    }

    // A segment added on leaf1: only its devices change; leaf2 learns the subnet.
    let two_segments = spec(2, &[(100, "10.1.0.0/24"), (200, "10.2.0.0/24")]);
    let adding = Instant::now();
    let added = leaf1.backend.apply_vpc(&two_segments).await.expect("add a segment");
    assert!(added.frr.is_empty(), "{added:?}");
    assert!(added.kernel.iter().all(|c| c.contains("200")), "{added:?}");
    wait_until("leaf2: type-5 10.2.0.0/24 from leaf1", adding, || {
        has_route(leaf2, "10.2.0.0/24", &leaf1.vtep)
    })
    .await;
    let dropping = Instant::now();
    let dropped = leaf1.backend.apply_vpc(&spec(3, &[(100, "10.1.0.0/24")])).await.expect("drop");
    assert_eq!(
        dropped.kernel,
        ["ip -n vpc-t1 link delete vxlan200", "ip -n vpc-t1 link delete br200"]
    );
    wait_until("leaf2: 10.2.0.0/24 withdrawn", dropping, || async {
        !has_route(leaf2, "10.2.0.0/24", &leaf1.vtep).await
    })
    .await;

    // Drift repaired: a VXLAN device detached from its bridge by hand (leaf2 withdraws its
    // VTEP from VNI 100) is made again, and leaf1 learns that VTEP again.
    let leaf2_in_vni_100 = || async {
        evpn(leaf1).await.vni(100).is_some_and(|v| v.remote_vteps.contains(&leaf2.vtep))
    };
    let detaching = Instant::now();
    leaf2.exec(&["ip", "-n", VRF, "link", "set", "vxlan100", "nomaster"]);
    wait_until("leaf1: leaf2's VTEP gone from VNI 100 after the detach", detaching, || async {
        !leaf2_in_vni_100().await
    })
    .await;
    let repairing = Instant::now();
    let repaired = leaf2.backend.apply_vpc(&one_segment).await.expect("repair");
    assert!(repaired.frr.is_empty(), "{repaired:?}");
    assert!(repaired.kernel.iter().all(|c| c.contains("100")), "{repaired:?}");
    wait_until("leaf1: leaf2's VTEP back in VNI 100 after the repair", repairing, leaf2_in_vni_100)
        .await;

    // Remove, then remove again: gone from FRR and the kernel; the second does nothing.
    for leaf in &leaves {
        let removed = leaf.backend.remove_vrf(VRF).await.expect("remove");
        assert!(!removed.is_empty());
        let vnis: BTreeSet<u32> = evpn(leaf).await.vnis.iter().map(|v| v.vni).collect();
        assert!(vnis.is_disjoint(&BTreeSet::from([100, 200, L3_VNI])), "{}: {vnis:?}", leaf.name);
        assert!(!leaf.tenant_netns().contains(VRF), "{}: {}", leaf.name, leaf.tenant_netns());
        let routes = leaf.backend.remote_routes(VRF).await.expect("routes of a removed VRF");
        assert!(routes.is_empty(), "{routes:?}");
        assert!(leaf.backend.remove_vrf(VRF).await.expect("remove again").is_empty());
        SwitchBackend::vrf_remove(leaf.backend.as_ref(), VRF)
            .await
            .expect("remove through the trait");
    }
    drop(lab);
    for leaf in &leaves {
        let alive = Path::new(&format!("/proc/{}", leaf.zebra_pid)).exists();
        assert!(!alive, "{}'s zebra survived the lab", leaf.name);
    }
}
