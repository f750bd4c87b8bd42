//! Local accounts: argon2id password hashes, the first provider admin, sign-in and password
//! changes.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use portal_types::Error;
use portal_types::ids::UserUuid;
use rand::Rng;
use tokio::sync::Semaphore;

use crate::context::OpContext;
use crate::datastore::{DataStore, account, now_ms};

/// Name of the tenant the first provider admin belongs to.
pub const DEFAULT_TENANT: &str = "default";
/// Username of the first provider admin.
pub const ADMIN_USERNAME: &str = "admin";

/// OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Each hash takes 19 MiB; bounding concurrent hashes bounds memory under a login flood.
static HASH_PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(4)));

/// A hash of a random password, verified against when the user does not exist so an unknown
/// user costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_blocking(&generate_password()).unwrap_or_default());

fn hash_password_blocking(password: &str) -> Result<String, Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(Error::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

fn verify_password_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

async fn run_hashing<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let _permit = HASH_PERMITS.clone().acquire_owned().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)
}

pub async fn hash_password(password: String) -> Result<String, Error> {
    run_hashing(move || hash_password_blocking(&password)).await?
}

/// A random password of 20 characters from an alphabet without look-alikes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// What [`bootstrap_admin`] did, for the startup banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users already exist; nothing changed.
    Existing,
    /// The admin was created with the password from the configuration.
    CreatedWithConfiguredPassword,
    /// The admin was created with this generated password, shown once.
    CreatedWithGeneratedPassword(String),
}

/// On an empty database, creates the default tenant and the first provider admin.
pub async fn bootstrap_admin(
    db: &DataStore,
    configured_password: Option<&str>,
) -> Result<Bootstrap, Error> {
    if account::users_exist(db.connection()).await? {
        return Ok(Bootstrap::Existing);
    }
    let (password, outcome) = match configured_password {
        Some(p) if p.len() >= 12 => (p.to_owned(), Bootstrap::CreatedWithConfiguredPassword),
        Some(_) => {
            return Err(Error::invalid(
                "The admin password setting is shorter than 12 characters; set a longer one.",
            ));
        }
        None => {
            let p = generate_password();
            (p.clone(), Bootstrap::CreatedWithGeneratedPassword(p))
        }
    };
    let hash = hash_password(password).await?;
    // The provider's own tenant is not held to the defaults meant for customers; a generated
    // password was printed to a console, so the admin chooses their own.
    let unlimited =
        ["instances", "vcpus", "memory_gib", &format!("gpus:{}", crate::app::catalog::H100)]
            .map(str::to_owned);
    let generated = matches!(outcome, Bootstrap::CreatedWithGeneratedPassword(_));
    account::first_admin_create(
        db.connection(),
        DEFAULT_TENANT,
        ADMIN_USERNAME,
        hash,
        generated,
        &unlimited,
    )
    .await?;
    Ok(outcome)
}

/// Checks a username and password; the answer and its timing are the same for an unknown
/// user, a disabled one and a wrong password.
pub async fn verify_login(
    datastore: &DataStore,
    username: &str,
    password: &str,
) -> Result<UserUuid, Error> {
    let found = datastore.credentials_by_name(username).await?;
    let hash =
        found.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| DUMMY_HASH.clone());
    let outdated = !has_current_parameters(&hash);
    let candidate = password.to_owned();
    let ok = run_hashing(move || verify_password_blocking(&candidate, &hash)).await?;
    match found {
        Some(u) if ok && !u.disabled => {
            if outdated {
                // The parameters were raised since this hash was made: store a new one now
                // that we hold the password.
                let new_hash = hash_password(password.to_owned()).await?;
                datastore.user_password_set(u.user_id, new_hash, false).await?;
                tracing::info!(user = %u.username, "password rehashed with current parameters");
            }
            Ok(u.user_id)
        }
        _ => Err(Error::BadCredentials),
    }
}

/// Whether a stored hash is argon2id with today's parameters.
fn has_current_parameters(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let current = argon2();
    let params = current.params();
    parsed.algorithm.as_str() == "argon2id"
        && parsed.params.get_decimal("m") == Some(params.m_cost())
        && parsed.params.get_decimal("t") == Some(params.t_cost())
        && parsed.params.get_decimal("p") == Some(params.p_cost())
}

/// Shortest and longest password a user may choose (NIST SP 800-63B: at least 8; we ask for
/// 12, the length of a passphrase of three words).
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 12..=256;

impl crate::Controller {
    /// Changes the actor's own password: the current one is checked (and throttled like a
    /// sign-in), and every session of the user ends, as a stolen one would otherwise stay.
    pub async fn password_change(
        &self,
        opctx: &OpContext,
        current: &str,
        new: &str,
        repeat: &str,
    ) -> Result<(), Error> {
        let result = self.password_change_unaudited(opctx, current, new, repeat).await;
        let username = opctx.actor().map_or("", |a| a.username.as_str());
        self.audited(opctx, "account.password_change", "user", username, result).await
    }

    async fn password_change_unaudited(
        &self,
        opctx: &OpContext,
        current: &str,
        new: &str,
        repeat: &str,
    ) -> Result<(), Error> {
        let actor = opctx.authorize(crate::authz::Action::PasswordChange)?;
        let has_password = self
            .datastore
            .credentials_by_name(&actor.username)
            .await?
            .is_some_and(|u| u.password_hash.is_some());
        if !has_password {
            return Err(Error::Conflict {
                message: "You sign in through single sign-on; change your password at your \
                          identity provider."
                    .into(),
            });
        }
        let chars = new.chars().count();
        if !PASSWORD_CHARS.contains(&chars) {
            return Err(Error::invalid(format!(
                "Choose a new password of {} to {} characters.",
                PASSWORD_CHARS.start(),
                PASSWORD_CHARS.end()
            )));
        }
        if new != repeat {
            return Err(Error::invalid("The two new passwords differ; type them again."));
        }
        let now = now_ms();
        let throttle = &self.login_throttle;
        let reservation =
            throttle.reserve(&self.datastore, &actor.username, actor.client, now).await?;
        match verify_login(&self.datastore, &actor.username, current).await {
            Ok(_) => throttle.release(&self.datastore, reservation).await?,
            Err(Error::BadCredentials) => {
                throttle.failed(&self.datastore, reservation, now).await?;
                return Err(Error::invalid("The current password is wrong; type it again."));
            }
            Err(e) => {
                throttle.release(&self.datastore, reservation).await?;
                return Err(e);
            }
        }
        if current == new {
            return Err(Error::invalid("The new password is the current one; choose another."));
        }
        let hash = hash_password(new.to_owned()).await?;
        self.datastore.user_password_set(actor.user_id, hash, true).await?;
        self.datastore.user_sessions_end(actor.user_id).await?;
        // A token made by whoever knew the old password must not outlive it.
        self.datastore.api_tokens_revoke_all(actor.user_id).await?;
        tracing::info!(user = %actor.username, "password changed; sessions ended, tokens revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let hash = hash_password_blocking("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password_blocking("correct horse battery", &hash));
        assert!(!verify_password_blocking("correct horse batterz", &hash));
        assert!(!verify_password_blocking("anything", "not a hash"));
    }

    #[test]
    fn weaker_hashes_are_recognised_for_rehashing() {
        let current = hash_password_blocking("pw").unwrap();
        assert!(has_current_parameters(&current));
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(!has_current_parameters(&weak));
        assert!(verify_password_blocking("pw", &weak), "old hashes still verify");
    }

    #[test]
    fn generated_passwords_differ_and_are_long() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }
}
