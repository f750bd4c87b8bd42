//! Mutual TLS between the control plane and its agents.
//!
//! One private CA (ECDSA P-256) signs two kinds of certificate:
//! - one **server** certificate per agent, naming it by a DNS name derived from its kind and
//!   id ([`agent_server_name`]: `su1-h07.host.agents.gpucloud`), with the serverAuth usage
//!   only;
//! - the **control plane's client** certificate, with the clientAuth usage only.
//!
//! Agents accept only callers with a clientAuth certificate from the CA ([`AgentCredentials`]),
//! so an agent's own certificate can never call another agent; the control plane accepts an
//! agent only when its certificate names exactly the id the agents file gives
//! ([`ControlPlaneCredentials::client_config`]).
//!
//! Modules: [`issue`] makes keys and certificates (rcgen, ring backend); [`store`] keeps them
//! in a directory and creates what is missing.

pub mod issue;
pub mod store;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

pub use issue::{Authority, CertifiedKey};
pub use store::{AgentName, Ensured, PkiDir};

/// The DNS suffix of every agent's certificate name.
pub const AGENTS_DOMAIN: &str = "agents.gpucloud";

/// The DNS name in the control plane's client certificate.
pub const CONTROL_PLANE_NAME: &str = "control-plane.gpucloud";

/// Why certificates could not be made, stored or loaded; each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{what} {value:?} cannot name a certificate; use 1 to 63 lowercase letters, digits and \
         hyphens, not starting or ending with a hyphen"
    )]
    BadName { what: &'static str, value: String },
    #[error("cannot make a key or certificate: {0}")]
    Generate(String),
    #[error(
        "cannot {action} {path}: {source}; check that the directory exists and is writable by this user"
    )]
    Write {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read {path}: {source}; create the certificates with `portal-server pki \
         --agents-file FILE --pki-dir DIR` (or sim-fleet --pki-dir DIR) and pass that directory \
         as --pki-dir"
    )]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}; remove it and create the certificates again")]
    Invalid { path: std::path::PathBuf, what: &'static str },
    #[error(
        "the CA key {key} does not belong to the CA certificate {cert}; restore the pair, or \
         remove both to start a new CA (and reissue every certificate)"
    )]
    CaMismatch { cert: std::path::PathBuf, key: std::path::PathBuf },
    #[error(
        "the CA key {0} is missing, so no new certificate can be issued; restore it, or create \
         the missing certificates where the CA key is kept"
    )]
    CaKeyMissing(std::path::PathBuf),
}

/// The DNS name an agent's certificate carries and the control plane expects:
/// `<id>.<kind>.agents.gpucloud`, e.g. `su1-h07.host.agents.gpucloud`. `kind` is the agents
/// file's kind (`host`, `dpu`, `switch`). Refuses ids that are not one DNS label, so one id
/// can never produce the name of another.
pub fn agent_server_name(kind: &str, id: &str) -> Result<String, TlsError> {
    dns_label("the agent kind", kind)?;
    dns_label("the agent id", id)?;
    Ok(format!("{id}.{kind}.{AGENTS_DOMAIN}"))
}

fn dns_label(what: &'static str, value: &str) -> Result<(), TlsError> {
    let bytes = value.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-');
    if ok { Ok(()) } else { Err(TlsError::BadName { what, value: value.to_owned() }) }
}

/// What an agent serves with: its certificate and key, and the CA that signs its callers.
#[derive(Clone)]
pub struct AgentCredentials {
    pub ca_pem: String,
    pub identity: CertifiedKey,
}

impl AgentCredentials {
    /// Mutual TLS: the agent's identity, and a client certificate from the CA required at the
    /// handshake. rustls checks the client certificate's extended key usage, so only the
    /// control plane's clientAuth certificate passes, never another agent's (serverAuth).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.to_identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(std::time::Duration::from_secs(10))
    }

    /// A tonic server that serves only this mutual TLS.
    pub fn server(&self) -> Result<tonic::transport::Server, tonic::transport::Error> {
        tonic::transport::Server::builder().tls_config(self.server_config())
    }
}

impl std::fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCredentials").finish_non_exhaustive()
    }
}

/// What the control plane dials agents with: its client certificate and key, and the CA its
/// agents' certificates must chain to.
#[derive(Clone)]
pub struct ControlPlaneCredentials {
    pub ca_pem: String,
    pub identity: CertifiedKey,
}

impl ControlPlaneCredentials {
    /// The client side for one agent: trusts only the CA, presents the control plane's
    /// certificate, and accepts only a server certificate naming this kind and id.
    pub fn client_config(&self, kind: &str, id: &str) -> Result<ClientTlsConfig, TlsError> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity.to_identity())
            .domain_name(agent_server_name(kind, id)?)
            .timeout(std::time::Duration::from_secs(10)))
    }
}

impl std::fmt::Debug for ControlPlaneCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneCredentials").finish_non_exhaustive()
    }
}

impl CertifiedKey {
    fn to_identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_one_label_per_part() {
        assert_eq!(agent_server_name("host", "su1-h07").unwrap(), "su1-h07.host.agents.gpucloud");
        assert_eq!(
            agent_server_name("dpu", "su1-h07-dpu0").unwrap(),
            "su1-h07-dpu0.dpu.agents.gpucloud"
        );
        for bad in ["", "a.b", "Su1", "-a", "a-", "a_b", "é", &"a".repeat(64)] {
            let err = agent_server_name("host", bad).unwrap_err();
            assert!(err.to_string().contains("cannot name a certificate"), "{bad}: {err}");
        }
        assert!(agent_server_name("host.x", "a").is_err());
    }
}
