//! Who may do what: the one policy, in one place. Every control-plane method calls
//! [`authorize`] on its first line. Objects of other tenants are never visible: lookups are
//! scoped to the actor's tenant, so they come back as not found (404), while an action the
//! role does not allow is forbidden (403) and no actor at all is unauthenticated (401).

use portal_types::Error;
use portal_types::ids::{TenantUuid, UserUuid};
use serde::{Deserialize, Serialize};

use crate::context::{OpContext, Through};

pub use portal_types::Role;

/// The authenticated caller of a control-plane method, acting within one tenant.
/// Serializable so saga parameters carry who acted, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: UserUuid,
    pub username: String,
    pub provider_admin: bool,
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    pub role: Role,
    /// Where the request came from, for the audit log.
    pub client: Option<std::net::IpAddr>,
    /// Signed in with a password someone else chose (an invitation, the generated first
    /// admin password): until they choose their own, that is all they may do.
    pub must_change_password: bool,
}

/// Everything a caller can ask the control plane to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the fleet: every host, its GPUs and their use (provider admins).
    FleetRead,
    /// Cordon and uncordon hosts (provider admins).
    FleetWrite,
    /// See how many VMs of each size can still be launched.
    CapacityRead,
    /// See the instance-type catalog.
    CatalogRead,
    /// Add or remove instance types (provider admins).
    CatalogWrite,
    /// See a tenant's usage against its quota.
    QuotaRead,
    /// Set quotas (provider admins).
    QuotaWrite,
    /// See and change OpenID Connect identity providers and their role mappings
    /// (provider admins).
    IdentityProviderWrite,
    /// See and change tenants (provider admins).
    TenantWrite,
    /// See the users and roles of a tenant (its tenant admins, provider admins).
    UserRead,
    /// Invite, disable and change the roles of users (tenant admins in their tenant,
    /// provider admins everywhere).
    UserWrite,
    /// See the audit log (tenant admins their tenant's entries, provider admins all).
    AuditRead,
    /// See one's own sessions and API tokens.
    AccountRead,
    /// End one's own sessions; create and revoke one's own API tokens.
    AccountWrite,
    /// Change one's own password.
    PasswordChange,
    /// See one's own SSH public keys (in the current tenant).
    SshKeyRead,
    /// Add and delete one's own SSH public keys; every role may, viewers too.
    SshKeyWrite,
    /// See the instances of the actor's tenant.
    InstanceRead,
    InstanceCreate,
    InstanceDelete,
    /// Stop, start, reboot or power off an instance.
    InstancePower,
    /// See the tenant's VPCs, subnets and security groups.
    NetworkRead,
    /// Add and delete VPCs, subnets, security groups and rules.
    NetworkWrite,
    /// See the tenant's usage, costs, invoices and budget.
    UsageRead,
    /// Set the tenant's monthly budget (tenant admins).
    BudgetWrite,
    /// See every tenant's usage, the revenue and GPU use (provider admins).
    ProviderUsageRead,
    /// Set prices (provider admins).
    PriceWrite,
    /// Give or take back tenants' prepaid credit (provider admins).
    CreditWrite,
    /// Add and delete pools of public IP addresses (provider admins).
    IpPoolWrite,
}

/// The tenant an actor may manage users in: their own, or any for provider admins. Another
/// tenant is not found for everyone else.
pub fn managed_tenant(actor: &Actor, tenant: Option<TenantUuid>) -> Result<TenantUuid, Error> {
    let tenant = tenant.unwrap_or(actor.tenant_id);
    if tenant != actor.tenant_id && !actor.provider_admin {
        return Err(Error::not_found("tenant", tenant));
    }
    Ok(tenant)
}

