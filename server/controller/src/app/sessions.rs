//! What the control plane does for web sessions, on plain values: who the actor behind a
//! signed-in session is, whether a tenant switch is allowed, and a user's own sessions.
//! The cookies and the session record itself belong to the web layer (`portal-web`).

use portal_types::Error;
use portal_types::ids::{TenantUuid, UserUuid};
use portal_types::views::SessionView;

use crate::authz::{Action, Actor};
use crate::context::OpContext;
use crate::datastore::session_label;

impl crate::Controller {
    /// The actor behind a signed-in session, if the user may still sign in and signed in
    /// after their `sessions_valid_after`; `signed_in_ms` is when (Unix ms), `client` the
    /// request's address, recorded with what the actor does.
    pub async fn session_actor(
        &self,
        user_id: UserUuid,
        tenant: Option<TenantUuid>,
        signed_in_ms: i64,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<Actor>, Error> {
        let actor = self.datastore.actor_load(user_id, tenant, Some(signed_in_ms)).await?;
        Ok(actor.map(|actor| Actor { client, ..actor }))
    }

    /// Whether the caller may act in `tenant` from now on; a tenant they are not in is not
    /// found. The web layer then rotates the session id and remembers the tenant.
    pub async fn session_switch_tenant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
    ) -> Result<(), Error> {
        let actor = opctx.authorize(Action::InstanceRead)?;
        if self.actor_in(actor.user_id, Some(tenant)).await?.map(|a| a.tenant_id) != Some(tenant) {
            return Err(Error::not_found("tenant", tenant));
        }
        Ok(())
    }

    /// The caller's sessions, labelled by a hash of their id (ids are bearer secrets);
    /// `current` is the id of the session asking, if any.
    pub async fn session_list(
        &self,
        opctx: &OpContext,
        current: Option<&str>,
    ) -> Result<Vec<SessionView>, Error> {
        let current = current.map(session_label);
        Ok(self.datastore.session_list(opctx, current.as_deref()).await?)
    }

    /// Ends one of the caller's sessions by its label; another user's is not found.
    pub async fn session_end(&self, opctx: &OpContext, label: &str) -> Result<(), Error> {
        let result = self.datastore.session_end(opctx, label).await.map_err(Error::from);
        self.audited(opctx, "session.end", "session", label, result).await
    }
}
