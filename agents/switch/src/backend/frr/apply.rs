//! Running `ip` and `vtysh`: every command bounded by a timeout and killed when it expires,
//! its failure turned into a [`DriverError`] that says whether to retry.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_common::DriverError;
use tokio::process::Command;

/// Runs external commands, each through an optional wrapper (a lab enters the namespaces of
/// its FRR daemons with `nsenter -t PID -m -n`; a switch runs them directly).
#[derive(Clone, Debug)]
pub struct Runner {
    pub wrapper: Vec<String>,
    pub timeout: Duration,
}

impl Runner {
    /// Runs `argv` and returns its standard output. A timeout is `Unavailable` (busy, retry);
    /// a missing program or a non-zero exit is `Internal` with the program's first line of
    /// complaint.
    pub async fn run(&self, argv: &[String]) -> Result<String, DriverError> {
        let full: Vec<&String> = self.wrapper.iter().chain(argv).collect();
        let shown = argv.join(" ");
        let Some((program, args)) = full.split_first() else {
            return Err(DriverError::Internal("an empty command was about to run".into()));
        };
        let mut command = Command::new(program.as_str());
        command
            .args(args.iter().map(|a| a.as_str()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .map_err(|_| {
                DriverError::Unavailable(format!(
                    "`{shown}` did not finish within {:?}; the switch is busy, retry",
                    self.timeout
                ))
            })?
            .map_err(|e| DriverError::Internal(format!("cannot run `{shown}`: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = complaint(&stderr).or_else(|| complaint(&stdout)).unwrap_or("no message");
        Err(DriverError::Internal(format!("`{shown}` failed ({}): {reason}", output.status)))
    }
}

/// The first line of a program's output that explains a failure, skipping vtysh's notice
/// that a pathspace has no `vtysh.conf` (harmless: FRR's integrated config is not used).
fn complaint(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.contains("vtysh.conf"))
}

/// vtysh, talking to the FRR daemons of one pathspace.
#[derive(Clone, Debug)]
pub struct Vtysh {
    pub runner: Runner,
    pub program: PathBuf,
    /// `-N`: the daemons' pathspace (`/var/run/frr/<pathspace>`), if not the default.
    pub pathspace: Option<String>,
}

impl Vtysh {
    fn argv<'a>(&self, commands: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut argv = vec![self.program.display().to_string()];
        if let Some(pathspace) = &self.pathspace {
            argv.extend(["-N".to_string(), pathspace.clone()]);
        }
        for command in commands {
            argv.extend(["-c".to_string(), command.to_string()]);
        }
        argv
    }

    /// Runs one `show` command and returns its text.
    pub async fn show(&self, command: &str) -> Result<String, DriverError> {
        self.runner.run(&self.argv([command])).await.map_err(daemon_down)
    }

    /// Enters configuration mode and runs `lines` in order. vtysh stops at the first line
    /// FRR refuses, so an `Internal` error carries FRR's reason for that line.
    pub async fn configure(&self, lines: &[String]) -> Result<(), DriverError> {
        let commands =
            std::iter::once("configure terminal").chain(lines.iter().map(String::as_str));
        self.runner.run(&self.argv(commands)).await.map_err(daemon_down).map(drop)
    }
}

/// vtysh failing because the daemons do not answer is a retryable `Unavailable`, not FRR
/// refusing the configuration.
fn daemon_down(err: DriverError) -> DriverError {
    match err {
        DriverError::Internal(message)
            if message.contains("failed to connect") || message.contains("is not running") =>
        {
            DriverError::Unavailable(format!("FRR is not answering, retry: {message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(timeout: Duration) -> Runner {
        Runner { wrapper: Vec::new(), timeout }
    }

    #[tokio::test]
    async fn test_failure_carries_the_first_line_of_stderr() {
        let argv =
            ["sh", "-c", "echo 'RTNETLINK answers: File exists' >&2; exit 2"].map(String::from);
        let err = runner(Duration::from_secs(5)).run(&argv).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::Internal(m) if m.ends_with("RTNETLINK answers: File exists")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn test_timeout_is_unavailable() {
        let argv = ["sleep", "5"].map(String::from);
        let err = runner(Duration::from_millis(50)).run(&argv).await.unwrap_err();
        assert!(matches!(err, DriverError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn test_wrapper_comes_first() {
        let wrapped = Runner { wrapper: vec!["echo".into()], timeout: Duration::from_secs(5) };
        let out = wrapped.run(&["ip".into(), "link".into()]).await.unwrap();
        assert_eq!(out, "ip link\n");
    }

    #[tokio::test]
    async fn test_vtysh_enters_configuration_mode_in_its_pathspace() {
        // A vtysh that fails printing its arguments shows exactly what vtysh would get.
        let script = "printf '%s|' \"$@\" >&2; exit 1";
        let vtysh = Vtysh {
            runner: Runner {
                wrapper: vec!["sh".into(), "-c".into(), script.into(), "vtysh".into()],
                timeout: Duration::from_secs(5),
            },
            program: PathBuf::from("/usr/bin/vtysh"),
            pathspace: Some("leaf1".into()),
        };
        let err = vtysh.configure(&["vrf t1".into(), "vni 4001".into()]).await.unwrap_err();
        let expected = "/usr/bin/vtysh|-N|leaf1|-c|configure terminal|-c|vrf t1|-c|vni 4001|";
        assert!(matches!(&err, DriverError::Internal(m) if m.ends_with(expected)), "{err:?}");
    }

    #[test]
    fn test_unreachable_daemons_are_retryable() {
        let err = DriverError::Internal("Exiting: failed to connect to any daemons.".into());
        assert!(matches!(daemon_down(err), DriverError::Unavailable(_)));
        let refused = DriverError::Internal("% Please unconfigure l3vni 4002".into());
        assert!(matches!(daemon_down(refused), DriverError::Internal(_)));
    }
}
