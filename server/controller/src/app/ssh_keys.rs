//! Users' SSH public keys, to be put into the VMs they launch. A key is decoded with
//! RustCrypto's `ssh-key` and kept as one normalised OpenSSH line with its SHA-256
//! fingerprint; ed25519, ECDSA on the NIST curves and RSA of 2048 bits or more are accepted.
//! The pasted text is never logged or echoed: refusals and audit entries name at most the
//! key's name and fingerprint.

use portal_types::Error;
use portal_types::ids::SshKeyUuid;
use portal_types::params::{MAX_SSH_KEYS, SshKeyCreate, not_a_public_key};
use portal_types::views::SshKeyView;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::ssh_key::NewSshKey;

/// OpenSSH's own minimum since 8.8 is 1024; 2048 is today's floor for RSA.
const MIN_RSA_BITS: usize = 2048;

/// A public key that passed every check.
#[derive(Debug)]
struct Parsed {
    algorithm: String,
    fingerprint: String,
    line: String,
    comment: String,
}

/// Decodes one OpenSSH public key line ([`SshKeyCreate::validate`] has run).
fn parse(text: &str) -> Result<Parsed, Error> {
    let key = PublicKey::from_openssh(text.trim()).map_err(|_| not_a_public_key())?;
    match key.key_data() {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => {}
        KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map_or(0, |n| {
                n.first().map_or(0, |top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
            });
            if bits < MIN_RSA_BITS {
                return Err(Error::invalid(format!(
                    "That RSA key has {bits} bits, fewer than the {MIN_RSA_BITS} needed; make \
                     an ed25519 key with ssh-keygen -t ed25519 and paste ~/.ssh/id_ed25519.pub."
                )));
            }
        }
        _ => return Err(not_a_public_key()),
    }
    let line = key.to_openssh().map_err(|_| not_a_public_key())?;
    Ok(Parsed {
        algorithm: key.algorithm().as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: key.comment().to_owned(),
        line,
    })
}

/// A key's name for the audit log of a refused add: never more than a valid name could be,
/// never anything that looks like key material.
fn audit_name(name: &str) -> &str {
    let name = name.trim();
    let plain = name.chars().count() <= 64
        && !name.chars().any(char::is_control)
        && !name.contains("PRIVATE KEY");
    if plain { name } else { "(not a valid name)" }
}

impl Controller {
    /// Adds an SSH public key of the actor in their current tenant.
    pub async fn ssh_key_create(
        &self,
        opctx: &OpContext,
        create: &SshKeyCreate,
    ) -> Result<SshKeyView, Error> {
        let result = async {
            opctx.authorize(Action::SshKeyWrite)?;
            create.validate()?;
            let parsed = parse(&create.public_key)?;
            let new = NewSshKey {
                name: create.name.trim(),
                algorithm: &parsed.algorithm,
                fingerprint: &parsed.fingerprint,
                public_key: &parsed.line,
                comment: &parsed.comment,
            };
            Ok(self.datastore.ssh_key_create(opctx, new).await?)
        }
        .await;
        let object = match &result {
            Ok(key) => format!("{} ({})", key.name, key.fingerprint),
            Err(_) => audit_name(&create.name).to_owned(),
        };
        self.audited(opctx, "ssh_key.create", "ssh_key", &object, result).await
    }

    /// The actor's SSH public keys in their current tenant, oldest first.
    pub async fn ssh_key_list(&self, opctx: &OpContext) -> Result<Vec<SshKeyView>, Error> {
        opctx.authorize(Action::SshKeyRead)?;
        Ok(self.datastore.ssh_key_list(opctx).await?)
    }

    /// Deletes one of the actor's keys; anyone else's key is not found.
    pub async fn ssh_key_delete(&self, opctx: &OpContext, id: SshKeyUuid) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::SshKeyWrite)?;
            Ok(self.datastore.ssh_key_delete(opctx, id).await?)
        }
        .await;
        let object = match &result {
            Ok(key) => format!("{} ({})", key.name, key.fingerprint),
            Err(_) => id.to_string(),
        };
        self.audited(opctx, "ssh_key.delete", "ssh_key", &object, result.map(|_| ())).await
    }

    /// The caller's keys `ids`, in that order, as (name, OpenSSH public key line) for a
    /// launch to put into its VMs. An id that is not one of the caller's keys in this
    /// tenant (unknown, deleted, another user's) refuses the whole list.
    pub(crate) async fn ssh_keys_for_launch(
        &self,
        opctx: &OpContext,
        ids: &[SshKeyUuid],
    ) -> Result<Vec<(String, String)>, Error> {
        let actor = opctx.authorize(Action::SshKeyRead)?;
        if ids.len() > MAX_SSH_KEYS {
            return Err(Error::invalid(format!(
                "Pick at most {MAX_SSH_KEYS} SSH keys for one launch."
            )));
        }
        let mut wanted = ids.to_vec();
        wanted.sort();
        wanted.dedup();
        let found = self.datastore.ssh_key_lines(opctx, &wanted).await?;
        let mut out = Vec::with_capacity(wanted.len());
        let mut seen = Vec::with_capacity(wanted.len());
        for id in ids {
            if seen.contains(id) {
                continue;
            }
            seen.push(*id);
            let Some((_, name, line)) = found.iter().find(|(k, _, _)| k == id) else {
                return Err(Error::invalid(format!(
                    "The SSH key {id} is not one of your keys in {}; pick keys listed on the SSH \
                     keys page.",
                    actor.tenant_name
                )));
            };
            out.push((name.clone(), line.clone()));
        }
        Ok(out)
    }

    /// [`ssh_keys_for_launch`](Self::ssh_keys_for_launch) for the integration tests, until
    /// the launch path calls it.
    #[doc(hidden)]
    pub async fn testing_ssh_keys_for_launch(
        &self,
        opctx: &OpContext,
        ids: &[SshKeyUuid],
    ) -> Result<Vec<(String, String)>, Error> {
        self.ssh_keys_for_launch(opctx, ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

    #[test]
    fn an_ed25519_key_gets_its_openssh_fingerprint() {
        let parsed = parse(ED25519).unwrap();
        assert_eq!(parsed.algorithm, "ssh-ed25519");
        assert!(parsed.fingerprint.starts_with("SHA256:") && parsed.fingerprint.len() == 50);
        assert_eq!(parsed.comment, "foo@bar.com");
        assert_eq!(parsed.line, ED25519);
    }

    #[test]
    fn corrupt_keys_are_not_public_keys() {
        let corrupt = ED25519.replace("XFSqti", "XF");
        for bad in ["ssh-ed25519 AAAA", "ssh-ed25519 !!!", &corrupt, "ssh-rsa AAAAC3NzaC1lZDI1NTE5"]
        {
            assert_eq!(parse(bad).unwrap_err(), not_a_public_key(), "{bad}");
        }
    }

    #[test]
    fn audit_names_never_carry_key_material() {
        assert_eq!(audit_name(" laptop "), "laptop");
        assert_eq!(audit_name("-----BEGIN OPENSSH PRIVATE KEY-----"), "(not a valid name)");
        assert_eq!(audit_name(&"x".repeat(65)), "(not a valid name)");
    }
}
