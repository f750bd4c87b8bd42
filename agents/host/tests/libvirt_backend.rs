//! The libvirt backend against the reconstructed HGX H100 sysfs trees (tests/fixtures) and
//! libvirt's in-process test driver (`test:///default`, no daemon): inventory, domain XML
//! (schema-validated with `virt-xml-validate` and by libvirt on define), and the backend's
//! define/start/stop/reboot/power-off/undefine with real qcow2 overlays and config drives.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use host_agent::backend::libvirt::domain_xml::{self, DomainSettings, DomainType};
use host_agent::backend::libvirt::{HostFacts, LibvirtConfig, VmFiles, sysfs};
use host_agent::{
    DriverError, GuestNic, HostBackend, HostDescription, LibvirtBackend, Partition, VmSpec,
};
use virt::connect::Connect;

/// Module id of the GPU at each nvidia-smi index, as on the sim fleet's HGX H100.
const MODULE_AT_INDEX: [u32; 8] = [3, 1, 4, 2, 7, 5, 8, 6];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn hgx_partitions() -> Vec<Partition> {
    let mut table = vec![
        Partition { id: 0, module_ids: (1..=8).collect() },
        Partition { id: 1, module_ids: vec![1, 2, 3, 4] },
        Partition { id: 2, module_ids: vec![5, 6, 7, 8] },
        Partition { id: 3, module_ids: vec![1, 3] },
        Partition { id: 4, module_ids: vec![2, 4] },
        Partition { id: 5, module_ids: vec![5, 7] },
        Partition { id: 6, module_ids: vec![6, 8] },
    ];
    table.extend((1..=8).map(|m| Partition { id: m + 6, module_ids: vec![m] }));
    table
}

fn facts() -> HostFacts {
    HostFacts {
        host_id: "su1-h07".into(),
        system_model: "HGX H100 8-GPU".into(),
        scalable_unit: 1,
        gpu_module_ids: MODULE_AT_INDEX.to_vec(),
        gpu_uuids: vec![],
        gpu_model: "H100-SXM5-80GB".into(),
        gpu_memory_mib: 81559,
        leaf_switch_ids: vec![],
        nic_speed_gbps: 400,
        dpu_ids: vec!["su1-h07-dpu0".into()],
        partitions: hgx_partitions(),
    }
}

fn host(layout: &str) -> HostDescription {
    let read = sysfs::read(&fixture(layout)).expect("fixture reads");
    host_agent::backend::libvirt::inventory::describe(&read, &facts()).expect("fixture describes")
}

const LAYOUTS: [&str; 2] = ["hgx-h100-2numa", "hgx-h100-1numa"];

#[test]
fn test_fixture_inventory_two_numa_nodes() {
    let host = host("hgx-h100-2numa");
    assert_eq!(host.numa_nodes.len(), 2);
    let node0 = host.numa_node(0).unwrap();
    assert_eq!(node0.cpus.len(), 112);
    assert_eq!(node0.cpus[..3], [0, 1, 2]);
    assert!(node0.cpus.contains(&112) && !node0.cpus.contains(&56));
    assert_eq!(host.numa_node(1).unwrap().cpus[0], 56);
    assert_eq!(node0.hugepages_1g_total, 960);
    assert_eq!(node0.memory_mib, 1056462848 / 1024);
    assert_eq!(host.numa_node_of_cpu(223), Some(1));

    let buses: Vec<&str> = host.gpus.iter().map(|g| &g.pci_address[5..7]).collect();
    assert_eq!(buses, ["1b", "43", "52", "61", "9d", "c3", "d1", "df"]);
    let modules: Vec<u32> = host.gpus.iter().map(|g| g.module_id).collect();
    assert_eq!(modules, MODULE_AT_INDEX);
    // Eight rail NICs: the BlueField on its own root port is not one.
    assert_eq!(host.nics.len(), 8);
    assert!(host.nics.iter().all(|n| !n.pci_address.starts_with("0000:a8")));
    for (i, (gpu, nic)) in host.gpus.iter().zip(&host.nics).enumerate() {
        // GPU i and NIC i share the switch (its upstream port), and the NUMA node.
        assert_eq!(gpu.pcie_switch, nic.pcie_switch, "pair {i}");
        assert_eq!(gpu.numa_node, nic.numa_node, "pair {i}");
        assert_eq!(gpu.numa_node, u32::from(i >= 4), "pair {i}");
        assert_eq!(nic.name, format!("mlx5_{i}"));
        assert_eq!(nic.rail, i as u32);
        assert_eq!(nic.leaf_switch_id, format!("su1-leaf{i}"));
    }
    assert_eq!(host.gpus[0].pcie_switch, "0000:16:00.0");
    let switches: BTreeSet<&str> = host.gpus.iter().map(|g| g.pcie_switch.as_str()).collect();
    assert_eq!(switches.len(), 8);
    assert_eq!(host.gpus[0].uuid, "pci-0000:1b:00.0");
    assert_eq!(host.partitions.len(), 15);
}

