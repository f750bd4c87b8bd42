//! Users and their roles in a tenant. Tenant admins manage their own tenant; provider admins
//! any. Invited local accounts get a one-time password shown once; changing a user's role
//! or disabling them ends their sessions, so the change applies at once.

use portal_types::Error;
use portal_types::ids::{TenantUuid, UserUuid};
use portal_types::views::{UserInvited, UserView};

use crate::Controller;
use crate::authn::{generate_password, hash_password};
use crate::authz::{Action, Role, managed_tenant};
use crate::context::OpContext;

fn parse_role(role: &str) -> Result<Role, Error> {
    Role::parse(role).ok_or_else(|| {
        Error::invalid(format!("\"{role}\" is not a role; use viewer, member or tenant-admin."))
    })
}

impl Controller {
    pub async fn user_list(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
    ) -> Result<Vec<UserView>, Error> {
        Ok(self.datastore.user_list(opctx, tenant).await?)
    }

    /// Creates a local account in the tenant with a role and a one-time password.
    pub async fn user_invite(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        username: &str,
        role: &str,
    ) -> Result<UserInvited, Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            managed_tenant(actor, tenant)?;
            let role = parse_role(role)?;
            validate_username(username)?;
            let password = generate_password();
            let hash = hash_password(password.clone()).await?;
            let user =
                self.datastore.user_create_invited(opctx, tenant, username, role, hash).await?;
            Ok(UserInvited { user, one_time_password: password })
        }
        .await;
        self.audited_in(opctx, tenant, "user.invite", "user", username, result).await
    }

    /// Adds an existing user to another tenant with a role (provider admins: only they may
    /// see users across tenants).
    pub async fn user_add_to_tenant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
        username: &str,
        role: &str,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::TenantWrite)?;
            let role = parse_role(role)?;
            Ok(self.datastore.user_add_to_tenant(opctx, tenant, username, role).await?)
        }
        .await;
        self.audited_in(opctx, Some(tenant), "user.add_to_tenant", "user", username, result).await
    }

    /// Changes a member's role in the tenant; their sessions end so it applies at once.
    pub async fn user_set_role(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        role: &str,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            managed_tenant(actor, tenant)?;
            let role = parse_role(role)?;
            if user_id == actor.user_id {
                return Err(Error::Conflict {
                    message: "You cannot change your own role; ask another admin.".into(),
                });
            }
            self.datastore.user_set_role(opctx, tenant, user_id, role).await?;
            Ok(self.datastore.user_sessions_end(user_id).await?)
        }
        .await;
        let object = user_id.to_string();
        self.audited_in(opctx, tenant, "user.set_role", "user", &object, result).await
    }

    /// Disables (or re-enables) a member of the tenant; disabling ends their sessions.
    pub async fn user_set_disabled(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        disabled: bool,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            managed_tenant(actor, tenant)?;
            if user_id == actor.user_id {
                return Err(Error::Conflict { message: "You cannot disable yourself.".into() });
            }
            self.datastore.user_set_disabled(opctx, tenant, user_id, disabled).await?;
            if disabled {
                self.datastore.user_sessions_end(user_id).await?;
            }
            Ok(())
        }
        .await;
        let verb = if disabled { "user.disable" } else { "user.enable" };
        self.audited_in(opctx, tenant, verb, "user", &user_id.to_string(), result).await
    }
}

/// Usernames: 1–64 characters of letters, digits and `.-_@` (emails fit).
fn validate_username(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "The username \"{name}\" is not valid: use 1 to 64 letters, digits and . - _ @."
        )))
    }
}
