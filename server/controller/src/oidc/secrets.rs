//! Identity providers' client secrets, encrypted at rest with a key kept outside the
//! database, so a copy of the database (a backup, a replica, a dump attached to a ticket)
//! does not hand out the clients' credentials.
//!
//! The key: `PORTAL_SECRET_KEY` (base64 of 32 bytes) when set, else `secret.key` in the data
//! directory (32 random bytes, created with mode 0600 on the first start). During a rotation
//! the previous key (`PORTAL_SECRET_KEY_PREVIOUS`, else `secret.key.previous`) still
//! decrypts, and every start re-encrypts what it could only read with it. A secret is
//! XChaCha20-Poly1305 under a random 192-bit nonce (random nonces never repeat at that size),
//! with the provider's id as associated data: a sealed secret copied onto another provider's
//! row does not decrypt.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use openidconnect::ClientSecret;
use portal_types::Error;
use uuid::Uuid;

use super::refuse;
use crate::Controller;
use crate::datastore::entity::identity_provider;
use crate::datastore::{DataStore, StoreError};

pub const KEY_ENV: &str = "PORTAL_SECRET_KEY";
pub const PREVIOUS_KEY_ENV: &str = "PORTAL_SECRET_KEY_PREVIOUS";
pub const KEY_FILE: &str = "secret.key";
pub const PREVIOUS_KEY_FILE: &str = "secret.key.previous";
/// Marks the format of a sealed secret: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Why the secret key could not be read; one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretKeyError(String);

/// The current secret key and, during a rotation, the previous one.
#[derive(Clone)]
pub struct SecretKeys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for SecretKeys {
    // Never the key bytes, not even in a debug print of the configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys").field("previous", &self.previous.is_some()).finish()
    }
}

impl SecretKeys {
    pub fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Self {
        SecretKeys { current, previous }
    }

    /// A random key that lives as long as the process: for tests, and the default of
    /// `ControllerConfig`. A portal that keeps its database must [`SecretKeys::load`] instead,
    /// or its next start cannot decrypt the secrets (and says so).
    pub fn ephemeral() -> Self {
        SecretKeys { current: rand::random(), previous: None }
    }

    /// The keys from the environment or from `data_dir`, creating `secret.key` there on the
    /// first start.
    pub fn load(data_dir: &Path) -> Result<Self, SecretKeyError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        Self::load_from(data_dir, var(KEY_ENV), var(PREVIOUS_KEY_ENV))
    }

    /// [`SecretKeys::load`] with the environment passed in.
    pub fn load_from(
        data_dir: &Path,
        env_key: Option<String>,
        env_previous: Option<String>,
    ) -> Result<Self, SecretKeyError> {
        let current = match env_key {
            Some(b64) => decode_env_key(KEY_ENV, &b64)?,
            None => read_or_create_key_file(&data_dir.join(KEY_FILE))?,
        };
        let previous = match env_previous {
            Some(b64) => Some(decode_env_key(PREVIOUS_KEY_ENV, &b64)?),
            None => read_key_file(&data_dir.join(PREVIOUS_KEY_FILE))?,
        };
        Ok(SecretKeys { current, previous })
    }

    /// Encrypts the client secret of the provider `id` with the current key.
    pub(crate) fn seal(&self, id: Uuid, secret: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload { msg: secret.as_bytes(), aad: id.as_bytes() };
        let sealed = XChaCha20Poly1305::new(&self.current.into())
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 encrypts any message of a client secret's size");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", BASE64.encode(bytes))
    }

    /// Decrypts a sealed secret; `Some((secret, true))` when only the previous key could,
    /// so the row should be sealed again with the current one.
    fn open(&self, id: Uuid, sealed: &str) -> Option<(String, bool)> {
        let bytes = BASE64.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let try_key = |key: &[u8; 32]| {
            let payload = Payload { msg: ciphertext, aad: id.as_bytes() };
            XChaCha20Poly1305::new(key.into()).decrypt(XNonce::from_slice(nonce), payload).ok()
        };
        let (plain, stale) = match try_key(&self.current) {
            Some(plain) => (plain, false),
            None => (try_key(self.previous.as_ref()?)?, true),
        };
        Some((String::from_utf8(plain).ok()?, stale))
    }
}

fn decode_env_key(name: &str, b64: &str) -> Result<[u8; 32], SecretKeyError> {
    BASE64.decode(b64.trim()).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()).ok_or_else(|| {
        SecretKeyError(format!(
            "{name} is not the base64 of 32 bytes; make one with `head -c 32 /dev/urandom | \
             base64`."
        ))
    })
}

fn key_file_error(path: &Path, e: impl std::fmt::Display) -> SecretKeyError {
    SecretKeyError(format!(
        "cannot read or create the secret key {}: {e}; make the data directory writable or set \
         {KEY_ENV}",
        path.display()
    ))
}

/// The key in `path`, made on the first start: 32 random bytes, readable by the owner only.
fn read_or_create_key_file(path: &Path) -> Result<[u8; 32], SecretKeyError> {
    // create_new: two processes starting together never overwrite each other's key.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            let key: [u8; 32] = rand::random();
            file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| {
                let _ = std::fs::remove_file(path);
                key_file_error(path, e)
            })?;
            tracing::info!(path = %path.display(), "created the secret key for client secrets");
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| key_file_error(path, "it vanished"))
        }
        Err(e) => Err(key_file_error(path, e)),
    }
}

