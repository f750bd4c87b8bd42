//! The session cookie and what a session holds: the signed-in user, when they signed in,
//! the tenant they act in. Signing in and switching tenant give the session a fresh id (no
//! fixation); signing out deletes the row (a copied cookie is worthless); a session ends
//! [`ABSOLUTE_TIMEOUT`] after sign-in however active it is and [`SESSION_IDLE`] after its
//! last request. The control plane says who the actor behind a session is.

use std::net::IpAddr;

use portal_controller::authz::Actor;
use portal_controller::datastore::now_ms;
use portal_controller::{Controller, OpContext};
use portal_types::Error;
use portal_types::ids::{TenantUuid, UserUuid};
use portal_types::views::SessionView;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::store::DbSessionStore;

/// The session key holding the signed-in user's id.
pub(crate) const USER_KEY: &str = "user_id";
/// The session key holding the tenant the user chose to act in.
const TENANT_KEY: &str = "tenant_id";
/// The session key holding when the user signed in (Unix seconds).
const SIGNED_IN_AT_KEY: &str = "signed_in_at";
/// The same in Unix milliseconds, compared with the user's `sessions_valid_after`.
const SIGNED_IN_AT_MS_KEY: &str = "signed_in_at_ms";
/// The session cookie's name.
const COOKIE_NAME: &str = "portal_session";

/// A session ends this long after sign-in however active it is.
pub const ABSOLUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12 * 3600);
/// Sessions end after this long without a request.
pub const SESSION_IDLE: time::Duration = time::Duration::hours(8);

fn session_error(e: tower_sessions::session::Error) -> Error {
    Error::internal(e)
}

/// The session layer: an HTTP-only, SameSite=Lax cookie, `Secure` when the portal is
/// reached over https (`secure`), ending after [`SESSION_IDLE`] without a request.
pub fn layer(store: DbSessionStore, secure: bool) -> SessionManagerLayer<DbSessionStore> {
    SessionManagerLayer::new(store)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_expiry(Expiry::OnInactivity(SESSION_IDLE))
}

/// Signs a user in on this session: a fresh session id (no fixation), then the user.
pub async fn sign_in(session: &Session, user_id: UserUuid) -> Result<(), Error> {
    session.cycle_id().await.map_err(session_error)?;
    // Back to the usual lifetime if it was an anonymous visitor's short one.
    session.set_expiry(None);
    session.insert(USER_KEY, user_id).await.map_err(session_error)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    session.insert(SIGNED_IN_AT_KEY, now).await.map_err(session_error)?;
    session.insert(SIGNED_IN_AT_MS_KEY, now_ms()).await.map_err(session_error)?;
    Ok(())
}

/// Ends the session on the server: the row is deleted, so a copied cookie is worthless.
pub async fn sign_out(session: &Session) -> Result<(), Error> {
    session.flush().await.map_err(session_error)
}

/// The actor behind a session, if it is signed in and the user may still sign in;
/// `client` is the request's address, recorded with what the actor does. A session past
/// its absolute timeout is ended.
pub async fn actor(
    ctl: &Controller,
    session: &Session,
    client: Option<IpAddr>,
) -> Result<Option<Actor>, Error> {
    let user: Option<UserUuid> = session.get(USER_KEY).await.map_err(session_error)?;
    let signed_in_at: Option<i64> = session.get(SIGNED_IN_AT_KEY).await.map_err(session_error)?;
    let age = time::OffsetDateTime::now_utc().unix_timestamp() - signed_in_at.unwrap_or(0);
    if user.is_some() && age > ABSOLUTE_TIMEOUT.as_secs() as i64 {
        session.flush().await.map_err(session_error)?;
        return Ok(None);
    }
    let Some(user_id) = user else {
        return Ok(None);
    };
    let tenant: Option<TenantUuid> = session.get(TENANT_KEY).await.map_err(session_error)?;
    let signed_in_ms: Option<i64> =
        session.get(SIGNED_IN_AT_MS_KEY).await.map_err(session_error)?;
    let signed_in_ms = signed_in_ms.unwrap_or(signed_in_at.unwrap_or(0) * 1000);
    ctl.session_actor(user_id, tenant, signed_in_ms, client).await
}

/// Acts in another of the user's tenants from now on; the session id is rotated since the
/// role changes with it. A tenant the user is not in is not found.
pub async fn switch_tenant(
    ctl: &Controller,
    session: &Session,
    opctx: &OpContext,
    tenant: TenantUuid,
) -> Result<(), Error> {
    ctl.session_switch_tenant(opctx, tenant).await?;
    session.cycle_id().await.map_err(session_error)?;
    session.insert(TENANT_KEY, tenant).await.map_err(session_error)
}

/// The caller's sessions, this one marked current.
pub async fn session_list(
    ctl: &Controller,
    opctx: &OpContext,
    current: &Session,
) -> Result<Vec<SessionView>, Error> {
    let current = current.id().map(|id| id.to_string());
    ctl.session_list(opctx, current.as_deref()).await
}

/// Ends one of the caller's sessions by its label.
pub async fn session_end(ctl: &Controller, opctx: &OpContext, label: &str) -> Result<(), Error> {
    ctl.session_end(opctx, label).await
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::{self, SessionStore};

    use super::*;

    /// A store in memory, to test what a session holds without a database.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Memory(pub Arc<Mutex<HashMap<Id, Record>>>);

    #[async_trait::async_trait]
    impl SessionStore for Memory {
        async fn save(&self, record: &Record) -> session_store::Result<()> {
            self.0.lock().unwrap().insert(record.id, record.clone());
            Ok(())
        }
        async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        async fn delete(&self, id: &Id) -> session_store::Result<()> {
            self.0.lock().unwrap().remove(id);
            Ok(())
        }
    }

    #[tokio::test]
    async fn signing_in_rotates_the_id_and_signing_out_deletes_the_record() {
        let store = Memory::default();
        let session = Session::new(None, Arc::new(store.clone()), None);
        session.insert("oidc_pending", "x").await.unwrap();
        session.save().await.unwrap();
        let before = session.id().expect("saved");
        let user = portal_types::ids::GenericUuid::from_untyped_uuid(uuid::Uuid::new_v4());
        sign_in(&session, user).await.unwrap();
        session.save().await.unwrap();
        assert_ne!(session.id(), Some(before), "a fresh id at sign-in (no fixation)");
        assert!(store.load(&before).await.unwrap().is_none(), "the pre-sign-in record is gone");
        assert_eq!(session.get::<UserUuid>(USER_KEY).await.unwrap(), Some::<UserUuid>(user));
        assert!(session.get::<i64>(SIGNED_IN_AT_MS_KEY).await.unwrap().is_some());
        let id = session.id().unwrap();
        sign_out(&session).await.unwrap();
        assert!(store.load(&id).await.unwrap().is_none(), "signed out on the server");
    }
}
