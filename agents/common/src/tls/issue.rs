//! Making the CA, the agents' server certificates and the control plane's client certificate
//! with rcgen (ring backend). Every key is ECDSA P-256.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::{CONTROL_PLANE_NAME, TlsError, agent_server_name};

/// How long the CA and every certificate it issues are valid. Rotation is by hand: remove the
/// files and create them again.
const VALIDITY: Duration = Duration::days(10 * 365);

/// Tolerated clock skew between the machine that issues and the machines that verify.
const BACKDATE: Duration = Duration::hours(1);

/// A certificate and its private key, both PEM. `Debug` never shows the key.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The CA that signs every agent's and the control plane's certificate.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Authority, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = ca_params().self_signed(&key).map_err(generate_error)?;
        Ok(Authority { cert_pem: cert.pem(), issuer: Issuer::new(ca_params(), key) })
    }

    /// A CA this module made earlier, from its certificate and key (read from the two paths,
    /// which name them in errors). The issuer's name is rebuilt from [`ca_params`] (no
    /// certificate parser needed); the key must be the one in the certificate, or new
    /// certificates would not chain to it.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Authority, TlsError> {
        let invalid = |path: &Path, what| TlsError::Invalid { path: path.to_owned(), what };
        let key = KeyPair::from_pem(key_pem).map_err(|_| invalid(key_path, "private key"))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| invalid(cert_path, "certificate"))?;
        let spki = key.subject_public_key_info();
        if !der.windows(spki.len()).any(|window| window == spki.as_slice()) {
            return Err(TlsError::CaMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            });
        }
        Ok(Authority { cert_pem: cert_pem.to_owned(), issuer: Issuer::new(ca_params(), key) })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM: only for writing it to a file nobody else may read.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A fresh key pair, PEM (for [`issue_agent_with_key`](Self::issue_agent_with_key)).
    pub fn new_key_pem() -> Result<String, TlsError> {
        Ok(KeyPair::generate().map_err(generate_error)?.serialize_pem())
    }

    /// A server certificate for agent `id` of `kind`, with a fresh key.
    pub fn issue_agent(&self, kind: &str, id: &str) -> Result<CertifiedKey, TlsError> {
        self.issue_agent_with_key(kind, id, &Self::new_key_pem()?)
    }

    /// A server certificate for agent `id` of `kind` for an existing key (PEM). A simulated
    /// fleet shares one key among its agents to start fast; each certificate still names
    /// only its own agent.
    pub fn issue_agent_with_key(
        &self,
        kind: &str,
        id: &str,
        key_pem: &str,
    ) -> Result<CertifiedKey, TlsError> {
        let name = agent_server_name(kind, id)?;
        let mut params = leaf_params(&name, id)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, key_pem)
    }

    /// The control plane's client certificate, with a fresh key.
    pub fn issue_control_plane(&self) -> Result<CertifiedKey, TlsError> {
        let mut params = leaf_params(CONTROL_PLANE_NAME, "gpucloud control plane")?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, &Self::new_key_pem()?)
    }

    fn sign(&self, mut params: CertificateParams, key_pem: &str) -> Result<CertifiedKey, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(generate_error)?;
        // Unique per certificate even when agents share a key (rcgen's default derives the
        // serial from the public key).
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer).map_err(generate_error)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key_pem.to_owned() })
    }
}

/// The CA's fixed name and usages; [`Authority::from_pem`] relies on them being constant.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("gpucloud agents CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
    params
}

fn leaf_params(dns_name: &str, common_name: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    let san = dns_name.try_into().map_err(|e| TlsError::Generate(format!("{e}")))?;
    params.subject_alt_names = vec![SanType::DnsName(san)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
    Ok(params)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "gpucloud");
    name.push(DnType::CommonName, common_name);
    name
}

/// 128 random bits, positive and without a leading zero byte as DER requires.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}
