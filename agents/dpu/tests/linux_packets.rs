//! Real packets through the Linux backend. Every device lives in network namespaces this test
//! makes (`dpt<pid>…`, removed by a guard even when an assertion fails): a namespace per DPU
//! running the backend and one per "VM" holding the VM side of its port. No traffic leaves
//! them and the host's own namespace is never touched.
//!
//! Needs root, `ip` and `nft`; without them each test says so and passes.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use agent_common::netns_testing::{self, Netns, run};
use agent_common::validate::cidr;
use dpu_agent::{
    Direction, DpuBackend, DpuDescription, Gateway, LinuxDpuBackend, LinuxDpuConfig, PortSpec,
    Protocol, SecurityRule, UplinkConfig, vm_device_name,
};
use socket2::{Domain, Socket, Type};

const TIMEOUT: Duration = Duration::from_secs(1);

fn runnable() -> bool {
    netns_testing::runnable(&["ip", "nft"])
}

/// A namespace of this test, `dpt<pid>-<n><label>`.
fn netns(label: &str) -> Netns {
    Netns::new("dpt", label)
}

fn description(vtep: &str) -> DpuDescription {
    DpuDescription {
        dpu_id: "test-dpu0".into(),
        host_id: "test-host".into(),
        model: "veth".into(),
        pci_address: "0000:00:00.0".into(),
        vtep_ip: vtep.into(),
        max_ports: 16,
    }
}

async fn backend(dpu: &Netns, vtep: &str, remote_vteps: Vec<Ipv4Addr>) -> LinuxDpuBackend {
    let config = LinuxDpuConfig {
        dpu: description(vtep),
        netns: Some(dpu.name.clone()),
        remote_vteps,
        uplink: None,
    };
    LinuxDpuBackend::start(config).await.expect("backend starts")
}

fn rule(
    direction: Direction,
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    net: &str,
) -> SecurityRule {
    SecurityRule { direction, protocol, ports, cidr: cidr("cidr", net).expect("cidr") }
}

fn egress_any() -> SecurityRule {
    rule(Direction::Egress, Protocol::Any, None, "0.0.0.0/0")
}

fn spec(n: u8, vni: u32, ip: &str, rules: Vec<SecurityRule>) -> PortSpec {
    PortSpec {
        port_id: format!("0190c2f4-7a1b-4c3d-8e9f-0000000000{n:02x}"),
        vm_id: format!("vm-{n}"),
        gateway: None,
        public_ip: None,
        generation: 1,
        vni,
        mac: format!("52:54:00:00:00:{n:02x}"),
        ip: ip.parse().expect("ip"),
        rules,
    }
}

/// Programs `spec` and moves its VM side into a new namespace with the port's address.
async fn plug(backend: &LinuxDpuBackend, dpu: &Netns, spec: &PortSpec) -> Netns {
    backend.vni_attach(spec.vni).await.expect("vni attach");
    backend.port_attach(spec).await.expect("port attach");
    backend.rules_apply(&spec.port_id, &spec.rules).await.expect("rules apply");
    let vm = netns(&format!("vm{}", &spec.mac[15..]));
    let device = vm_device_name(&spec.port_id);
    dpu.ip(&["link", "set", &device, "netns", &vm.name]);
    vm.ip(&["addr", "add", &format!("{}/24", spec.ip), "dev", &device]);
    vm.ip(&["link", "set", &device, "up"]);
    vm
}