/// The key in `path`, `None` when there is no such file.
fn read_key_file(path: &Path) -> Result<Option<[u8; 32]>, SecretKeyError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_file_error(path, e)),
    };
    let mode = file.metadata().map_err(|e| key_file_error(path, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretKeyError(format!(
            "the secret key {} can be read by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(32);
    file.read_to_end(&mut bytes).map_err(|e| key_file_error(path, e))?;
    <[u8; 32]>::try_from(bytes).map(Some).map_err(|_| {
        SecretKeyError(format!(
            "the secret key {} is not 32 bytes; restore it from a backup (or, if no secret was \
             ever encrypted with it, delete it to have a new one made)",
            path.display()
        ))
    })
}

/// Seals the secrets still in plaintext (rows written before encryption, or by an older
/// replica) and those only the previous key opens, with the current key. Run at every start
/// while the database is the starter's alone. A secret no key opens stops the start: the
/// portal would otherwise run with single sign-on broken in a way only a sign-in shows.
pub(crate) async fn seal_all(
    datastore: &DataStore,
    keys: &SecretKeys,
) -> Result<(), SecretKeyError> {
    let (mut sealed, mut resealed) = (0, 0);
    datastore
        .identity_provider_secrets_reseal(|row| {
            let plain = if !row.client_secret_sealed {
                sealed += 1;
                row.client_secret.clone()
            } else {
                match keys.open(row.id, &row.client_secret) {
                    Some((_, false)) => return Ok(None),
                    Some((plain, true)) => {
                        resealed += 1;
                        plain
                    }
                    None => {
                        return Err(SecretKeyError(format!(
                            "the client secret of the identity provider {} cannot be decrypted \
                             with the secret key{}; start with the key it was encrypted with as \
                             {PREVIOUS_KEY_ENV} (or {PREVIOUS_KEY_FILE} in the data directory), \
                             or delete the provider and add it again",
                            row.name,
                            if keys.previous.is_some() { " nor the previous one" } else { "" }
                        )));
                    }
                }
            };
            Ok(Some(keys.seal(row.id, &plain)))
        })
        .await?;
    if sealed + resealed > 0 {
        tracing::info!(sealed, resealed, "encrypted identity providers' client secrets");
    }
    Ok(())
}

impl From<StoreError> for SecretKeyError {
    fn from(e: StoreError) -> Self {
        SecretKeyError(format!("cannot re-encrypt secrets: {e}"))
    }
}

impl Controller {
    /// The client secret to authenticate to `provider` with; `None` for a public client.
    pub(super) fn client_secret(
        &self,
        provider: &identity_provider::Model,
    ) -> Result<Option<ClientSecret>, Error> {
        let secret = if provider.client_secret_sealed {
            self.secret_keys.open(provider.id, &provider.client_secret).map(|(s, _)| s).ok_or_else(
                || {
                    refuse(format!(
                        "The client secret of {} cannot be decrypted with the portal's secret \
                         key; a provider admin must delete the provider and add it again.",
                        provider.display_name
                    ))
                },
            )?
        } else {
            // Written by an older replica during an upgrade; sealed at the next start.
            provider.client_secret.clone()
        };
        Ok((!secret.is_empty()).then(|| ClientSecret::new(secret)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portal-secret-{name}-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_key_file_is_made_once_readable_by_the_owner_only() {
        let dir = temp_dir("file");
        let first = SecretKeys::load_from(&dir, None, None).unwrap();
        let meta = std::fs::metadata(dir.join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let again = SecretKeys::load_from(&dir, None, None).unwrap();
        assert_eq!(first.current, again.current, "the second start reads the same key");
        assert!(again.previous.is_none());
        std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let err = SecretKeys::load_from(&dir, None, None).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn the_environment_wins_and_must_hold_32_bytes() {
        let dir = temp_dir("env");
        let keys = SecretKeys::load_from(&dir, Some(BASE64.encode([5; 32])), None).unwrap();
        assert_eq!(keys.current, [5; 32]);
        assert!(!dir.join(KEY_FILE).exists(), "no key file when the environment has the key");
        let err = SecretKeys::load_from(&dir, Some("c2hvcnQ=".into()), None).unwrap_err();
        assert!(err.to_string().contains("PORTAL_SECRET_KEY is not the base64 of 32 bytes"));
    }

    #[test]
    fn the_previous_key_comes_from_the_environment_or_its_file() {
        let dir = temp_dir("previous");
        let file = dir.join(PREVIOUS_KEY_FILE);
        std::fs::write(&file, [6; 32]).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = SecretKeys::load_from(&dir, None, None).unwrap();
        assert_eq!(keys.previous, Some([6; 32]));
        let keys = SecretKeys::load_from(&dir, None, Some(BASE64.encode([8; 32]))).unwrap();
        assert_eq!(keys.previous, Some([8; 32]), "the environment wins");
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_provider_and_its_keys() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let old = SecretKeys::new([1; 32], None);
        let sealed = old.seal(a, "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_ne!(sealed, old.seal(a, "s3cret"), "a fresh nonce each time");
        assert_eq!(old.open(a, &sealed), Some(("s3cret".into(), false)));
        assert_eq!(old.open(b, &sealed), None, "bound to the provider's id");
        let rotated = SecretKeys::new([2; 32], Some([1; 32]));
        assert_eq!(rotated.open(a, &sealed), Some(("s3cret".into(), true)));
        assert_eq!(SecretKeys::new([2; 32], None).open(a, &sealed), None);
        assert!(!format!("{rotated:?}").contains('1'), "no key bytes in debug output");
    }
}
