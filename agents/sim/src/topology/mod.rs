//! The fleet topology: which hosts, DPUs and leaf switches the simulator serves, and what each
//! host is made of. Read from TOML ([`file`](mod@file) is the format;
//! `topologies/hgx-h100.toml`, compiled in, is the default), checked ([`validate`]), and
//! expanded into one description per device ([`expand`]).

pub mod cpu_list;
pub mod expand;
pub mod file;
pub mod naming;
pub mod validate;

use std::path::Path;

use dpu_agent::DpuDescription;
use host_agent::HostDescription;
use switch_agent::SwitchDescription;

pub use expand::FleetPlan;
pub use file::TopologyFile;

/// The shipped HGX H100 topology (2 scalable units of 32 hosts).
pub const HGX_H100_TOML: &str = include_str!("../../topologies/hgx-h100.toml");

/// Why a topology could not be loaded. Displays as one sentence naming the file and field.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}; check the path and permissions")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}, line {line}{table}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        /// ` (in [[host.gpu]])`, or empty.
        table: String,
        message: String,
    },
    #[error("{origin}: {field} {message}")]
    Invalid { origin: String, field: String, message: String },
}

/// A validated topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    file: TopologyFile,
}

impl Topology {
    /// The shipped HGX H100 topology with `scalable_units` units of 32 hosts, clamped to
    /// `1..=MAX_SCALABLE_UNITS` (use [`try_hgx_h100`](Self::try_hgx_h100) to refuse instead).
    pub fn hgx_h100(scalable_units: u32) -> Topology {
        let units = scalable_units.clamp(1, validate::MAX_SCALABLE_UNITS);
        // The file is compiled in, and `test_shipped_topology_shape` checks it at both ends of
        // the allowed range, so this cannot fail in a tested build.
        Self::try_hgx_h100(units).expect("the built-in HGX H100 topology is valid")
    }

    /// The shipped HGX H100 topology with `scalable_units` units of 32 hosts; an error names
    /// the allowed range if the count is outside it.
    pub fn try_hgx_h100(scalable_units: u32) -> Result<Topology, TopologyError> {
        Self::parse("built-in topology hgx-h100.toml", HGX_H100_TOML)?
            .with_scalable_units(scalable_units)
    }

    /// Reads and checks a TOML topology file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TopologyError::Read { path: path.display().to_string(), source })?;
        Self::parse(&format!("topology {}", path.display()), &text)
    }

    /// Parses and checks TOML text in the topology format.
    pub fn from_toml_str(text: &str) -> Result<Topology, TopologyError> {
        Self::parse("topology", text)
    }

    fn parse(origin: &str, text: &str) -> Result<Topology, TopologyError> {
        let file: TopologyFile =
            toml::from_str(text).map_err(|err| syntax_error(origin, text, &err))?;
        Self::checked(origin, file)
    }

    fn checked(origin: &str, file: TopologyFile) -> Result<Topology, TopologyError> {
        validate::validate(&file).map_err(|invalid| TopologyError::Invalid {
            origin: origin.to_owned(),
            field: invalid.field,
            message: invalid.message,
        })?;
        Ok(Topology { file })
    }

    /// The same topology with a different number of scalable units.
    pub fn with_scalable_units(self, scalable_units: u32) -> Result<Topology, TopologyError> {
        let mut file = self.file;
        file.fleet.scalable_units = scalable_units;
        Self::checked("topology", file)
    }

    /// The file as parsed (after validation).
    pub fn file(&self) -> &TopologyFile {
        &self.file
    }

    pub fn scalable_units(&self) -> u32 {
        self.file.fleet.scalable_units
    }

    pub fn hosts_per_unit(&self) -> u32 {
        self.file.fleet.hosts_per_unit
    }

    /// Every device of the fleet with its ids, addresses and cabling.
    pub fn plan(&self) -> FleetPlan {
        expand::expand(&self.file)
    }

    pub fn hosts(&self) -> Vec<HostDescription> {
        self.plan().hosts
    }

    pub fn dpus(&self) -> Vec<DpuDescription> {
        self.plan().dpus
    }

    pub fn switches(&self) -> Vec<SwitchDescription> {
        self.plan().switches
    }

    /// The topology as TOML (e.g. to save a generated one).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&self.file)
    }
}

