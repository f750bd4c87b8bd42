//! Fabric Manager shared-NVSwitch partitions behind [`FabricManager`]: [`SimFabricManager`]
//! (in memory, for hosts without NVSwitch) and [`FmpmFabricManager`], which runs NVIDIA's
//! partition tool `fmpm` (github.com/NVIDIA/Fabric-Manager-Client):
//! `fmpm -a <id>` activates, `fmpm -d <id>` deactivates, `fmpm -l` prints the partition list
//! as JSON (`{"partitionInfo": [{"partitionId": 3, "isActive": 1, ...}], ...}`, jsoncpp's
//! styled writer; `isActive` is a number there, a bool is accepted too). On failure it prints
//! "Failed to activate partition. fmReturn: N" and exits non-zero. Calls block: run them in
//! `spawn_blocking`.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;

use agent_common::{DriverError, lock};
use serde::Deserialize;

pub trait FabricManager: Send + Sync + 'static {
    /// Activates partition `id`; activating an active one succeeds.
    fn activate(&self, id: u32) -> Result<(), DriverError>;
    /// Deactivates partition `id`; deactivating an inactive one succeeds.
    fn deactivate(&self, id: u32) -> Result<(), DriverError>;
    /// The ids of the active partitions.
    fn active_partitions(&self) -> Result<BTreeSet<u32>, DriverError>;
}

/// Partitions in memory; knows no table (the backend checks ids against its own).
#[derive(Default)]
pub struct SimFabricManager {
    active: Mutex<BTreeSet<u32>>,
}

impl FabricManager for SimFabricManager {
    fn activate(&self, id: u32) -> Result<(), DriverError> {
        lock(&self.active).insert(id);
        Ok(())
    }

    fn deactivate(&self, id: u32) -> Result<(), DriverError> {
        lock(&self.active).remove(&id);
        Ok(())
    }

    fn active_partitions(&self) -> Result<BTreeSet<u32>, DriverError> {
        Ok(lock(&self.active).clone())
    }
}

/// Runs `command[0] command[1..] -a|-d|-l ...`; `command` is e.g. `["fmpm"]` or
/// `["/usr/bin/fmpm", "--unix-domain-socket", "/run/nvidia-fabricmanager/fm.sock"]`.
pub struct FmpmFabricManager {
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionList {
    #[serde(default)]
    partition_info: Vec<PartitionInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionInfo {
    partition_id: u32,
    is_active: serde_json::Value,
}

impl FmpmFabricManager {
    /// `command` must name the program; refused (`InvalidArgument`) if empty.
    pub fn new(command: Vec<String>) -> Result<Self, DriverError> {
        if command.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(DriverError::InvalidArgument(
                "fm_tool is empty; name the Fabric Manager partition tool, e.g. [\"fmpm\"]".into(),
            ));
        }
        Ok(FmpmFabricManager { command })
    }

    /// Runs the tool with `args` and returns its stdout; a refusal by Fabric Manager is
    /// `FailedPrecondition`, a tool that cannot run or reach Fabric Manager `Unavailable`.
    fn run(&self, args: &[String]) -> Result<String, DriverError> {
        let mut command = Command::new(&self.command[0]);
        command.args(&self.command[1..]).args(args);
        let what = format!("{} {}", self.command.join(" "), args.join(" "));
        let output = command.output().map_err(|e| {
            DriverError::Unavailable(format!(
                "could not run the Fabric Manager tool ({what}): {e}; is it installed?"
            ))
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let said = format!("{} {}", stdout.trim(), String::from_utf8_lossy(&output.stderr).trim());
        let message = format!("{what} failed ({}): {}", output.status, said.trim());
        // fmpm prints "Failed to <op> partition" when Fabric Manager answered and refused;
        // anything else (cannot connect, FM not running) is worth a retry.
        if said.contains("Failed to activate") || said.contains("Failed to deactivate") {
            Err(DriverError::FailedPrecondition(message))
        } else {
            Err(DriverError::Unavailable(message))
        }
    }

    /// Parses `fmpm -l` output.
    pub fn parse_list(stdout: &str) -> Result<BTreeSet<u32>, DriverError> {
        let list: PartitionList = serde_json::from_str(stdout).map_err(|e| {
            DriverError::Internal(format!(
                "the Fabric Manager tool's partition list is not the JSON fmpm prints: {e}"
            ))
        })?;
        Ok(list
            .partition_info
            .into_iter()
            .filter(|p| {
                p.is_active.as_bool().unwrap_or(false) || p.is_active.as_u64().unwrap_or(0) != 0
            })
            .map(|p| p.partition_id)
            .collect())
    }
}

impl FabricManager for FmpmFabricManager {
    fn activate(&self, id: u32) -> Result<(), DriverError> {
        // Fabric Manager refuses to activate an active partition: check first.
        if self.active_partitions()?.contains(&id) {
            return Ok(());
        }
        self.run(&["-a".into(), id.to_string()]).map(drop)
    }

    fn deactivate(&self, id: u32) -> Result<(), DriverError> {
        if !self.active_partitions()?.contains(&id) {
            return Ok(());
        }
        self.run(&["-d".into(), id.to_string()]).map(drop)
    }

    fn active_partitions(&self) -> Result<BTreeSet<u32>, DriverError> {
        Self::parse_list(&self.run(&["-l".into()])?)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// A stand-in `fmpm`: records each call's arguments in `calls`, keeps the active set in
    /// `active` (one id a line), prints the list like fmpm does, refuses partition 13.
    fn stand_in(dir: &Path) -> String {
        let script = dir.join("fmpm");
        let body = r#"#!/bin/sh
dir="$(dirname "$0")"
echo "$*" >> "$dir/calls"
touch "$dir/active"
case "$1" in
  -l)
    printf '{\n   "maxNumPartitions" : 31,\n   "numPartitions" : 15,\n   "partitionInfo" : [\n'
    first=1
    for id in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do
      if grep -qx "$id" "$dir/active"; then a=1; else a=0; fi
      [ $first -eq 1 ] || printf ',\n'
      first=0
      printf '      { "gpuInfo" : [], "isActive" : %s, "numGpus" : 1, "partitionId" : %s }' "$a" "$id"
    done
    printf '\n   ],\n   "version" : 16777240\n}\n'
    ;;
  -a)
    if [ "$2" = 13 ]; then echo "Failed to activate partition. fmReturn: -4"; exit 252; fi
    if grep -qx "$2" "$dir/active"; then echo "Failed to activate partition. fmReturn: -14"; exit 242; fi
    echo "$2" >> "$dir/active" ;;
  -d)
    grep -vx "$2" "$dir/active" > "$dir/active.new"; mv "$dir/active.new" "$dir/active" ;;
  *) exit 1 ;;
esac
"#;
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.to_string_lossy().into_owned()
    }