/// A TCP listener in `vm` on `port` that echoes what it reads; lives until the process ends.
fn serve(vm: &Netns, port: u16) {
    let listener = vm.enter(|| TcpListener::bind(("0.0.0.0", port)).expect("bind"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0; 64];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A UDP socket in `vm` on `port` that sends every datagram back; lives until the process ends.
fn udp_echo(vm: &Netns, port: u16) {
    let socket = vm.enter(|| UdpSocket::bind(("0.0.0.0", port)).expect("bind"));
    std::thread::spawn(move || {
        let mut buf = [0; 64];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
}

/// Whether a datagram from `vm`'s port `from_port` to `to:port` is echoed within [`TIMEOUT`].
fn udp_round_trip(vm: &Netns, from_port: u16, to: &str, port: u16) -> bool {
    let socket = vm.enter(|| UdpSocket::bind(("0.0.0.0", from_port)).expect("bind"));
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket.send_to(b"ping", (to, port)).expect("send");
    let mut buf = [0; 4];
    socket.recv_from(&mut buf).is_ok_and(|(n, _)| &buf[..n] == b"ping")
}

/// Opens a TCP connection from `vm` (from `source` if given) within [`TIMEOUT`].
fn connect(vm: &Netns, source: Option<&str>, to: &str, port: u16) -> Option<TcpStream> {
    let to = SocketAddr::new(to.parse().expect("ip"), port);
    vm.enter(|| {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        if let Some(source) = source {
            let from = SocketAddr::new(source.parse().expect("ip"), 0);
            socket.bind(&from.into()).expect("bind source");
        }
        socket.connect_timeout(&to.into(), TIMEOUT).ok()?;
        Some(TcpStream::from(socket))
    })
}

/// For what must get through: on a loaded machine a first packet can wait on ARP longer
/// than [`TIMEOUT`], so up to five tries. What must not get through is tried once, after
/// the positive checks have warmed the neighbour tables.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    (0..5).any(|_| check())
}

fn connects(vm: &Netns, to: &str, port: u16) -> bool {
    connect(vm, None, to, port).is_some()
}

/// Whether an echo over an open connection comes back within [`TIMEOUT`].
fn echoes(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut buf = [0; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// One ICMP echo from `vm` (from `source` if given) to `to`: whether a reply came back. A raw
/// socket, because `ping` may not be installed.
fn pings(vm: &Netns, source: Option<&str>, to: &str) -> bool {
    let to: Ipv4Addr = to.parse().expect("ip");
    vm.enter(|| {
        let protocol = socket2::Protocol::ICMPV4;
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(protocol)).expect("raw socket");
        if let Some(source) = source {
            let from = SocketAddr::new(source.parse().expect("ip"), 0);
            socket.bind(&from.into()).expect("bind source");
        }
        let id = (std::process::id() & 0xffff) as u16;
        let mut request = vec![8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
        request.extend_from_slice(b"dpu-agent");
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
        let target = SocketAddr::new(IpAddr::V4(to), 0);
        socket.send_to(&request, &target.into()).expect("send echo");
        socket.set_read_timeout(Some(TIMEOUT / 4)).expect("timeout");
        let deadline = Instant::now() + TIMEOUT;
        let mut reader = &socket;
        let mut buf = [0; 1500];
        while Instant::now() < deadline {
            match reader.read(&mut buf) {
                Ok(n) if n >= 28 => {
                    let header = usize::from(buf[0] & 0x0f) * 4;
                    let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                    let reply = &buf[header..n];
                    if from == to && reply[0] == 0 && reply[4..6] == request[4..6] {
                        return true;
                    }
                }
                Ok(_) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(err) => panic!("icmp receive: {err}"),
            }
        }
        false
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[tokio::test]
async fn security_groups_allow_exactly_their_rules_and_tenants_stay_apart() {
    if !runnable() {
        return;
    }
    let dpu = netns("dpu");
    let backend = backend(&dpu, "192.0.2.1", vec![]).await;
    let ssh_from_a1 = rule(Direction::Ingress, Protocol::Tcp, Some((22, 22)), "10.0.0.1/32");
    let icmp_from_subnet = rule(Direction::Ingress, Protocol::Icmp, None, "10.0.0.0/24");
    let udp_from_subnet =
        rule(Direction::Ingress, Protocol::Udp, Some((5001, 5001)), "10.0.0.0/24");
    // Tenant A on VNI 100 and tenant B on VNI 200, both in 10.0.0.0/24 with the same addresses.
    let a1 = spec(1, 100, "10.0.0.1", vec![egress_any()]);
    let a2_rules = vec![egress_any(), ssh_from_a1.clone(), icmp_from_subnet, udp_from_subnet];
    let a2 = spec(2, 100, "10.0.0.2", a2_rules);
    let a3 = spec(3, 100, "10.0.0.4", vec![egress_any()]);
    let open = rule(Direction::Ingress, Protocol::Any, None, "0.0.0.0/0");
    let any_tcp = rule(Direction::Ingress, Protocol::Tcp, None, "0.0.0.0/0");
    let b1 = spec(4, 200, "10.0.0.1", vec![egress_any(), open.clone()]);
    let b2 = spec(5, 200, "10.0.0.2", vec![egress_any(), any_tcp]);
    let b3 = spec(6, 200, "10.0.0.3", vec![egress_any(), open]);
    let vm_a1 = plug(&backend, &dpu, &a1).await;
    let vm_a2 = plug(&backend, &dpu, &a2).await;
    let vm_a3 = plug(&backend, &dpu, &a3).await;
    let vm_b1 = plug(&backend, &dpu, &b1).await;
    let vm_b2 = plug(&backend, &dpu, &b2).await;
    let vm_b3 = plug(&backend, &dpu, &b3).await;
    for vm in [&vm_a2, &vm_b2, &vm_b3] {
        serve(vm, 22);
        serve(vm, 23);
        udp_echo(vm, 5001);
    }

    // Within tenant A: exactly TCP 22 from 10.0.0.1, and ICMP from the subnet.
    assert!(eventually(|| connects(&vm_a1, "10.0.0.2", 22)), "the rule allows a1 → a2:22");
    assert!(!connects(&vm_a1, "10.0.0.2", 23), "no rule allows port 23");
    assert!(!connects(&vm_a3, "10.0.0.2", 22), "the rule allows only 10.0.0.1");
    assert!(eventually(|| pings(&vm_a3, None, "10.0.0.2")), "ICMP from the subnet is allowed");
    assert!(!pings(&vm_a2, None, "10.0.0.1"), "a1 allows no ingress at all");

    // Tenant B uses the same addresses on its own VNI; the tenants never meet.
    assert!(
        eventually(|| connects(&vm_b1, "10.0.0.2", 23)),
        "b1 reaches b2 (any TCP), not a2 (only 22)"
    );
    assert!(!connects(&vm_a1, "10.0.0.3", 22), "b3 allows everything, but not from tenant A");
    assert!(!pings(&vm_a1, None, "10.0.0.3"));
    assert!(!pings(&vm_b3, None, "10.0.0.4"), "a3's address is not on VNI 200");
    // The same UDP flow in both tenants: B's is judged by b2's rules (no UDP), not let through
    // as part of A's connection (each VNI has its own conntrack zone).
    assert!(eventually(|| udp_round_trip(&vm_a1, 5000, "10.0.0.2", 5001)), "a2 allows UDP 5001");
    assert!(!udp_round_trip(&vm_b1, 5000, "10.0.0.2", 5001), "b2 allows no UDP");

    // a3 may send only from its own address, even where the receiver would allow it.
    vm_a3.ip(&["addr", "add", "10.0.0.9/24", "dev", &vm_device_name(&a3.port_id)]);
    assert!(!pings(&vm_a3, Some("10.0.0.9"), "10.0.0.2"), "a spoofed source is dropped");
    assert!(eventually(|| pings(&vm_a3, Some("10.0.0.4"), "10.0.0.2")));

    let counters = backend.nft_counters(&a2.port_id).await.expect("counters");
    assert!(counters.ingress.rules[&1].packets >= 1, "the TCP 22 rule counted: {counters:?}");
    assert!(counters.ingress.rules[&2].packets >= 1, "the ICMP rule counted");
    assert!(counters.ingress.denied.packets >= 2, "port 23 and a3's SYN were dropped");
    assert!(counters.ingress.established.packets >= 1);
    assert!(counters.egress.rules[&0].packets >= 1, "a2's pings to a1 left through rule 0");
    let spoofed = backend.nft_counters(&a3.port_id).await.expect("counters").spoofed;
    assert!(spoofed.packets >= 1, "a3's spoofed frames were counted");
    // The same, as the agent reports them: one counter per rule, in the rules' order.
    let traffic = DpuBackend::counters(&backend, &a2.port_id).await.expect("traffic");
    assert!(!traffic.simulated);
    assert_eq!(traffic.rules.len(), a2.rules.len());
    assert!(traffic.rules[1].packets >= counters.ingress.rules[&1].packets);
    assert!(traffic.rules[0].packets >= counters.egress.rules[&0].packets);
    assert!(traffic.ingress.allowed.packets > counters.ingress.rules[&1].packets);
    assert!(traffic.ingress.dropped.packets >= counters.ingress.denied.packets);

    // Revoking the rule stops new connections at once; an established one goes on.
    let mut established = connect(&vm_a1, None, "10.0.0.2", 22).expect("a1 → a2:22");
    assert!(echoes(&mut established));
    backend.rules_apply(&a2.port_id, &[egress_any()]).await.expect("revoke");
    assert!(!connects(&vm_a1, "10.0.0.2", 22), "revoked: no new connection");
    assert!(echoes(&mut established), "the established connection goes on");
    backend.rules_apply(&a2.port_id, &a2.rules).await.expect("grant again");
    assert!(eventually(|| connects(&vm_a1, "10.0.0.2", 22)), "granted again");
}

#[tokio::test]
async fn a_vni_spans_two_dpus_over_vxlan_and_another_vni_stays_apart() {
    if !runnable() {
        return;
    }
    let (dpu1, dpu2) = (netns("dpu1"), netns("dpu2"));
    // The underlay: one veth between the two DPUs' namespaces.
    let (u1, u2) = ("underlay1", "underlay2");
    dpu1.ip(&["link", "add", u1, "type", "veth", "peer", "name", u2, "netns", &dpu2.name]);
    for (dpu, dev, addr) in [(&dpu1, u1, "192.0.2.1/24"), (&dpu2, u2, "192.0.2.2/24")] {
        dpu.ip(&["addr", "add", addr, "dev", dev]);
        dpu.ip(&["link", "set", dev, "up"]);
    }
    let backend1 = backend(&dpu1, "192.0.2.1", vec![Ipv4Addr::new(192, 0, 2, 2)]).await;
    let backend2 = backend(&dpu2, "192.0.2.2", vec![Ipv4Addr::new(192, 0, 2, 1)]).await;
    let open = || vec![egress_any(), rule(Direction::Ingress, Protocol::Any, None, "0.0.0.0/0")];
    let vm1 = plug(&backend1, &dpu1, &spec(1, 100, "10.0.0.1", open())).await;
    let vm4 = plug(&backend1, &dpu1, &spec(4, 200, "10.0.0.4", open())).await;
    let vm2 = plug(&backend2, &dpu2, &spec(2, 100, "10.0.0.2", open())).await;
    let vm3 = plug(&backend2, &dpu2, &spec(3, 200, "10.0.0.3", open())).await;
    for vm in [&vm2, &vm3] {
        serve(vm, 22);
    }

    assert!(eventually(|| connects(&vm1, "10.0.0.2", 22)), "VNI 100 spans both DPUs");
    assert!(eventually(|| pings(&vm1, None, "10.0.0.2")));
    assert!(eventually(|| connects(&vm4, "10.0.0.3", 22)), "so does VNI 200");
    assert!(!connects(&vm1, "10.0.0.3", 22), "VNI 100 never reaches VNI 200");
    assert!(!pings(&vm1, None, "10.0.0.3"));
    let fdb = run("bridge", &["-n", &dpu1.name, "fdb", "show", "dev", "vx100"]);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.0.2.2"), "the flood entry: {fdb}");
}

#[tokio::test]
async fn detaching_leaves_nothing_behind_and_every_operation_is_idempotent() {
    if !runnable() {
        return;
    }
    let dpu = netns("dpu");
    let backend = backend(&dpu, "192.0.2.1", vec![Ipv4Addr::new(192, 0, 2, 2)]).await;
    let port = spec(7, 100, "10.0.0.7", vec![egress_any()]);
    let (representor, vm_side) =
        (format!("pr{}", &vm_device_name(&port.port_id)[2..]), vm_device_name(&port.port_id));
    for _ in 0..2 {
        backend.vni_attach(100).await.expect("vni attach");
        backend.port_attach(&port).await.expect("port attach");
        backend.rules_apply(&port.port_id, &port.rules).await.expect("rules apply");
    }
    let vm_link = dpu.ip(&["link", "show", &vm_side]);
    assert!(vm_link.contains(&port.mac), "the VM side carries the port's MAC: {vm_link}");
    assert!(dpu.ip(&["link", "show", &representor]).contains("master br100"));
    let vxlan = dpu.ip(&["-d", "link", "show", "vx100"]);
    assert!(vxlan.contains("master br100") && vxlan.contains("nolearning"), "{vxlan}");
    assert!(vxlan.contains("neigh_suppress on"), "{vxlan}");

    // Moving the port to another VNI re-enslaves it and moves its firewall entries.
    let moved = PortSpec { vni: 200, generation: 2, ..port.clone() };
    backend.vni_attach(200).await.expect("vni attach");
    backend.port_attach(&moved).await.expect("move");
    assert!(dpu.ip(&["link", "show", &representor]).contains("master br200"));
    let ruleset = dpu.nft_ruleset();
    assert!(ruleset.contains("\"br200\" . 10.0.0.7") && !ruleset.contains("\"br100\" . 10.0.0.7"));

    for _ in 0..2 {
        backend.port_detach(&port.port_id).await.expect("port detach");
        backend.vni_detach(100).await.expect("vni detach");
        backend.vni_detach(200).await.expect("vni detach");
    }
    let links = dpu.ip(&["-o", "link", "show"]);
    for gone in [representor.as_str(), &vm_side, "br100", "vx100", "br200", "vx200"] {
        assert!(!links.contains(gone), "{gone} is left: {links}");
    }
    let ruleset = dpu.nft_ruleset();
    let tag = &representor[2..];
    assert!(
        !ruleset.contains(tag) && !ruleset.contains("br100") && !ruleset.contains("br200"),
        "{ruleset}"
    );
    assert!(backend.nft_counters(&port.port_id).await.is_err(), "no counters for a detached port");
}

/// A TCP server in `ns` on `port` that answers every connection with `<name> <peer address>`
/// and closes it; lives until the process ends.
fn serve_named(ns: &Netns, port: u16, name: &'static str) {
    let listener = ns.enter(|| TcpListener::bind(("0.0.0.0", port)).expect("bind"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if let Ok(peer) = stream.peer_addr() {
                let _ = stream.write_all(format!("{name} {}", peer.ip()).as_bytes());
            }
        }
    });
}

/// What a server of [`serve_named`] at `to:port` answers `ns` within [`TIMEOUT`].
fn answer(ns: &Netns, to: &str, port: u16) -> Option<String> {
    let mut stream = connect(ns, None, to, port)?;
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Deletes the NAT router namespaces of the DPU namespace `dpu` (`<dpu>.nat<tag>`) when the
/// test ends, however it ends.
struct Routers<'a>(&'a Netns);

impl Routers<'_> {
    fn left(&self) -> Vec<String> {
        let prefix = format!("{}.nat", self.0.name);
        std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Routers<'_> {
    fn drop(&mut self) {
        for name in self.left() {
            let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn public_spec(n: u8, vni: u32, ip: &str, public_ip: Option<&str>) -> PortSpec {
    let rules = vec![
        egress_any(),
        rule(Direction::Ingress, Protocol::Tcp, Some((8080, 8080)), "0.0.0.0/0"),
    ];
    PortSpec {
        gateway: Some(Gateway { address: "10.0.0.1".parse().expect("ip"), prefix_len: 24 }),
        public_ip: public_ip.map(|p| p.parse().expect("public ip")),
        ..spec(n, vni, ip, rules)
    }
}

#[tokio::test]
async fn public_ips_map_one_to_one_through_the_security_group_and_tenants_stay_apart() {
    if !runnable() {
        return;
    }
    // The provider's external network: 203.0.113.0/24 between the DPU's uplink and an
    // "internet" namespace, which is the network's gateway and holds a server further out.
    let (dpu, internet) = (netns("dpu"), netns("inet"));
    let routers = Routers(&dpu);
    dpu.ip(&[
        "link",
        "add",
        "uplink0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &internet.name,
    ]);
    dpu.ip(&["addr", "add", "203.0.113.2/24", "dev", "uplink0"]);
    dpu.ip(&["link", "set", "uplink0", "up"]);
    internet.ip(&["addr", "add", "203.0.113.1/24", "dev", "eth0"]);
    internet.ip(&["link", "set", "eth0", "up"]);
    internet.ip(&["addr", "add", "198.51.100.80/32", "dev", "lo"]);
    serve_named(&internet, 80, "internet");
    let config = |uplink| LinuxDpuConfig {
        dpu: description("192.0.2.1"),
        netns: Some(dpu.name.clone()),
        remote_vteps: vec![],
        uplink,
    };
    let uplink = UplinkConfig {
        device: "uplink0".into(),
        gateway: "203.0.113.1".parse().expect("ip"),
        table: 4790,
    };

    // Without an uplink a public IP is refused.
    let plain = LinuxDpuBackend::start(config(None)).await.expect("backend starts");
    let a = public_spec(1, 100, "10.0.0.5", Some("203.0.113.10"));
    plain.vni_attach(100).await.expect("vni attach");
    let err = plain.port_attach(&a).await.expect_err("no uplink");
    assert!(err.to_string().contains("this DPU has no uplink configured;"), "{err}");
    plain.vni_detach(100).await.expect("vni detach");

    let backend = LinuxDpuBackend::start(config(Some(uplink.clone()))).await.expect("starts");
    // Tenants A (VNI 100) and B (VNI 200) with the same private address, each its own
    // public IP; C on A's VNI has none.
    let b = public_spec(2, 200, "10.0.0.5", Some("203.0.113.11"));
    let c = public_spec(3, 100, "10.0.0.6", None);
    let mut vms = Vec::new();
    for (port, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let vm = plug(&backend, &dpu, port).await;
        vm.ip(&["route", "add", "default", "via", "10.0.0.1"]);
        serve_named(&vm, 8080, name);
        vms.push(vm);
    }
    let [vm_a, vm_b, vm_c] = &vms[..] else { unreachable!() };
    let gets = |ns: &Netns, to: &str, port: u16, expected: &str| {
        eventually(|| answer(ns, to, port).as_deref() == Some(expected))
    };

    // In: each public IP reaches its own VM (which sees the client's real address).
    assert!(gets(&internet, "203.0.113.10", 8080, "a 203.0.113.1"), "the internet reaches A");
    assert!(gets(&internet, "203.0.113.11", 8080, "b 203.0.113.1"), "and B, not A");
    // Out: from each VM's public IP, through the uplink's gateway.
    assert!(gets(vm_a, "198.51.100.80", 80, "internet 203.0.113.10"), "A leaves as its public IP");
    assert!(gets(vm_b, "198.51.100.80", 80, "internet 203.0.113.11"), "B as its own");
    assert!(gets(vm_a, "203.0.113.11", 8080, "b 203.0.113.10"), "A reaches B's public IP");
    // C has no public IP: no gateway answers it, nothing gets out.
    assert!(!connects(vm_c, "198.51.100.80", 80), "C does not get out");
    assert!(!connects(vm_c, "203.0.113.1", 80));
    assert!(!pings(vm_c, None, "10.0.0.1"), "C does not even see A's gateway");
    assert!(eventually(|| pings(vm_a, None, "10.0.0.1")), "A pings its gateway");
    // The security group judges the traffic of the public IP.
    let counters = backend.nft_counters(&a.port_id).await.expect("counters");
    assert!(counters.ingress.rules[&1].packets >= 1, "the ingress rule counted: {counters:?}");
    assert!(counters.egress.rules[&0].packets >= 1, "the egress rule counted");

    // Without the ingress rule no new connection gets in; B's is untouched; out still works.
    backend.rules_apply(&a.port_id, &[egress_any()]).await.expect("revoke");
    assert!(!connects(&internet, "203.0.113.10", 8080), "revoked: no new connection to A");
    assert!(gets(&internet, "203.0.113.11", 8080, "b 203.0.113.1"));
    assert!(gets(vm_a, "198.51.100.80", 80, "internet 203.0.113.10"));
    backend.rules_apply(&a.port_id, &a.rules).await.expect("grant again");
    assert!(gets(&internet, "203.0.113.10", 8080, "a 203.0.113.1"), "granted again");

    // Ensuring the port again changes nothing; a new generation without the public IP
    // takes both directions away.
    backend.port_attach(&a).await.expect("again");
    let a_private = PortSpec { public_ip: None, generation: 2, ..a.clone() };
    backend.port_attach(&a_private).await.expect("public IP removed");
    backend.rules_apply(&a.port_id, &a.rules).await.expect("rules");
    assert!(!connects(&internet, "203.0.113.10", 8080), "no way in");
    assert!(!connects(vm_a, "198.51.100.80", 80), "no way out");
    assert!(gets(&internet, "203.0.113.11", 8080, "b 203.0.113.1"), "B goes on");
    let left = routers.left();
    assert_eq!(left.len(), 1, "only B's router is left: {left:?}");

    // A restarted backend deletes the routers; ensuring B again brings its back.
    let backend = LinuxDpuBackend::start(config(Some(uplink))).await.expect("restarts");
    assert!(routers.left().is_empty(), "start deleted the routers");
    for port in [&a_private, &b] {
        backend.vni_attach(port.vni).await.expect("vni attach");
        backend.port_attach(port).await.expect("port attach");
        backend.rules_apply(&port.port_id, &port.rules).await.expect("rules apply");
    }
    assert!(gets(&internet, "203.0.113.11", 8080, "b 203.0.113.1"), "B is back");
    assert!(gets(vm_b, "198.51.100.80", 80, "internet 203.0.113.11"));

    // Detaching leaves no router, leg, address, route, rule or nftables element behind.
    for _ in 0..2 {
        backend.port_detach(&b.port_id).await.expect("port detach");
    }
    assert!(!connects(&internet, "203.0.113.11", 8080), "B's public IP is gone");
    assert!(routers.left().is_empty(), "{:?}", routers.left());
    let tag = &vm_device_name(&b.port_id)[2..];
    let links = dpu.ip(&["-o", "link", "show"]);
    for leg in ["gw", "pu", "gl", "pl"] {
        assert!(!links.contains(&format!("{leg}{tag}")), "{leg}{tag} is left: {links}");
    }
    let rules = dpu.ip(&["rule", "show"]);
    assert!(rules.contains("iif uplink0 lookup 4790"), "the uplink's rule stays: {rules}");
    assert_eq!(rules.matches("lookup 4790").count(), 1, "no port's rule is left: {rules}");
    let table = dpu.ip(&["route", "show", "table", "4790"]);
    assert_eq!(table.trim(), "default via 203.0.113.1 dev uplink0 proto static onlink", "{table}");
    let everything = dpu.ip(&["-o", "addr", "show"]) + &dpu.ip(&["route", "show", "table", "all"]);
    assert!(
        !everything.contains("203.0.113.11") && !everything.contains("203.0.113.10"),
        "{everything}"
    );
    let ruleset = dpu.nft_ruleset();
    assert!(!ruleset.contains(tag), "{ruleset}");
}
