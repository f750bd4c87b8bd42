//! A two-leaf BGP EVPN lab for the FRR backend: network namespaces `TAG-leaf1-PID` and
//! `TAG-leaf2-PID` joined by a veth underlay, each with a loopback VTEP and its own zebra
//! (`--vrfwnetns`: this kernel has no VRF devices) and bgpd. Each leaf's daemons live in a
//! private mount namespace with an empty `/run/netns`, so a leaf sees only its own tenant
//! VRF namespaces (named namespaces are otherwise global). The backend reaches them through
//! `nsenter -t <zebra pid> -m -n`. Each test makes its own lab (its tag), so both run at once.
//!
//! [`test_two_leaves_exchange_a_tenant_vpc`]: EVPN routes of a VPC between the leaves.
//! [`test_gpu_fabrics_on_access_ports`]: real packets between host NICs (namespaces cabled by
//! veth to the leaves' front-panel ports `swp1`, `swp2`) in two tenants' GPU fabrics.
//!
//! Needs root and FRR (`/usr/lib/frr/zebra`); without them the test says why and passes.
//! Everything it creates is removed by [`Lab`]'s and [`Host`]'s `Drop`, also after a panic.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_common::netns_testing::Netns;
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
    settings: FrrSettings,
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

    /// The front-panel ports (`swpN`) in the leaf's own namespace with their state, by name:
    /// `[("swp1", "DOWN")]`.
    fn home_ports(&self) -> Vec<(String, String)> {
        let mut ports: Vec<(String, String)> = self
            .exec(&["ip", "-br", "link", "show"])
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next()?.split('@').next()?;
                let state = words.next()?;
                name.starts_with("swp").then(|| (name.to_string(), state.to_string()))
            })
            .collect();
        ports.sort();
        ports
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

/// Creates the underlay and starts both leaves' daemons; `tag` names this lab's namespaces.
fn start(lab: &mut Lab, tag: &str) -> Vec<Leaf> {
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("frr-lab-{tag}-{pid}"));
    std::fs::create_dir_all(&dir).expect("lab dir");
    lab.dirs.push(dir.clone());
    run(&["chown", "frr:frr", &dir.display().to_string()]);

    let names: Vec<String> = (1..=2).map(|i| format!("{tag}-leaf{i}-{pid}")).collect();
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
        let settings = FrrSettings {
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
        };
        let backend = Arc::new(FrrSwitchBackend::new(settings.clone()));
        leaves.push(Leaf { name: name.clone(), zebra_pid, vtep, settings, backend });
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
    let leaves = start(&mut lab, "vpc");
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

/// The UDP port every host NIC answers with its name.
const WHO_PORT: u16 = 7;
/// How long a host waits for an answer; a reachable one answers within milliseconds.
const ANSWER: Duration = Duration::from_secs(1);
/// The rail subnet both tenants' GPU fabrics use, and the addresses on it.
const RAIL: &str = "100.64.0.0/20";
const GATEWAY: &str = "100.64.0.1";
const A1_IP: &str = "100.64.0.11";
const A2_IP: &str = "100.64.0.12";
/// Tenant B's host holds the same address as tenant A's host on leaf 2.
const B1_IP: &str = "100.64.0.12";
const A_VRF: &str = "fabric-a";
const B_VRF: &str = "fabric-b";

/// A host NIC: a namespace whose `eth0` (MAC `mac`, address on [`RAIL`]) is cabled by veth to
/// a leaf's front-panel port, answering UDP [`WHO_PORT`] with its name until dropped.
struct Host {
    name: &'static str,
    stop: Arc<AtomicBool>,
    responder: Option<JoinHandle<()>>,
    ns: Netns,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(responder) = self.responder.take() {
            let _ = responder.join();
        }
        // Then `ns` goes, and with it the veth pair.
    }
}