    #[test]
    fn test_fmpm_activate_deactivate_list() {
        let dir = tempfile::tempdir().unwrap();
        let fm = FmpmFabricManager::new(vec![stand_in(dir.path())]).unwrap();
        assert_eq!(fm.active_partitions().unwrap(), BTreeSet::new());
        fm.activate(3).unwrap();
        fm.activate(3).unwrap(); // idempotent: the tool is not asked twice
        fm.activate(6).unwrap();
        assert_eq!(fm.active_partitions().unwrap(), BTreeSet::from([3, 6]));
        fm.deactivate(3).unwrap();
        fm.deactivate(3).unwrap();
        assert_eq!(fm.active_partitions().unwrap(), BTreeSet::from([6]));
        let err = fm.activate(13).unwrap_err();
        assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");
        assert!(err.to_string().contains("fmReturn: -4"), "{err}");
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(
            calls,
            ["-l", "-l", "-a 3", "-l", "-l", "-a 6", "-l", "-l", "-d 3", "-l", "-l", "-l", "-a 13"]
        );
    }

    #[test]
    fn test_fmpm_missing_tool_is_unavailable() {
        let fm = FmpmFabricManager::new(vec!["/nonexistent/fmpm".into()]).unwrap();
        assert!(matches!(fm.active_partitions(), Err(DriverError::Unavailable(_))));
        assert!(FmpmFabricManager::new(vec![]).is_err());
    }

    #[test]
    fn test_parse_list_accepts_bool_and_number() {
        let text = r#"{"partitionInfo":[{"partitionId":1,"isActive":true},
            {"partitionId":2,"isActive":0},{"partitionId":7,"isActive":1}]}"#;
        assert_eq!(FmpmFabricManager::parse_list(text).unwrap(), BTreeSet::from([1, 7]));
        assert!(FmpmFabricManager::parse_list("Failed to connect").is_err());
    }

    #[test]
    fn test_sim_is_idempotent() {
        let fm = SimFabricManager::default();
        fm.activate(1).unwrap();
        fm.activate(1).unwrap();
        fm.deactivate(2).unwrap();
        assert_eq!(fm.active_partitions().unwrap(), BTreeSet::from([1]));
    }
}
