//! What the kernel tells about the host, read from sysfs under a root path (`/sys`, or a
//! recorded tree in tests): NUMA nodes with their CPUs, memory and 1 GiB hugepages; NVIDIA
//! GPUs (vendor 0x10de, class 0x0302xx) and Mellanox/NVIDIA NICs (vendor 0x15b3, class
//! 0x0200xx) with their NUMA node and PCIe switch. Read-only.

use std::fs;
use std::path::{Path, PathBuf};

use agent_common::DriverError;

use super::pci::PciAddress;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsNode {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub memory_mib: u64,
    pub hugepages_1g_total: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciKind {
    NvidiaGpu,
    MellanoxNic,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    pub kind: PciKind,
    pub address: PciAddress,
    pub numa_node: u32,
    /// The PCIe switch the device sits behind: the switch's upstream port, i.e. the
    /// grandparent bridge in the canonical path (device → downstream port → upstream port).
    /// A device directly on a root port has that root port.
    pub pcie_switch: String,
    /// Its network interface's RDMA device name (`infiniband/mlx5_N`), NICs only.
    pub rdma_name: Option<String>,
    /// Its first network interface's MAC (`net/<if>/address`), NICs only.
    pub mac: Option<String>,
}

/// The facts read from one sysfs tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsInventory {
    pub nodes: Vec<SysfsNode>,
    /// GPUs then NICs, each in PCI address order (nvidia-smi's default index order).
    pub devices: Vec<PciDevice>,
}

impl SysfsInventory {
    pub fn gpus(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.kind == PciKind::NvidiaGpu)
    }

    pub fn nics(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.kind == PciKind::MellanoxNic)
    }
}

/// Reads the tree under `root` (e.g. `/sys`).
pub fn read(root: &Path) -> Result<SysfsInventory, DriverError> {
    let nodes = read_nodes(root)?;
    let mut devices = read_pci(root)?;
    devices.sort_by_key(|d| (d.kind == PciKind::MellanoxNic, d.address));
    Ok(SysfsInventory { nodes, devices })
}

fn read_nodes(root: &Path) -> Result<Vec<SysfsNode>, DriverError> {
    let dir = root.join("devices/system/node");
    let mut nodes = Vec::new();
    for (name, path) in entries(&dir)? {
        let Some(id) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cpus = parse_cpulist(read_text(&path.join("cpulist"))?.trim()).ok_or_else(|| {
            DriverError::Internal(format!("{}/cpulist is not a CPU list", path.display()))
        })?;
        let memory_mib = node_memory_mib(&read_text(&path.join("meminfo"))?).ok_or_else(|| {
            DriverError::Internal(format!("{}/meminfo has no MemTotal line", path.display()))
        })?;
        let hugepages = path.join("hugepages/hugepages-1048576kB/nr_hugepages");
        // No such directory: the kernel has no 1 GiB pages configured; none reserved.
        let hugepages_1g_total = match fs::read_to_string(&hugepages) {
            Ok(text) => text.trim().parse().map_err(|_| {
                DriverError::Internal(format!("{} is not a number", hugepages.display()))
            })?,
            Err(_) => 0,
        };
        nodes.push(SysfsNode { id, cpus, memory_mib, hugepages_1g_total });
    }
    if nodes.is_empty() {
        return Err(DriverError::Internal(format!(
            "{} lists no NUMA node; is this a sysfs tree?",
            dir.display()
        )));
    }
    nodes.sort_by_key(|n| n.id);
    Ok(nodes)
}