#[test]
fn test_fixture_inventory_one_numa_node() {
    let host = host("hgx-h100-1numa");
    assert_eq!(host.numa_nodes.len(), 1);
    assert_eq!(host.numa_nodes[0].cpus, (0..224).collect::<Vec<_>>());
    assert!(host.gpus.iter().all(|g| g.numa_node == 0));
    assert!(host.nics.iter().all(|n| n.numa_node == 0));
    assert_eq!(host.gpus.len(), 8);
}

#[test]
fn test_config_that_does_not_match_the_machine_is_refused() {
    let read = sysfs::read(&fixture("hgx-h100-2numa")).unwrap();
    let describe = host_agent::backend::libvirt::inventory::describe;
    let short = HostFacts { gpu_module_ids: vec![1, 2], ..facts() };
    assert!(describe(&read, &short).unwrap_err().to_string().contains("sysfs shows 8"));
    let bad_partition =
        HostFacts { partitions: vec![Partition { id: 0, module_ids: vec![9] }], ..facts() };
    assert!(describe(&read, &bad_partition).unwrap_err().to_string().contains("module 9"));
}

/// A spec for `modules` on `host`: their paired NICs, 4 vCPUs per GPU (4 for CPU-only) on
/// the GPUs' nodes after the first 2 CPUs of each node, the emulator on CPU 1.
fn spec(host: &HostDescription, n: u32, modules: &[u32]) -> VmSpec {
    let gpus: Vec<_> = modules.iter().map(|m| host.gpu_by_module(*m).unwrap()).collect();
    let nics = gpus
        .iter()
        .map(|g| host.nics.iter().find(|n| n.pcie_switch == g.pcie_switch).unwrap().index)
        .collect();
    let nodes: Vec<u32> = if gpus.is_empty() {
        vec![0]
    } else {
        gpus.iter().map(|g| g.numa_node).collect::<BTreeSet<_>>().into_iter().collect()
    };
    let mut pins = Vec::new();
    for node in &nodes {
        let on_node = gpus.iter().filter(|g| g.numa_node == *node).count().max(1);
        pins.extend(host.numa_node(*node).unwrap().cpus.iter().skip(2).take(4 * on_node));
    }
    let partition = host
        .partitions
        .iter()
        .find(|p| {
            p.module_ids
                == modules.iter().copied().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>()
        })
        .map(|p| p.id);
    VmSpec {
        vm_id: format!("00000000-0000-4000-8000-{n:012}"),
        name: format!("vm-{n}"),
        generation: 1,
        partition_id: if modules.is_empty() { None } else { partition },
        gpu_module_ids: modules.to_vec(),
        nic_indices: nics,
        vcpu_pins: pins,
        emulator_cpu: 1,
        numa_nodes: nodes,
        memory_mib: 16 * 1024 * modules.len().max(1) as u64,
        disk_gib: 20,
        image: "tiny.qcow2".into(),
        hostname: String::new(),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3Nza test@example".into()],
        user_data: String::new(),
        nics: vec![GuestNic {
            port_id: format!("0190c2f4-7a1b-7c3d-8e9f-{n:012}"),
            mac: format!("52:54:00:aa:00:{:02x}", n % 256),
            ip: Ipv4Addr::new(10, 1, 0, 10),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
        }],
        fabric_nics: vec![],
    }
}

const GPU_SETS: [&[u32]; 5] = [&[], &[1], &[1, 3], &[1, 2, 3, 4], &[1, 2, 3, 4, 5, 6, 7, 8]];

fn qemu() -> DomainSettings {
    DomainSettings { domain_type: DomainType::Qemu, cpu_only_hugepages: false, tap_nics: false }
}