impl Host {
    /// Cables a new host NIC `name` to `port` of `leaf`.
    fn cable(leaf: &Leaf, port: &str, name: &'static str, mac: &str, address: &str) -> Host {
        let ns = Netns::new("frrlab", name);
        run(&[
            "ip", "link", "add", port, "netns", &leaf.name, "type", "veth", "peer", "name", "eth0",
            "netns", &ns.name,
        ]);
        ns.ip(&["link", "set", "eth0", "address", mac]);
        ns.ip(&["addr", "add", &format!("{address}/20"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        let socket = ns.enter(|| UdpSocket::bind(("0.0.0.0", WHO_PORT))).expect("bind");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let responder = std::thread::spawn(move || {
            let mut buf = [0; 16];
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(name.as_bytes(), from);
                }
            }
        });
        Host { name, stop, responder: Some(responder), ns }
    }

    /// Who answers `to` from this NIC within [`ANSWER`], if anyone.
    fn who_answers(&self, to: &str) -> Option<String> {
        let socket = self.ns.enter(|| UdpSocket::bind(("0.0.0.0", 0))).expect("bind");
        socket.set_read_timeout(Some(ANSWER)).expect("timeout");
        socket.send_to(b"who", (to, WHO_PORT)).ok()?;
        let mut buf = [0; 16];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// This NIC's neighbour entry for `address` (`ip neigh show`), empty if it has none.
    fn neighbour(&self, address: &str) -> String {
        self.ns.ip(&["neigh", "show", address]).trim().to_string()
    }
}

/// Tenant `tenant`'s GPU fabric on one rail leaf: its VRF, L3 VNI and the rail's segment
/// with `ports`.
fn fabric(tenant: char, generation: u64, ports: &[&str]) -> VpcSpec {
    let (n, vrf) = match tenant {
        'a' => (1, A_VRF),
        _ => (2, B_VRF),
    };
    VpcSpec {
        vpc_id: format!("6f1c2a3e-0000-4000-8000-00000000fab{n}"),
        generation,
        vrf_name: vrf.into(),
        l3_vni: 4100 + n,
        segments: vec![Segment {
            l2_vni: 1100 + n,
            cidr: cidr("cidr", RAIL).expect("cidr"),
            access_ports: ports.iter().map(|p| (*p).to_string()).collect(),
        }],
    }
}

/// Waits until `from` gets an answer from `expected` at `to`.
async fn wait_answer(from: &Host, to: &str, expected: &str, since: Instant) {
    let what = format!("{} -> {to}: {expected} answers", from.name);
    wait_until(&what, since, || async { from.who_answers(to).as_deref() == Some(expected) }).await;
}

#[tokio::test]
async fn test_gpu_fabrics_on_access_ports() {
    if let Some(why) = missing_prerequisite() {
        println!("skipped: {why}");
        return;
    }
    let mut lab = Lab::default();
    let leaves = start(&mut lab, "fabric");
    let (leaf1, leaf2) = (&leaves[0], &leaves[1]);
    // Declared after the lab, so dropped before it, also when an assertion fails.
    let a1 = Host::cable(leaf1, "swp1", "a1", "02:00:00:00:0a:01", A1_IP);
    let b1 = Host::cable(leaf1, "swp2", "b1", "02:00:00:00:0b:01", B1_IP);
    let a2 = Host::cable(leaf2, "swp1", "a2", "02:00:00:00:0a:02", A2_IP);
    let started = Instant::now();
    wait_until("underlay EVPN peering established on both leaves", started, || async {
        evpn(leaf1).await.established_peers() == 1 && evpn(leaf2).await.established_peers() == 1
    })
    .await;

    // Tenant A on swp1 of both leaves, tenant B on swp2 of leaf 1: the ports move into the
    // VRFs' namespaces and join the rail segment's bridge.
    let provisioning = Instant::now();
    let a_on_leaf1 = leaf1.backend.apply_vpc(&fabric('a', 1, &["swp1"])).await.expect("A leaf1");
    assert!(
        a_on_leaf1.kernel.ends_with(&[
            "ip link set swp1 netns fabric-a".into(),
            "ip -n fabric-a link set swp1 master br1101".into(),
            "ip -n fabric-a link set swp1 up".into(),
        ]),
        "{a_on_leaf1:?}"
    );
    leaf2.backend.apply_vpc(&fabric('a', 1, &["swp1"])).await.expect("A leaf2");
    leaf1.backend.apply_vpc(&fabric('b', 1, &["swp2"])).await.expect("B leaf1");
    println!("both fabrics provisioned in {:.1?}", provisioning.elapsed());
    assert!(leaf1.home_ports().is_empty(), "{:?}", leaf1.home_ports());

    // A's NIC on leaf 1 reaches A's NIC on leaf 2 across the VXLAN; leaf 2 learns a1's MAC
    // as an EVPN type-2 route.
    wait_answer(&a1, A2_IP, "a2", provisioning).await;
    let pathspace = leaf2.name.as_str();
    wait_until("leaf2: a1's MAC in VNI 1101 from leaf1 (type-2)", provisioning, || async {
        let macs = leaf2.exec(&["vtysh", "-N", pathspace, "-c", "show evpn mac vni 1101"]);
        macs.lines().any(|l| l.contains("02:00:00:00:0a:01") && l.contains(&leaf1.vtep))
    })
    .await;
    assert!(a1.neighbour(A2_IP).contains("lladdr 02:00:00:00:0a:02"), "{}", a1.neighbour(A2_IP));

    // A never reaches B, whose NIC holds the same address on the same leaf: B never even saw
    // a1's ARP request for it, and B's segment works (its gateway answers B's ARP) but nobody
    // there answers A's addresses.
    assert_eq!(b1.neighbour(A1_IP), "", "b1 heard from a1");
    assert_eq!(b1.who_answers(A1_IP), None);
    assert_eq!(b1.who_answers(GATEWAY), None, "a gateway does not answer UDP");
    assert!(b1.neighbour(GATEWAY).contains("lladdr"), "{}", b1.neighbour(GATEWAY));
    assert_eq!(a1.who_answers(A2_IP).as_deref(), Some("a2"));

    // Again, and as a restarted agent (a new backend) would: nothing changes, and A's
    // traffic flows on.
    let provisioned = [
        (leaf1, fabric('a', 1, &["swp1"])),
        (leaf1, fabric('b', 1, &["swp2"])),
        (leaf2, fabric('a', 1, &["swp1"])),
    ];
    for (leaf, spec) in provisioned {
        let again = leaf.backend.apply_vpc(&spec).await.expect("apply again");
        assert!(again.is_empty(), "{}: the second apply changed {again:?}", leaf.name);
        let restarted = FrrSwitchBackend::new(leaf.settings.clone());
        let after_restart = restarted.apply_vpc(&spec).await.expect("apply after a restart");
        assert!(after_restart.is_empty(), "{}: a restart changed {after_restart:?}", leaf.name);
    }
    assert_eq!(a1.who_answers(A2_IP).as_deref(), Some("a2"));

    // A's fabric removed from leaf 1: swp1 goes home, down, and A's traffic stops.
    let removing = Instant::now();
    let removed = leaf1.backend.remove_vrf(A_VRF).await.expect("remove A");
    assert!(removed.kernel[0].starts_with("sh -c "), "{removed:?}");
    assert!(removed.kernel[0].ends_with(" move-home fabric-a swp1"), "{removed:?}");
    assert_eq!(leaf1.home_ports(), [("swp1".to_string(), "DOWN".to_string())]);
    assert!(!leaf1.tenant_netns().contains(A_VRF), "{}", leaf1.tenant_netns());
    assert_eq!(a1.who_answers(A2_IP), None, "A's traffic goes on after the removal");
    println!("A removed from leaf1 and its traffic stopped in {:.1?}", removing.elapsed());

    // B's fabric takes swp1: the host behind it is now in B's segment and reaches b1.
    let taking = Instant::now();
    let taken = leaf1.backend.apply_vpc(&fabric('b', 2, &["swp1", "swp2"])).await.expect("B");
    assert_eq!(
        taken.kernel,
        [
            "ip link set swp1 netns fabric-b",
            "ip -n fabric-b link set swp1 master br1102",
            "ip -n fabric-b link set swp1 up"
        ]
    );
    assert!(taken.frr.is_empty(), "{taken:?}");
    wait_answer(&a1, B1_IP, "b1", taking).await;

    // swp1 leaves B's segment: only it moves home.
    let left = leaf1.backend.apply_vpc(&fabric('b', 3, &["swp2"])).await.expect("B without swp1");
    assert_eq!(left.kernel.len(), 1, "{left:?}");
    assert!(left.kernel[0].ends_with(" move-home fabric-b swp1"), "{left:?}");
    assert_eq!(leaf1.home_ports(), [("swp1".to_string(), "DOWN".to_string())]);
    assert_eq!(a1.who_answers(B1_IP), None);

    // Ports that cannot join are refused before anything changes: one the leaf has no
    // interface for, one another VRF holds.
    let err = leaf1.backend.apply_vpc(&fabric('b', 4, &["swp2", "swp3"])).await.expect_err("swp3");
    assert!(err.to_string().starts_with("port swp3 has no interface on this switch; "), "{err}");
    let err = leaf1.backend.apply_vpc(&fabric('a', 2, &["swp2"])).await.expect_err("B's swp2");
    assert!(
        matches!(&err, switch_agent::DriverError::FailedPrecondition(m)
            if m.starts_with("port swp2 is in VRF fabric-b's namespace")),
        "{err:?}"
    );
    assert!(!leaf1.tenant_netns().contains(A_VRF), "{}", leaf1.tenant_netns());
    assert!(leaf1.backend.apply_vpc(&fabric('b', 3, &["swp2"])).await.expect("B").is_empty());

    // Removed everywhere: every port home, no tenant namespace left.
    leaf1.backend.remove_vrf(B_VRF).await.expect("remove B");
    leaf2.backend.remove_vrf(A_VRF).await.expect("remove A from leaf2");
    let down = |port: &str| (port.to_string(), "DOWN".to_string());
    assert_eq!(leaf1.home_ports(), [down("swp1"), down("swp2")]);
    assert_eq!(leaf2.home_ports(), [down("swp1")]);
    for leaf in &leaves {
        assert_eq!(leaf.tenant_netns(), "", "{}", leaf.name);
    }

    let namespaces: Vec<String> = [&a1, &b1, &a2].iter().map(|h| h.ns.name.clone()).collect();
    drop((a1, b1, a2));
    drop(lab);
    let left = run(&["ip", "netns", "list"]);
    for name in namespaces.iter().chain(&leaves.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
    {
        assert!(!left.contains(name.as_str()), "{name} survived the lab: {left}");
    }
    for leaf in &leaves {
        let alive = Path::new(&format!("/proc/{}", leaf.zebra_pid)).exists();
        assert!(!alive, "{}'s zebra survived the lab", leaf.name);
    }
}