fn read_pci(root: &Path) -> Result<Vec<PciDevice>, DriverError> {
    let mut devices = Vec::new();
    for (name, link) in entries(&root.join("bus/pci/devices"))? {
        let Some(address) = PciAddress::try_parse(&name) else { continue };
        let vendor = read_text(&link.join("vendor"))?;
        let class = read_text(&link.join("class"))?;
        let kind = match (vendor.trim(), class.trim()) {
            ("0x10de", class) if class.starts_with("0x0302") => PciKind::NvidiaGpu,
            ("0x15b3", class) if class.starts_with("0x0200") => PciKind::MellanoxNic,
            _ => continue,
        };
        // -1 when firmware gives no affinity (a one-node machine, or a VM): node 0.
        let numa: i64 = read_text(&link.join("numa_node"))?.trim().parse().unwrap_or(-1);
        let canonical = fs::canonicalize(&link).map_err(|e| {
            DriverError::Internal(format!("cannot resolve {}: {e}", link.display()))
        })?;
        let rdma_name = first_entry(&link.join("infiniband"));
        let mac = first_entry(&link.join("net"))
            .and_then(|netdev| {
                fs::read_to_string(link.join("net").join(netdev).join("address")).ok()
            })
            .map(|mac| mac.trim().to_owned())
            .filter(|mac| !mac.is_empty());
        devices.push(PciDevice {
            kind,
            address,
            numa_node: u32::try_from(numa).unwrap_or(0),
            pcie_switch: pcie_switch(&canonical, &address),
            rdma_name,
            mac,
        });
    }
    Ok(devices)
}

/// The grandparent PCI function in `/sys/devices/pci0000:xx/<root port>/<upstream>/
/// <downstream>/<device>`, or the parent when the device has one bridge above it.
fn pcie_switch(canonical: &Path, address: &PciAddress) -> String {
    let bridges: Vec<String> = canonical
        .ancestors()
        .skip(1)
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .take_while(|name| PciAddress::try_parse(name).is_some())
        .collect();
    match bridges.as_slice() {
        [_downstream, upstream, ..] => upstream.clone(),
        [root_port] => root_port.clone(),
        [] => format!("{address}"),
    }
}

/// Parses `0-3,8,10-11`.
pub fn parse_cpulist(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// `Node 0 MemTotal:  263782148 kB` → MiB.
fn node_memory_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.contains("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().rev().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DriverError> {
    let read = fs::read_dir(dir)
        .map_err(|e| DriverError::Internal(format!("cannot list {}: {e}", dir.display())))?;
    let mut out: Vec<(String, PathBuf)> = read
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn first_entry(dir: &Path) -> Option<String> {
    entries(dir).ok()?.into_iter().next().map(|(name, _)| name)
}

fn read_text(path: &Path) -> Result<String, DriverError> {
    fs::read_to_string(path)
        .map_err(|e| DriverError::Internal(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpulist() {
        assert_eq!(parse_cpulist("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("a"), None);
    }

    #[test]
    fn test_node_meminfo() {
        let text = "Node 0 MemTotal:       263782148 kB\nNode 0 MemFree:  1 kB\n";
        assert_eq!(node_memory_mib(text), Some(263782148 / 1024));
    }

    #[test]
    fn test_switch_from_canonical_path() {
        let a = PciAddress::parse("0000:1b:00.0").unwrap();
        let deep = Path::new(
            "/sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/0000:17:01.0/0000:1b:00.0",
        );
        assert_eq!(pcie_switch(deep, &a), "0000:16:00.0");
        let flat = Path::new("/sys/devices/pci0000:00/0000:00:02.0/0000:1b:00.0");
        assert_eq!(pcie_switch(flat, &a), "0000:00:02.0");
    }

    /// This machine: no GPUs (a CPU-only host), but nodes with CPUs and memory.
    #[test]
    fn test_reads_this_machine() {
        let inventory = read(Path::new("/sys")).expect("this machine's /sys reads");
        assert!(!inventory.nodes.is_empty());
        let cpus: usize = inventory.nodes.iter().map(|n| n.cpus.len()).sum();
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cpus >= online, "{cpus} CPUs in nodes, {online} available");
        assert!(inventory.nodes.iter().all(|n| n.memory_mib > 0));
        for device in &inventory.devices {
            assert!(inventory.nodes.iter().any(|n| n.id == device.numa_node), "{device:?}");
        }
    }
}