/// `virt-xml-validate FILE domain`; `false` (with the reason printed) if the tool is absent.
fn xml_validates(xml: &str, dir: &Path) -> bool {
    let file = dir.join("domain.xml");
    std::fs::write(&file, xml).unwrap();
    let output = match Command::new("virt-xml-validate").arg(&file).arg("domain").output() {
        Ok(output) => output,
        Err(e) => {
            println!("skipping virt-xml-validate: {e} (install libvirt-clients and libxml2-utils)");
            return false;
        }
    };
    assert!(
        output.status.success(),
        "virt-xml-validate refused:\n{}\n{}\n{xml}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[test]
fn test_rendered_domains_validate_and_run_on_the_test_driver() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connect::open(Some("test:///default")).unwrap();
    let mut n = 0;
    for layout in LAYOUTS {
        let host = host(layout);
        for (domain_type, modules) in
            GPU_SETS.iter().flat_map(|m| [(DomainType::Qemu, *m), (DomainType::Kvm, *m)])
        {
            n += 1;
            let spec = spec(&host, n, modules);
            let settings =
                DomainSettings { domain_type, cpu_only_hugepages: false, tap_nics: true };
            let files = VmFiles::new(dir.path(), &spec.vm_id);
            let xml = domain_xml::render(&spec, &host, &settings, &files).expect("renders");
            let case = format!("{layout}, GPUs {modules:?}, {domain_type:?}");
            let count = |needle: &str| xml.matches(needle).count();
            assert_eq!(count("<hostdev "), 2 * modules.len(), "{case}");
            let tap = format!("<target dev='tp{n:011}'/>");
            assert!(xml.contains(&tap) && count("<interface type='ethernet'>") == 1, "{case}");
            assert_eq!(count("<vcpupin "), spec.vcpu_pins.len(), "{case}");
            assert_eq!(count("<cell id="), spec.numa_nodes.len(), "{case}");
            assert_eq!(count("<memnode "), spec.numa_nodes.len(), "{case}");
            let expanders = if modules.is_empty() { 0 } else { spec.numa_nodes.len() };
            assert_eq!(count("model='pcie-expander-bus'"), expanders, "{case}");
            assert_eq!(count("model='pcie-switch-upstream-port'"), modules.len(), "{case}");
            assert_eq!(count("<locked/>"), usize::from(!modules.is_empty()), "{case}");
            let pcihole = format!("<pcihole64 unit='KiB'>{}</pcihole64>", modules.len() << 27);
            assert_eq!(xml.contains(&pcihole), !modules.is_empty(), "{case}");
            for module in modules.iter() {
                let gpu = host.gpu_by_module(*module).unwrap();
                let bus = format!(
                    "bus='0x{}' slot='0x00' function='0x0'/></source>",
                    &gpu.pci_address[5..7]
                );
                assert!(xml.contains(&bus), "{case}: GPU {module}");
            }
            xml_validates(&xml, dir.path());
            let domain = conn
                .define_domain_xml_flags(&xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE)
                .unwrap_or_else(|e| panic!("{case}: define: {e}\n{xml}"));
            domain.create().unwrap_or_else(|e| panic!("{case}: start: {e}"));
            assert!(domain.is_active().unwrap());
            domain.destroy().unwrap_or_else(|e| panic!("{case}: stop: {e}"));
            domain.undefine().unwrap_or_else(|e| panic!("{case}: undefine: {e}"));
        }
    }
}

/// The checks above can fail: `<cputune>` under `<devices>` is refused by both. (Order
/// among `<domain>`'s children is free in libvirt 9.0: `<cputune>` after `<os>` validates.)
#[test]
fn test_validation_catches_misplaced_xml() {
    let dir = tempfile::tempdir().unwrap();
    let host = host("hgx-h100-2numa");
    let spec = spec(&host, 90, &[1]);
    let files = VmFiles::new(dir.path(), &spec.vm_id);
    let xml = domain_xml::render(&spec, &host, &qemu(), &files).unwrap();
    let start = xml.find("  <cputune>").unwrap();
    let end = xml.find("</cputune>\n").unwrap() + "</cputune>\n".len();
    let cputune = xml[start..end].to_owned();
    let moved = xml.replacen(&cputune, "", 1).replacen(
        "  <devices>\n",
        &format!("  <devices>\n{cputune}"),
        1,
    );
    let file = dir.path().join("bad.xml");
    std::fs::write(&file, &moved).unwrap();
    if let Ok(output) = Command::new("virt-xml-validate").arg(&file).arg("domain").output() {
        assert!(!output.status.success(), "virt-xml-validate accepted misplaced XML");
    }
    let conn = Connect::open(Some("test:///default")).unwrap();
    let err = conn
        .define_domain_xml_flags(&moved, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE)
        .expect_err("libvirt refuses misplaced XML");
    assert!(err.message().contains("validate"), "{err}");
}

#[test]
fn test_gpu_domain_xml_content() {
    let dir = tempfile::tempdir().unwrap();
    let host = host("hgx-h100-2numa");
    // Modules 1 and 5: indexes 1 and 5, one on each node.
    let spec = spec(&host, 1, &[1, 5]);
    let files = VmFiles::new(dir.path(), &spec.vm_id);
    let xml = domain_xml::render(&spec, &host, &qemu(), &files).unwrap();
    assert!(xml.starts_with("<domain type='qemu'>"));
    assert!(xml.contains("machine='q35'"));
    // vCPU pins: node 0 CPUs 2-5, node 1 CPUs 58-61; emulator on CPU 1.
    assert!(xml.contains("<vcpupin vcpu='0' cpuset='2'/>"));
    assert!(xml.contains("<vcpupin vcpu='4' cpuset='58'/>"));
    assert!(xml.contains("<vcpupin vcpu='7' cpuset='61'/>"));
    assert!(xml.contains("<emulatorpin cpuset='1'/>"));
    assert!(xml.contains("<memory mode='strict' nodeset='0,1'/>"));
    assert!(xml.contains("<memnode cellid='1' mode='strict' nodeset='1'/>"));
    assert!(xml.contains("<cell id='0' cpus='0,1,2,3' memory='16384' unit='MiB'/>"));
    assert!(xml.contains("<cell id='1' cpus='4,5,6,7' memory='16384' unit='MiB'/>"));
    assert!(xml.contains("<topology sockets='2' dies='1' cores='4' threads='1'/>"));
    assert!(xml.contains("<hugepages><page size='1' unit='G'/></hugepages>"));
    assert!(xml.contains("<locked/>"));
    assert!(xml.contains("<hard_limit unit='KiB'>35651584</hard_limit>"));
    assert!(xml.contains("<pcihole64 unit='KiB'>268435456</pcihole64>"));
    // Guest PCIe: pxb for cell 0 (index 1), root port 2, upstream 3, downstreams 4 and 5
    // holding GPU 0000:43:00.0 (module 1) and NIC 0000:40:00.0 (its pair); then cell 1.
    assert!(xml.contains(
        "<controller type='pci' index='1' model='pcie-expander-bus'>\n      <model name='pxb-pcie'/>\n      <target busNr='64'><node>0</node></target>"
    ));
    assert!(xml.contains("<target busNr='128'><node>1</node></target>"));
    assert!(xml.contains("index='3' model='pcie-switch-upstream-port'"));
    let gpu = "<source><address domain='0x0000' bus='0x43' slot='0x00' function='0x0'/></source>\n      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>";
    let nic = "<source><address domain='0x0000' bus='0x40' slot='0x00' function='0x0'/></source>\n      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>";
    assert!(xml.contains(gpu), "{xml}");
    assert!(xml.contains(nic), "{xml}");
    // Module 5 is index 5: GPU c3, NIC c0, behind cell 1's expander (index 6).
    assert!(xml.contains("bus='0xc3' slot='0x00'"));
    assert!(xml.contains("bus='0xc0' slot='0x00'"));
    assert!(
        xml.contains("<address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>")
    );
    assert_eq!(xml.matches("<hostdev mode='subsystem' type='pci' managed='yes'>").count(), 4);
    assert!(xml.contains(&format!("<source file='{}'/>", files.overlay.display())));
    assert!(xml.contains("<driver name='qemu' type='qcow2'"));
    assert!(xml.contains(&format!("<source file='{}'/>", files.config_drive.display())));
    assert!(xml.contains(&format!("<log file='{}' append='off'/>", files.console_log.display())));
    assert!(xml.contains("<console type='pty'>"));
    assert!(xml.contains("<memballoon model='none'/>"));
}

#[test]
fn test_cpu_only_domain_has_no_hostdevs_and_hugepages_only_by_setting() {
    let dir = tempfile::tempdir().unwrap();
    let host = host("hgx-h100-2numa");
    let spec = VmSpec { memory_mib: 1500, ..spec(&host, 2, &[]) };
    let files = VmFiles::new(dir.path(), &spec.vm_id);
    let xml = domain_xml::render(&spec, &host, &qemu(), &files).unwrap();
    for absent in ["<hostdev", "hugepages", "<locked/>", "hard_limit", "pcihole64", "pxb-pcie"] {
        assert!(!xml.contains(absent), "{absent} in {xml}");
    }
    assert!(xml.contains("<memory unit='MiB'>1500</memory>"));
    let settings = DomainSettings { cpu_only_hugepages: true, ..qemu() };
    let xml = domain_xml::render(&spec, &host, &settings, &files).unwrap();
    assert!(xml.contains("<page size='1' unit='G'/>") && !xml.contains("<locked/>"));
    // Whole GiB pages: 1500 MiB rounds up to 2 GiB.
    assert!(xml.contains("<memory unit='MiB'>2048</memory>"));
    xml_validates(&xml, dir.path());
}

#[test]
fn test_a_nic_without_its_gpu_sits_alone_on_a_root_port() {
    let dir = tempfile::tempdir().unwrap();
    let host = host("hgx-h100-2numa");
    // Module 1 (index 1) with its NIC 1, plus NIC 2 whose GPU (module 4) is not in the VM.
    let spec = VmSpec { nic_indices: vec![1, 2], ..spec(&host, 4, &[1]) };
    let files = VmFiles::new(dir.path(), &spec.vm_id);
    let xml = domain_xml::render(&spec, &host, &qemu(), &files).unwrap();
    // pxb 1; root port 2, upstream 3, downstreams 4 (GPU) and 5 (NIC 1); root port 6 (NIC 2).
    assert!(xml.contains("index='6' model='pcie-root-port'"), "{xml}");
    assert!(!xml.contains("index='7'"), "{xml}");
    let nic2 = "bus='0x4f' slot='0x00' function='0x0'/></source>\n      <address type='pci' domain='0x0000' bus='0x06'";
    assert!(xml.contains(nic2), "{xml}");
    xml_validates(&xml, dir.path());
    let conn = Connect::open(Some("test:///default")).unwrap();
    let domain = conn.define_domain_xml_flags(&xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE).unwrap();
    domain.undefine().unwrap();
}

#[test]
fn test_specs_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = host("hgx-h100-2numa");
    let files = VmFiles::new(dir.path(), "x");
    let render = |spec: &VmSpec| domain_xml::render(spec, &host, &qemu(), &files).unwrap_err();
    let base = spec(&host, 3, &[1]);
    let err = render(&VmSpec { gpu_module_ids: vec![9], ..base.clone() });
    assert!(err.to_string().contains("GPU module 9"), "{err}");
    let err = render(&VmSpec { vcpu_pins: vec![500], ..base.clone() });
    assert!(err.to_string().contains("CPU 500"), "{err}");
    // Module 5 is on node 1, which the spec does not list.
    let err = render(&VmSpec { gpu_module_ids: vec![5], nic_indices: vec![], ..base.clone() });
    assert!(err.to_string().contains("NUMA node 1"), "{err}");
    let err = render(&VmSpec { numa_nodes: vec![0, 1], ..base });
    assert!(err.to_string().contains("no vCPU is pinned on NUMA node 1"), "{err}");
}