/// One line: where the error is (line and enclosing table) and toml's own message.
fn syntax_error(origin: &str, text: &str, err: &toml::de::Error) -> TopologyError {
    let offset = err.span().map_or(0, |span| span.start.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| format!(" (in {header})"))
        .unwrap_or_default();
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    TopologyError::Syntax { origin: origin.to_owned(), line, table, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_agent::GpuHealth;

    fn h100() -> Topology {
        Topology::try_hgx_h100(2).expect("the shipped topology is valid")
    }

    fn broken(from: &str, to: &str) -> String {
        assert!(HGX_H100_TOML.contains(from), "fixture text {from:?} not in file");
        let text = HGX_H100_TOML.replacen(from, to, 1);
        Topology::from_toml_str(&text).expect_err("broken topology must be refused").to_string()
    }

    #[test]
    fn test_shipped_topology_shape() {
        let plan = h100().plan();
        assert_eq!(plan.hosts.len(), 64);
        assert_eq!(plan.dpus.len(), 128);
        assert_eq!(plan.switches.len(), 16);
        assert_eq!(plan.hosts[6].host_id, "su1-h07");
        assert_eq!(plan.hosts[32].host_id, "su2-h01");
        assert_eq!(plan.dpus[13].dpu_id, "su1-h07-dpu1");
        assert_eq!(plan.switches[3].switch_id, "su1-leaf3");
        assert_eq!(plan.switches[8].switch_id, "su2-leaf0");
        let single = Topology::hgx_h100(1).plan();
        assert_eq!((single.hosts.len(), single.switches.len()), (32, 8));
        for units in [1, 7, validate::MAX_SCALABLE_UNITS] {
            assert_eq!(Topology::try_hgx_h100(units).expect("in range").scalable_units(), units);
        }
        assert_eq!(Topology::hgx_h100(0).scalable_units(), 1);
        assert_eq!(Topology::hgx_h100(10_000).scalable_units(), validate::MAX_SCALABLE_UNITS);
        let err = Topology::try_hgx_h100(0).expect_err("zero units").to_string();
        assert!(err.contains("fleet.scalable_units is 0; use 1 to 500"), "{err}");
    }

    #[test]
    fn test_shipped_host_matches_hgx_h100_facts() {
        let host = &h100().plan().hosts[0];
        assert_eq!(host.system_model, "HGX H100 8-GPU");
        assert_eq!(host.numa_nodes.len(), 2);
        let node0 = &host.numa_nodes[0];
        let node1 = &host.numa_nodes[1];
        assert_eq!(node0.cpus.len(), 112);
        assert!(node0.cpus.contains(&0) && node0.cpus.contains(&55));
        assert!(node0.cpus.contains(&112) && node0.cpus.contains(&167));
        assert!(node1.cpus.contains(&56) && node1.cpus.contains(&223));
        assert_eq!(node0.memory_mib, 1024 * 1024);
        assert_eq!(node0.hugepages_1g_total, 960);

        let modules: Vec<u32> = host.gpus.iter().map(|g| g.module_id).collect();
        assert_eq!(modules, [3, 1, 4, 2, 7, 5, 8, 6]);
        for gpu in &host.gpus {
            assert_eq!(gpu.model, "H100-SXM5-80GB");
            assert_eq!(gpu.numa_node, u32::from(gpu.module_id > 4));
            let nic = &host.nics[gpu.index as usize];
            assert_eq!(nic.pcie_switch, gpu.pcie_switch);
            assert_eq!(nic.numa_node, gpu.numa_node);
        }
        let buses: Vec<&str> = host.gpus.iter().map(|g| &g.pci_address[5..7]).collect();
        assert_eq!(buses, ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]);
        for nic in &host.nics {
            assert_eq!(nic.rail, nic.index);
            assert_eq!(nic.leaf_switch_id, format!("su1-leaf{}", nic.index));
            assert_eq!(nic.speed_gbps, 400);
        }
        assert_eq!(host.dpu_ids, ["su1-h01-dpu0", "su1-h01-dpu1"]);

        let table: Vec<(u32, Vec<u32>)> =
            host.partitions.iter().map(|p| (p.id, p.module_ids.clone())).collect();
        let mut expected = vec![
            (0, (1..=8).collect()),
            (1, vec![1, 2, 3, 4]),
            (2, vec![5, 6, 7, 8]),
            (3, vec![1, 3]),
            (4, vec![2, 4]),
            (5, vec![5, 7]),
            (6, vec![6, 8]),
        ];
        expected.extend((1..=8).map(|m| (m + 6, vec![m])));
        assert_eq!(table, expected);
    }

    #[test]
    fn test_switch_cabling_and_addresses() {
        let plan = h100().plan();
        let leaf = &plan.switches[11]; // su2-leaf3
        assert_eq!(leaf.switch_id, "su2-leaf3");
        assert_eq!((leaf.scalable_unit, leaf.rail), (2, 3));
        assert_eq!(leaf.model, "Spectrum-4 SN5600");
        assert_eq!(leaf.ports.len(), 32);
        assert_eq!(leaf.ports[6].peer_host_id, "su2-h07");
        assert_eq!(leaf.ports[6].peer_nic_index, 3);
        let asns: std::collections::BTreeSet<u32> = plan.switches.iter().map(|s| s.asn).collect();
        assert_eq!(asns.len(), 16);
        let vteps: std::collections::BTreeSet<&str> =
            plan.dpus.iter().map(|d| d.vtep_ip.as_str()).collect();
        assert_eq!(vteps.len(), 128);
    }

    #[test]
    fn test_overrides_set_gpu_health() {
        let text = format!(
            "{HGX_H100_TOML}\n[[override]]\nhost = \"su1-h03\"\nfailed_gpu_modules = [5]\n\
             degraded_gpu_modules = [2]\nhealth_message = \"XID 79\"\n"
        );
        let plan = Topology::from_toml_str(&text).expect("valid").plan();
        let host = &plan.hosts[2];
        let health = |m: u32| host.gpus.iter().find(|g| g.module_id == m).map(|g| g.health);
        assert_eq!(health(5), Some(GpuHealth::Failed));
        assert_eq!(health(2), Some(GpuHealth::Degraded));
        assert_eq!(health(1), Some(GpuHealth::Ok));
        assert!(plan.hosts[3].gpus.iter().all(|g| g.health == GpuHealth::Ok));
    }

    #[test]
    fn test_bad_files_name_the_field() {
        let cases = [
            (broken("hosts_per_unit = 32", "hosts_per_unit = 0"), "fleet.hosts_per_unit is 0"),
            (broken("scalable_units = 2", "scalable_units = 0"), "fleet.scalable_units is 0"),
            (broken("cpus = \"0-55,112-167\"", "cpus = \"0-55,112-\""), "host.numa_node[0].cpus"),
            (
                broken("cpus = \"56-111,168-223\"", "cpus = \"50-111\""),
                "contains CPU 50, which node 0 has too",
            ),
            (broken("hugepages_1g = 960", "hugepages_1g = 2000"), "host.numa_node[0].hugepages_1g"),
            (broken("module_id = 1\n", "module_id = 3\n"), "host.gpu[1].module_id"),
            (
                broken(
                    "numa_node = 0\npcie_switch = \"0000:16",
                    "numa_node = 4\npcie_switch = \"0000:16",
                ),
                "host.gpu[0].numa_node 4 names no",
            ),
            (
                broken("pci_address = \"0000:1a:00.0\"", "pci_address = \"0000:18:00.0\""),
                "host.nic[0].pci_address 0000:18:00.0 is already used by host.gpu[0].pci_address",
            ),
            (broken("rail = 1\n", "rail = 0\n"), "host.nic[1].rail"),
            (
                broken("module_ids = [1, 3]", "module_ids = [1, 9]"),
                "host.partition[3].module_ids names module 9",
            ),
            (broken("id = 14\n", "id = 13\n"), "host.partition[14].id"),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(message.starts_with("topology"), "{message}");
            assert!(!message.contains('\n'), "{message:?} is not one line");
        }
    }

    #[test]
    fn test_syntax_errors_give_line_and_table() {
        let message = broken("memory_mib = 1048576", "memory = 1048576");
        let line = HGX_H100_TOML
            .lines()
            .position(|l| l.starts_with("memory_mib = 1048576"))
            .expect("line")
            + 1;
        assert!(message.contains("(in [[host.numa_node]])"), "{message}");
        assert!(message.contains("unknown field `memory`"), "{message}");
        assert!(message.contains(&format!("line {line} ")), "{message}");
        assert!(!message.contains('\n'), "{message:?}");
        let missing = Topology::from_toml_str("[fleet]\nscalable_units = 1\n")
            .expect_err("incomplete")
            .to_string();
        assert!(missing.contains("missing field"), "{missing}");
    }

    #[test]
    fn test_bad_overrides() {
        let with = |entry: &str| {
            Topology::from_toml_str(&format!("{HGX_H100_TOML}\n[[override]]\n{entry}\n"))
                .expect_err("bad override")
                .to_string()
        };
        assert!(with("host = \"su3-h01\"").contains("override[0].host \"su3-h01\" is not a host"));
        assert!(with("host = \"su1-h7\"").contains("override[0].host"));
        assert!(
            with("host = \"su1-h01\"\nfailed_gpu_modules = [9]")
                .contains("failed_gpu_modules names module 9")
        );
        assert!(
            with("host = \"su1-h01\"\nfailed_gpu_modules = [1]\ndegraded_gpu_modules = [1]")
                .contains("also failed")
        );
        assert!(with("host = \"su1-h01\"\nbroken = true").contains("unknown field"));
    }

    #[test]
    fn test_round_trip_and_from_file() {
        let topology = h100();
        let text = topology.to_toml_string().expect("serialises");
        assert_eq!(Topology::from_toml_str(&text).expect("parses"), topology);
        let err = Topology::from_file("/nonexistent/topology.toml").expect_err("missing");
        assert!(
            err.to_string().starts_with("cannot read topology file /nonexistent/topology.toml")
        );
    }
}
