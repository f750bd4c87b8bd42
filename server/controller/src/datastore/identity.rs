//! Who signs in through an identity provider: the `external_identity` links from a
//! provider's subject to a user, and the one transaction that finds or creates the user and
//! sets their role in the provider's tenant.

use std::collections::HashMap;

use portal_types::Error;
use portal_types::ids::{GenericUuid, UserUuid};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use uuid::Uuid;

use super::entity::{external_identity, identity_provider, membership, user};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::authz::Role;

impl DataStore {
    /// The display name of the provider each of `users` signs in through, for user lists;
    /// local users are absent.
    pub(crate) async fn identity_providers_of_users(
        &self,
        users: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, StoreError> {
        let links = external_identity::Entity::find()
            .filter(external_identity::Column::UserId.is_in(users.iter().copied()))
            .all(&self.db)
            .await?;
        if links.is_empty() {
            return Ok(HashMap::new());
        }
        let names: HashMap<Uuid, String> = identity_provider::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.id, p.display_name))
            .collect();
        Ok(links
            .into_iter()
            .filter_map(|l| Some((l.user_id, names.get(&l.provider_id)?.clone())))
            .collect())
    }

    /// In one transaction: finds the user linked to (`provider`, `subject`) or creates one
    /// called `username` with that link, and gives them `role` in the provider's tenant.
    /// A disabled user, or a new identity whose name is taken, is refused.
    // `..Default::default()` on the new user row: columns added to `users` later (with
    // database defaults) must not break single sign-on.
    #[allow(clippy::needless_update)]
    pub(crate) async fn identity_sign_in(
        &self,
        provider: &identity_provider::Model,
        subject: &str,
        username: &str,
        role: Role,
    ) -> Result<UserUuid, StoreError> {
        let display = &provider.display_name;
        let now = now_ms();
        let txn = begin_write(&self.db).await?;
        let link = external_identity::Entity::find_by_id((provider.id, subject.to_owned()))
            .one(&txn)
            .await?;
        let user_id = match link {
            Some(link) => {
                let u = user::Entity::find_by_id(link.user_id)
                    .one(&txn)
                    .await?
                    .ok_or_else(|| Error::internal("external identity points at a missing user"))?;
                if u.disabled {
                    return Err(Error::invalid(format!(
                        "The account {} is disabled; ask an admin to enable it.",
                        u.username
                    ))
                    .into());
                }
                let mut link = link.into_active_model();
                link.last_sign_in_at = Set(now);
                link.update(&txn).await?;
                u.id
            }
            None => {
                // Never adopt an existing account by name. The qualified name is only taken
                // by another subject of this provider asserting the same address, or by a
                // user left from an earlier provider of the same name.
                let taken = user::Entity::find()
                    .filter(user::Column::Username.eq(username))
                    .one(&txn)
                    .await?;
                if taken.is_some() {
                    return Err(Error::invalid(format!(
                        "The name {username} belongs to another account (another identity at \
                         {display}, or one left by an earlier provider of that name); ask an \
                         admin to remove or rename that account."
                    ))
                    .into());
                }
                let id = Uuid::new_v4();
                user::ActiveModel {
                    id: Set(id),
                    username: Set(username.to_owned()),
                    password_hash: Set(None),
                    provider_admin: Set(false),
                    disabled: Set(false),
                    created_at: Set(now),
                    must_change_password: Set(false),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                external_identity::ActiveModel {
                    provider_id: Set(provider.id),
                    subject: Set(subject.to_owned()),
                    user_id: Set(id),
                    created_at: Set(now),
                    last_sign_in_at: Set(now),
                }
                .insert(&txn)
                .await?;
                id
            }
        };
        // The provider's groups are authoritative for the role in the provider's tenant.
        let existing =
            membership::Entity::find_by_id((user_id, provider.tenant_id)).one(&txn).await?;
        match existing {
            Some(m) if m.role == role.as_str() => {}
            Some(m) => {
                let mut m = m.into_active_model();
                m.role = Set(role.as_str().to_owned());
                m.update(&txn).await?;
            }
            None => {
                membership::ActiveModel {
                    user_id: Set(user_id),
                    tenant_id: Set(provider.tenant_id),
                    role: Set(role.as_str().to_owned()),
                }
                .insert(&txn)
                .await?;
            }
        }
        txn.commit().await?;
        Ok(UserUuid::from_untyped_uuid(user_id))
    }
}