// The backend, end to end on the test driver.

struct Setup {
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
    backend: LibvirtBackend,
}

fn setup(fm_tool: Option<Vec<String>>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("images");
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&image_dir).unwrap();
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(image_dir.join("tiny.qcow2"))
        .arg("64M")
        .status()
        .expect("qemu-img runs (Debian qemu-utils)");
    assert!(status.success());
    let config = LibvirtConfig {
        uri: "test:///default".into(),
        domain_type: DomainType::Qemu,
        image_dir,
        state_dir: state_dir.clone(),
        sysfs_root: fixture("hgx-h100-2numa"),
        cpu_only_hugepages: false,
        fm_tool,
        shutdown_timeout_secs: 1,
        boot_wait_secs: 0,
        guest_memory_gib: None,
        vf_netns: None,
        host: facts(),
    };
    let backend = LibvirtBackend::open(config).expect("backend opens");
    Setup { _dir: dir, state_dir, backend }
}

fn qemu_img_backing(overlay: &Path) -> String {
    let out = Command::new("qemu-img").arg("info").arg(overlay).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_domain_lifecycle() {
    let s = setup(None);
    let host = s.backend.hardware().await.unwrap();
    assert_eq!(host.gpus.len(), 8);
    assert_eq!(&host, s.backend.description());
    // The image store as the scheduler sees it: bootable files only.
    std::fs::write(s.state_dir.parent().unwrap().join("images/notes.txt"), "x").unwrap();
    assert_eq!(s.backend.images().await.unwrap(), Some(vec!["tiny.qcow2".to_owned()]));
    let spec = VmSpec { user_data: String::new(), ..spec(&host, 10, &[1, 3]) };
    let files = VmFiles::new(&s.state_dir, &spec.vm_id);

    // Starting an undefined domain is the manager's bug.
    let err = s.backend.domain_start(&spec.vm_id).await.unwrap_err();
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");

    s.backend.domain_define(&spec).await.unwrap();
    s.backend.domain_define(&spec).await.unwrap(); // idempotent
    assert_eq!(s.backend.domain_running(&spec.vm_id).await.unwrap(), Some(false));
    let info = qemu_img_backing(&files.overlay);
    assert!(info.contains("tiny.qcow2") && info.contains("virtual size: 20 GiB"), "{info}");
    let iso = std::fs::read(&files.config_drive).unwrap();
    // ISO 9660 primary volume descriptor at 32 KiB: "CD001", volume id at offset 40.
    assert_eq!(&iso[0x8001..0x8006], b"CD001");
    assert_eq!(&iso[0x8028..0x802e], b"cidata");
    let text = String::from_utf8_lossy(&iso);
    assert!(text.contains("instance-id: 00000000-0000-4000-8000-000000000010"));
    assert!(text.contains("ssh-ed25519 AAAAC3Nza test@example"));

    s.backend.domain_start(&spec.vm_id).await.unwrap();
    s.backend.domain_start(&spec.vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(&spec.vm_id).await.unwrap(), Some(true));
    let err = s.backend.domain_undefine(&spec.vm_id).await.unwrap_err();
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");

    s.backend.domain_stop(&spec.vm_id).await.unwrap();
    s.backend.domain_stop(&spec.vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(&spec.vm_id).await.unwrap(), Some(false));
    s.backend.domain_undefine(&spec.vm_id).await.unwrap();
    s.backend.domain_undefine(&spec.vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(&spec.vm_id).await.unwrap(), None);
    assert!(!files.overlay.exists() && !files.config_drive.exists());
    s.backend.domain_stop(&spec.vm_id).await.unwrap(); // absent: fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_reboot_and_power_off() {
    let s = setup(None);
    let host = s.backend.description().clone();
    let spec = spec(&host, 12, &[1]);
    let vm_id = &spec.vm_id;

    // Neither an undefined nor a stopped domain can be rebooted; powering them off is fine.
    let err = s.backend.domain_reboot(vm_id).await.unwrap_err();
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");
    s.backend.domain_power_off(vm_id).await.unwrap();
    s.backend.domain_define(&spec).await.unwrap();
    let err = s.backend.domain_reboot(vm_id).await.unwrap_err();
    assert!(err.to_string().contains("is not running"), "{err}");
    s.backend.domain_power_off(vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(vm_id).await.unwrap(), Some(false));

    s.backend.domain_start(vm_id).await.unwrap();
    s.backend.domain_reboot(vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(vm_id).await.unwrap(), Some(true));
    s.backend.domain_power_off(vm_id).await.unwrap();
    s.backend.domain_power_off(vm_id).await.unwrap(); // idempotent
    assert_eq!(s.backend.domain_running(vm_id).await.unwrap(), Some(false));
    // Powered off, still defined: it starts again with the same devices and disk.
    s.backend.domain_start(vm_id).await.unwrap();
    assert_eq!(s.backend.domain_running(vm_id).await.unwrap(), Some(true));
    s.backend.domain_stop(vm_id).await.unwrap();
    s.backend.domain_undefine(vm_id).await.unwrap();
    s.backend.domain_power_off(vm_id).await.unwrap(); // absent: fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_refuses_missing_image_and_leaves_no_domain() {
    let s = setup(None);
    let host = s.backend.description().clone();
    let spec = VmSpec { image: "absent.qcow2".into(), ..spec(&host, 11, &[]) };
    let err = s.backend.domain_define(&spec).await.unwrap_err();
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");
    assert!(err.to_string().contains("absent.qcow2"), "{err}");
    assert_eq!(s.backend.domain_running(&spec.vm_id).await.unwrap(), None);
    let sneaky = VmSpec { image: "../etc/passwd".into(), ..spec.clone() };
    let err = s.backend.domain_define(&sneaky).await.unwrap_err();
    assert!(matches!(err, DriverError::InvalidArgument(_)), "{err:?}");
    // The catalog names the store file itself, extension included.
    let bare = VmSpec { image: "tiny".into(), ..spec };
    let err = s.backend.domain_define(&bare).await.unwrap_err();
    assert!(err.to_string().contains("neither .qcow2 nor .img/.raw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_partitions_through_the_sim_fabric_manager() {
    let s = setup(None);
    let table = hgx_partitions();
    s.backend.partition_activate(&table[3]).await.unwrap();
    s.backend.partition_activate(&table[3]).await.unwrap();
    assert_eq!(s.backend.active_partitions().await.unwrap(), BTreeSet::from([3]));
    s.backend.partition_deactivate(&table[3]).await.unwrap();
    assert!(s.backend.active_partitions().await.unwrap().is_empty());
    let unknown = Partition { id: 40, module_ids: vec![1] };
    let err = s.backend.partition_activate(&unknown).await.unwrap_err();
    assert!(matches!(err, DriverError::Internal(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_with_an_unreachable_libvirt_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = LibvirtConfig {
        uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock".into(),
        domain_type: DomainType::Qemu,
        image_dir: dir.path().into(),
        state_dir: dir.path().into(),
        sysfs_root: fixture("hgx-h100-1numa"),
        cpu_only_hugepages: false,
        fm_tool: None,
        shutdown_timeout_secs: 1,
        boot_wait_secs: 0,
        guest_memory_gib: None,
        vf_netns: None,
        host: facts(),
    };
    let err = LibvirtBackend::open(config).err().expect("no libvirtd at that socket");
    assert!(matches!(err, DriverError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("cannot connect to libvirt"), "{err}");
}

/// This machine: no GPUs, so a CPU-only host; a CPU-only VM runs on it (test driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backend_on_this_machine_is_a_cpu_only_host() {
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("images");
    std::fs::create_dir_all(&image_dir).unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(image_dir.join("tiny.qcow2"))
        .arg("16M")
        .status()
        .unwrap();
    assert!(made.success());
    let host_facts = HostFacts {
        gpu_module_ids: vec![],
        partitions: vec![],
        system_model: "build machine".into(),
        ..facts()
    };
    let config = LibvirtConfig {
        uri: "test:///default".into(),
        domain_type: DomainType::Qemu,
        image_dir,
        state_dir: dir.path().join("state"),
        sysfs_root: "/sys".into(),
        cpu_only_hugepages: false,
        fm_tool: None,
        shutdown_timeout_secs: 1,
        boot_wait_secs: 0,
        guest_memory_gib: None,
        vf_netns: None,
        host: host_facts,
    };
    let backend = LibvirtBackend::open(config).expect("this machine's /sys reads");
    let host = backend.hardware().await.unwrap();
    assert!(host.gpus.is_empty(), "{:?}", host.gpus);
    assert!(!host.numa_nodes.is_empty());
    let cpus: Vec<u32> = host.numa_nodes.iter().flat_map(|n| n.cpus.clone()).collect();
    assert!(cpus.len() >= 2, "{cpus:?}");
    let node = host.numa_node_of_cpu(cpus[0]).unwrap();
    let spec = VmSpec {
        vcpu_pins: vec![cpus[0]],
        emulator_cpu: cpus[1],
        numa_nodes: vec![node],
        memory_mib: 256,
        ..spec(&host, 20, &[])
    };
    backend.domain_define(&spec).await.unwrap();
    backend.domain_start(&spec.vm_id).await.unwrap();
    backend.domain_stop(&spec.vm_id).await.unwrap();
    backend.domain_undefine(&spec.vm_id).await.unwrap();
    assert_eq!(backend.domain_running(&spec.vm_id).await.unwrap(), None);
}
