//! The PKI directory: where the CA, the control plane's and every agent's certificate live,
//! and [`PkiDir::ensure`], which creates only what is missing.
//!
//! ```text
//! <dir>/ca.pem  ca.key                      the CA (the key signs; keep it here only)
//! <dir>/control-plane.pem  control-plane.key   the control plane's client certificate
//! <dir>/agents/<kind>/<id>.pem  <id>.key       one server certificate per agent
//! ```
//!
//! Keys are written 0600 and directories 0700; every file is written next to its place and
//! renamed, so a crash never leaves half a key.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::issue::{Authority, CertifiedKey};
use super::{AgentCredentials, ControlPlaneCredentials, TlsError, agent_server_name};

/// One agent by the agents file's kind (`host`, `dpu`, `switch`) and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentName<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

/// What [`PkiDir::ensure`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    /// A new CA was made (so every certificate was issued anew).
    pub ca_created: bool,
    /// Certificates issued now (agents and the control plane).
    pub issued: usize,
    /// Certificates already there and kept.
    pub kept: usize,
}

/// A directory of certificates and keys.
#[derive(Clone, Debug)]
pub struct PkiDir {
    root: PathBuf,
}

impl PkiDir {
    pub fn new(root: impl Into<PathBuf>) -> PkiDir {
        PkiDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CA's certificate, which agents and the control plane trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    fn ca_key_path(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// The certificate and key files of agent `id` of `kind`.
    pub fn agent_paths(&self, name: AgentName<'_>) -> (PathBuf, PathBuf) {
        let dir = self.root.join("agents").join(name.kind);
        (dir.join(format!("{}.pem", name.id)), dir.join(format!("{}.key", name.id)))
    }

    /// The control plane's certificate and key files.
    pub fn control_plane_paths(&self) -> (PathBuf, PathBuf) {
        (self.root.join("control-plane.pem"), self.root.join("control-plane.key"))
    }

    /// Makes sure the CA, the control plane's certificate and one certificate per agent
    /// exist: keeps an existing CA and every existing certificate, and issues only the
    /// missing ones (all of them when the CA is new). With `shared_agent_key`, the agents
    /// issued now share one fresh key (a simulated fleet, to start fast). Every name is
    /// checked before anything is written.
    pub fn ensure(
        &self,
        agents: &[AgentName<'_>],
        shared_agent_key: bool,
    ) -> Result<Ensured, TlsError> {
        for agent in agents {
            agent_server_name(agent.kind, agent.id)?;
        }
        let mut ca = if self.ca_cert_path().exists() { None } else { Some(self.create_ca()?) };
        let ca_created = ca.is_some();
        let mut ensured = Ensured { ca_created, ..Ensured::default() };
        let missing =
            |(cert, key): &(PathBuf, PathBuf)| ca_created || !cert.exists() || !key.exists();

        let control_plane = self.control_plane_paths();
        let issue_control_plane = missing(&control_plane);
        let to_issue: Vec<_> = agents
            .iter()
            .map(|agent| (agent, self.agent_paths(*agent)))
            .filter(|(_, paths)| missing(paths))
            .collect();
        ensured.kept = agents.len() + 1 - to_issue.len() - usize::from(issue_control_plane);
        if !issue_control_plane && to_issue.is_empty() {
            return Ok(ensured);
        }

        let ca = match ca.take() {
            Some(ca) => ca,
            None => self.load_authority()?,
        };
        if issue_control_plane {
            write_pair(&control_plane, &ca.issue_control_plane()?)?;
            ensured.issued += 1;
        }
        let shared_key = if shared_agent_key { Some(Authority::new_key_pem()?) } else { None };
        for (agent, paths) in to_issue {
            let certified = match &shared_key {
                Some(key) => ca.issue_agent_with_key(agent.kind, agent.id, key)?,
                None => ca.issue_agent(agent.kind, agent.id)?,
            };
            create_dir(paths.0.parent().unwrap_or(&self.root))?;
            write_pair(&paths, &certified)?;
            ensured.issued += 1;
        }
        Ok(ensured)
    }

    /// What agent `name` serves with.
    pub fn agent(&self, name: AgentName<'_>) -> Result<AgentCredentials, TlsError> {
        agent_server_name(name.kind, name.id)?;
        Ok(AgentCredentials {
            ca_pem: read(&self.ca_cert_path())?,
            identity: read_pair(&self.agent_paths(name))?,
        })
    }

    /// What the control plane dials agents with.
    pub fn control_plane(&self) -> Result<ControlPlaneCredentials, TlsError> {
        Ok(ControlPlaneCredentials {
            ca_pem: read(&self.ca_cert_path())?,
            identity: read_pair(&self.control_plane_paths())?,
        })
    }

    fn create_ca(&self) -> Result<Authority, TlsError> {
        create_dir(&self.root)?;
        let ca = Authority::generate()?;
        // The key first: a certificate without its key would look like a CA kept offline.
        write_file(&self.ca_key_path(), ca.key_pem().as_bytes(), 0o600)?;
        write_file(&self.ca_cert_path(), ca.cert_pem().as_bytes(), 0o644)?;
        Ok(ca)
    }

    fn load_authority(&self) -> Result<Authority, TlsError> {
        let (cert_path, key_path) = (self.ca_cert_path(), self.ca_key_path());
        if !key_path.exists() {
            return Err(TlsError::CaKeyMissing(key_path));
        }
        Authority::from_pem(&read(&cert_path)?, &read(&key_path)?, &cert_path, &key_path)
    }
}

pub(crate) fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn read_pair((cert, key): &(PathBuf, PathBuf)) -> Result<CertifiedKey, TlsError> {
    Ok(CertifiedKey { cert_pem: read(cert)?, key_pem: read(key)? })
}

fn write_pair((cert, key): &(PathBuf, PathBuf), pair: &CertifiedKey) -> Result<(), TlsError> {
    write_file(key, pair.key_pem.as_bytes(), 0o600)?;
    write_file(cert, pair.cert_pem.as_bytes(), 0o644)
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| TlsError::Write {
        action: "create the directory",
        path: dir.to_owned(),
        source,
    })
}

/// Writes `contents` to a temporary file created with `mode`, then renames it over `path`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let failed = |source| TlsError::Write { action: "write", path: path.to_owned(), source };
    // A leftover temporary file keeps its old mode when reopened: start afresh.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temporary).map_err(failed)?;
    file.write_all(contents).map_err(failed)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agent-common-pki-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const A: AgentName<'static> = AgentName { kind: "host", id: "su1-h01" };
    const B: AgentName<'static> = AgentName { kind: "dpu", id: "su1-h01-dpu0" };