/// The policy. Returns the actor so callers write `let actor = opctx.authorize(…)?;`.
pub fn authorize(opctx: &OpContext, action: Action) -> Result<&Actor, Error> {
    let actor = opctx.actor().ok_or(Error::Unauthenticated)?;
    if actor.must_change_password && !matches!(action, Action::AccountRead | Action::PasswordChange)
    {
        return Err(Error::forbidden(
            "choose your own password on My account first; the one you were given was for \
             signing in once",
        ));
    }
    if opctx.through() == Through::Token
        && matches!(action, Action::AccountWrite | Action::PasswordChange | Action::SshKeyWrite)
    {
        // A key added with a stolen token would open the user's VMs after the token is gone.
        return Err(Error::forbidden(
            "an API token cannot manage tokens, sessions, passwords or SSH keys; sign in to \
             the portal for that",
        ));
    }
    let allowed = actor.provider_admin
        || match action {
            Action::FleetRead
            | Action::FleetWrite
            | Action::CatalogWrite
            | Action::QuotaWrite
            | Action::IdentityProviderWrite
            | Action::TenantWrite
            | Action::ProviderUsageRead
            | Action::PriceWrite
            | Action::CreditWrite
            | Action::IpPoolWrite => false,
            Action::UserRead | Action::UserWrite | Action::AuditRead | Action::BudgetWrite => {
                actor.role >= Role::TenantAdmin
            }
            Action::CapacityRead
            | Action::AccountRead
            | Action::AccountWrite
            | Action::PasswordChange
            | Action::CatalogRead
            | Action::QuotaRead
            | Action::SshKeyRead
            | Action::SshKeyWrite
            | Action::InstanceRead
            | Action::NetworkRead
            | Action::UsageRead => true,
            Action::InstanceCreate
            | Action::InstanceDelete
            | Action::InstancePower
            | Action::NetworkWrite => actor.role >= Role::Member,
        };
    if allowed {
        Ok(actor)
    } else {
        Err(Error::forbidden(format!(
            "a {} of {} cannot {}; {}.",
            actor.role.as_str(),
            actor.tenant_name,
            match action {
                Action::FleetRead => "see the fleet",
                Action::FleetWrite => "cordon hosts",
                Action::CapacityRead => "see capacity",
                Action::CatalogRead => "see the catalog",
                Action::CatalogWrite => "change the catalog",
                Action::QuotaRead => "see quotas",
                Action::QuotaWrite => "change quotas",
                Action::IdentityProviderWrite => "change identity providers",
                Action::TenantWrite => "change tenants",
                Action::UserRead => "see users",
                Action::UserWrite => "change users",
                Action::AuditRead => "see the audit log",
                Action::AccountRead => "see their account",
                Action::AccountWrite => "change their account",
                Action::PasswordChange => "change their password",
                Action::SshKeyRead => "see their SSH keys",
                Action::SshKeyWrite => "change their SSH keys",
                Action::InstanceRead => "see instances",
                Action::InstanceCreate => "launch instances",
                Action::InstanceDelete => "delete instances",
                Action::InstancePower => "stop, start or reboot instances",
                Action::NetworkRead => "see networks",
                Action::NetworkWrite => "change networks or security groups",
                Action::UsageRead => "see usage",
                Action::BudgetWrite => "set the budget",
                Action::ProviderUsageRead => "see every tenant's usage",
                Action::PriceWrite => "change prices",
                Action::CreditWrite => "change prepaid credit",
                Action::IpPoolWrite => "change public IP pools",
            },
            match action {
                Action::InstanceCreate
                | Action::InstanceDelete
                | Action::InstancePower
                | Action::NetworkWrite => "ask a tenant admin for the member role",
                Action::UserRead | Action::UserWrite | Action::AuditRead | Action::BudgetWrite => {
                    "only tenant admins can"
                }
                _ => "only provider admins can",
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_types::ids::GenericUuid;

    fn actor(role: Role, provider_admin: bool) -> Actor {
        Actor {
            user_id: UserUuid::from_untyped_uuid(uuid::Uuid::new_v4()),
            username: "u".into(),
            provider_admin,
            tenant_id: TenantUuid::from_untyped_uuid(uuid::Uuid::new_v4()),
            tenant_name: "acme".into(),
            role,
            client: None,
            must_change_password: false,
        }
    }

    fn op(actor: &Actor) -> OpContext {
        OpContext::for_session(Some(actor.clone()))
    }

    #[test]
    fn anonymous_is_401_everywhere() {
        for action in [
            Action::FleetRead,
            Action::FleetWrite,
            Action::CapacityRead,
            Action::CatalogRead,
            Action::CatalogWrite,
            Action::QuotaRead,
            Action::QuotaWrite,
            Action::IdentityProviderWrite,
            Action::TenantWrite,
            Action::UserRead,
            Action::UserWrite,
            Action::AuditRead,
            Action::AccountRead,
            Action::AccountWrite,
            Action::SshKeyRead,
            Action::SshKeyWrite,
            Action::InstanceRead,
            Action::InstanceCreate,
            Action::InstanceDelete,
            Action::InstancePower,
            Action::NetworkRead,
            Action::NetworkWrite,
            Action::IpPoolWrite,
        ] {
            assert_eq!(
                authorize(&OpContext::anonymous(), action).unwrap_err(),
                Error::Unauthenticated
            );
        }
    }

    #[test]
    fn viewers_read_but_cannot_mutate() {
        let viewer = actor(Role::Viewer, false);
        assert!(authorize(&op(&viewer), Action::InstanceRead).is_ok());
        let err = authorize(&op(&viewer), Action::InstanceCreate).unwrap_err();
        assert_eq!(err.status_code(), 403);
        assert!(authorize(&op(&actor(Role::Member, false)), Action::InstanceDelete).is_ok());
        assert!(authorize(&op(&actor(Role::Viewer, true)), Action::InstanceDelete).is_ok());
    }

    #[test]
    fn only_provider_admins_see_the_fleet_and_change_catalog_and_quotas() {
        let tenant_admin = actor(Role::TenantAdmin, false);
        for action in [
            Action::FleetRead,
            Action::FleetWrite,
            Action::CatalogWrite,
            Action::QuotaWrite,
            Action::IpPoolWrite,
        ] {
            assert_eq!(authorize(&op(&tenant_admin), action).unwrap_err().status_code(), 403);
            assert!(authorize(&op(&actor(Role::Viewer, true)), action).is_ok());
        }
        assert!(authorize(&op(&tenant_admin), Action::CapacityRead).is_ok());
    }

    #[test]
    fn tokens_cannot_manage_tokens_sessions_or_passwords() {
        let token = OpContext::for_token(actor(Role::TenantAdmin, true));
        for action in [Action::AccountWrite, Action::PasswordChange, Action::SshKeyWrite] {
            assert_eq!(authorize(&token, action).unwrap_err().status_code(), 403);
        }
        assert!(authorize(&token, Action::AccountRead).is_ok());
        assert!(authorize(&token, Action::SshKeyRead).is_ok());
        assert!(authorize(&token, Action::InstanceCreate).is_ok());
    }

    #[test]
    fn every_role_manages_its_own_ssh_keys() {
        for role in [Role::Viewer, Role::Member, Role::TenantAdmin] {
            for action in [Action::SshKeyRead, Action::SshKeyWrite] {
                assert!(authorize(&op(&actor(role, false)), action).is_ok(), "{role:?} {action:?}");
            }
        }
        let mut unfinished = actor(Role::TenantAdmin, false);
        unfinished.must_change_password = true;
        assert_eq!(
            authorize(&op(&unfinished), Action::SshKeyWrite).unwrap_err().status_code(),
            403
        );
    }
}
