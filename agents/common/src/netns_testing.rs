//! For tests with real packets: network namespaces the test makes (`<prefix><pid>-<n><label>`)
//! and removes on drop, even when an assertion fails. No traffic leaves them, and the host's
//! own namespace is never touched.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this machine can run such tests (root, and each of `tools` answering `-V`);
/// prints why not.
pub fn runnable(tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: tests with network namespaces need root");
        return false;
    }
    for tool in tools {
        let found = Command::new(tool).arg("-V").output().is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: `{tool}` is not installed");
            return false;
        }
    }
    true
}

/// A network namespace of this test process, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up. `prefix` says which test made it.
    pub fn new(prefix: &str, label: &str) -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{n}{label}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ARGS`, which must succeed; returns its output.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Whether `ip -n <ns> link show DEVICE` finds it.
    pub fn has_device(&self, device: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", device])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn nft_ruleset(&self) -> String {
        run("ip", &["netns", "exec", &self.name, "nft", "list", "ruleset"])
    }

    /// Runs `work` on a thread inside this namespace (sockets made there stay in it).
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).expect("open netns");
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                    work()
                })
                .join()
                .expect("netns thread")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs a program that must succeed; returns its output.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect("run");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