    #[test]
    fn ensure_is_idempotent_keeps_the_ca_and_adds_only_missing_agents() {
        let pki = PkiDir::new(temp_dir("ensure"));
        let first = pki.ensure(&[A], false).unwrap();
        assert_eq!(first, Ensured { ca_created: true, issued: 2, kept: 0 });
        let ca = read(&pki.ca_cert_path()).unwrap();
        let a_cert = read(&pki.agent_paths(A).0).unwrap();

        let again = pki.ensure(&[A], false).unwrap();
        assert_eq!(again, Ensured { ca_created: false, issued: 0, kept: 2 });
        let more = pki.ensure(&[A, B], false).unwrap();
        assert_eq!(more, Ensured { ca_created: false, issued: 1, kept: 2 });

        assert_eq!(read(&pki.ca_cert_path()).unwrap(), ca, "the CA is kept");
        assert_eq!(read(&pki.agent_paths(A).0).unwrap(), a_cert, "existing certificates are kept");
        assert_eq!(pki.agent(B).unwrap().ca_pem, ca, "new certificates come from the same CA");
        pki.control_plane().unwrap();

        // A missing key is issued anew; the CA still stays.
        std::fs::remove_file(pki.agent_paths(A).1).unwrap();
        assert_eq!(pki.ensure(&[A, B], true).unwrap().issued, 1);
        assert_eq!(read(&pki.ca_cert_path()).unwrap(), ca);
        let _ = std::fs::remove_dir_all(pki.root());
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private_and_directories_closed() {
        use std::os::unix::fs::PermissionsExt;
        let pki = PkiDir::new(temp_dir("modes"));
        pki.ensure(&[A], false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pki.ca_key_path()), 0o600);
        assert_eq!(mode(&pki.control_plane_paths().1), 0o600);
        assert_eq!(mode(&pki.agent_paths(A).1), 0o600);
        assert_eq!(mode(pki.root()), 0o700);
        assert_eq!(mode(pki.agent_paths(A).0.parent().unwrap()), 0o700);
        let _ = std::fs::remove_dir_all(pki.root());
    }

    #[test]
    fn bad_names_write_nothing_and_a_missing_ca_key_is_one_sentence() {
        let pki = PkiDir::new(temp_dir("refuse"));
        let err = pki.ensure(&[A, AgentName { kind: "host", id: "Bad_Id" }], false).unwrap_err();
        assert!(err.to_string().contains("\"Bad_Id\" cannot name a certificate"), "{err}");
        assert!(!pki.root().exists(), "nothing written");

        pki.ensure(&[A], false).unwrap();
        std::fs::remove_file(pki.ca_key_path()).unwrap();
        assert_eq!(pki.ensure(&[A], false).unwrap().issued, 0, "nothing to issue: no key needed");
        let err = pki.ensure(&[A, B], false).unwrap_err();
        assert!(err.to_string().starts_with("the CA key"), "{err}");
        let _ = std::fs::remove_dir_all(pki.root());
    }

    #[test]
    fn a_ca_key_from_another_ca_is_refused() {
        let pki = PkiDir::new(temp_dir("mismatch"));
        pki.ensure(&[A], false).unwrap();
        let other = Authority::generate().unwrap();
        write_file(&pki.ca_key_path(), other.key_pem().as_bytes(), 0o600).unwrap();
        let err = pki.ensure(&[A, B], false).unwrap_err();
        assert!(matches!(err, TlsError::CaMismatch { .. }), "{err}");
        let _ = std::fs::remove_dir_all(pki.root());
    }
}
