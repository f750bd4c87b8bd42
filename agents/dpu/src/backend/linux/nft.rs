//! Running `nft` in the DPU's network namespace (`ip netns exec NAME nft`, or plain `nft`
//! without one): a script goes in on stdin as one `nft -f -` transaction.
//!
//! Text rather than the JSON of the `nftables` crate: the rulesets use verdict maps keyed by
//! concatenations and `typeof` maps, which read as one line of nft syntax each, while
//! `nft -f` gives the same all-or-nothing transaction as `nft -j -f`.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use agent_common::DriverError;

#[derive(Clone, Debug)]
pub struct Nft {
    netns: Option<String>,
}

impl Nft {
    pub fn new(netns: Option<String>) -> Self {
        Nft { netns }
    }

    /// Applies `script` atomically. Errors: `Internal` with nft's message (a ruleset the
    /// kernel refused, or nft missing).
    pub async fn apply(&self, script: &str) -> Result<(), DriverError> {
        self.run(&["-f", "-"], script).await.map(drop)
    }

    /// The whole ruleset of the namespace as nft JSON.
    pub async fn list_json(&self) -> Result<String, DriverError> {
        self.run(&["-j", "list", "ruleset"], "").await
    }

    async fn run(&self, args: &[&str], stdin: &str) -> Result<String, DriverError> {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "nft"]);
                command
            }
            None => Command::new("nft"),
        };
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.kill_on_drop(true).spawn().map_err(|err| {
            DriverError::Internal(format!("cannot run nft: {err}; install nftables (and iproute2)"))
        })?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).await.map_err(|err| {
                DriverError::Internal(format!("cannot write the ruleset to nft: {err}"))
            })?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|err| DriverError::Internal(format!("cannot wait for nft: {err}")))?;
        if !output.status.success() {
            return Err(DriverError::Internal(format!(
                "nft refused the security-group ruleset ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
