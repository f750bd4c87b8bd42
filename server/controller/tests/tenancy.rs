//! Tenants, users, roles and the audit log: what a provider admin, a tenant admin, a member
//! and a viewer may do, and that changes take effect at once.

mod common;

use common::*;
use portal_controller::datastore::{DataStore, SessionRow};
use portal_types::Error;

/// The password a test user chooses in place of the one-time `given` one.
fn own(given: &str) -> String {
    format!("{given}-own")
}

/// Signs a user in with the one-time password they were given, the first time choosing
/// their own ([`own`]), as the portal makes them; later sign-ins use their own.
async fn sign_in(stack: &Stack, username: &str, given: &str) -> portal_controller::authz::Actor {
    let ctl = &stack.controller;
    let user = match ctl.login(username, given, None).await {
        Ok(user) => user,
        Err(Error::BadCredentials) => {
            ctl.login(username, &own(given), None).await.expect("signs in")
        }
        Err(e) => panic!("{username} cannot sign in: {e}"),
    };
    let actor = ctl.actor(user).await.unwrap().expect("has an actor");
    if !actor.must_change_password {
        return actor;
    }
    let mine = own(given);
    ctl.password_change(&op(&actor), given, &mine, &mine).await.expect("chooses a password");
    let actor = ctl.actor(user).await.unwrap().expect("has an actor");
    assert!(!actor.must_change_password);
    actor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_manage_their_own_tenant_only() {
    let stack = start(&sqlite_url("tenancy"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    assert_eq!(ctl.tenant_create(admin, "acme").await.unwrap_err().status_code(), 409);
    let invited =
        ctl.user_invite(admin, Some(acme.id), "alice@acme.test", "tenant-admin").await.unwrap();
    let alice = sign_in(&stack, "alice@acme.test", &invited.one_time_password).await;
    assert_eq!((alice.tenant_name.as_str(), alice.role.as_str()), ("acme", "tenant-admin"));

    // Alice invites a viewer; the viewer can read but not launch.
    let bob_invite = ctl.user_invite(&op(&alice), None, "bob", "viewer").await.unwrap();
    let bob = sign_in(&stack, "bob", &bob_invite.one_time_password).await;
    assert!(ctl.instance_list(&op(&bob)).await.unwrap().is_empty());
    assert_eq!(
        ctl.instance_create(&op(&bob), &launch("x", "h100x1")).await.unwrap_err().status_code(),
        403
    );
    assert_eq!(ctl.user_list(&op(&bob), None).await.unwrap_err().status_code(), 403);
    // Alice sees her tenant's users, not another tenant's (404), and cannot make tenants.
    assert_eq!(ctl.user_list(&op(&alice), None).await.unwrap().len(), 2);
    let default_tenant = stack.admin.tenant_id;
    assert_eq!(
        ctl.user_list(&op(&alice), Some(default_tenant)).await.unwrap_err().status_code(),
        404
    );
    assert_eq!(ctl.tenant_create(&op(&alice), "evil").await.unwrap_err().status_code(), 403);
    // Another tenant's instance is not found for Alice.
    let mine = ctl.instance_create(admin, &launch("admins-vm", "h100x1")).await.unwrap().remove(0);
    assert_eq!(ctl.instance_delete(&op(&alice), mine.id).await.unwrap_err().status_code(), 404);

    // A role change ends the user's sessions; the new role applies at the next sign-in.
    let store = ctl.datastore();
    let record = session_row(bob.user_id, None);
    assert!(store.session_create(record.clone()).await.unwrap());
    assert!(store.session_load(&record.id).await.unwrap().is_some());
    ctl.user_set_role(&op(&alice), None, bob.user_id, "member").await.unwrap();
    assert!(store.session_load(&record.id).await.unwrap().is_none(), "bob's session ended");
    let bob = sign_in(&stack, "bob", &bob_invite.one_time_password).await;
    ctl.instance_create(&op(&bob), &launch("bobs-vm", "h100x1")).await.unwrap();
    assert_eq!(
        ctl.user_set_role(&op(&alice), None, alice.user_id, "viewer")
            .await
            .unwrap_err()
            .status_code(),
        409
    );
    assert_eq!(
        ctl.user_set_role(&op(&alice), None, bob.user_id, "root").await.unwrap_err().status_code(),
        400
    );

    // Disabled users cannot sign in.
    ctl.user_set_disabled(&op(&alice), None, bob.user_id, true).await.unwrap();
    let refused = ctl.login("bob", &bob_invite.one_time_password, None).await.unwrap_err();
    assert_eq!(refused, Error::BadCredentials);

    // The audit log: Alice sees acme's entries only, the provider admin everything.
    let alices = ctl.audit_list(&op(&alice), None, None, &newest()).await.unwrap().items;
    assert!(alices.iter().any(|e| e.action == "user.set_role" && e.outcome == "ok"));
    assert!(alices.iter().any(|e| e.action == "instance.create"
        && e.actor == "bob"
        && e.outcome.starts_with("403")));
    // The provider admin's invitation of Alice into acme is acme's; its own launch is not.
    assert!(alices.iter().any(|e| e.actor == "admin" && e.action == "user.invite"));
    assert!(alices.iter().all(|e| e.object_id != "admins-vm"), "no other tenant's entries");
    let all = ctl.audit_list(admin, Some("tenant."), None, &newest()).await.unwrap().items;
    assert!(all.iter().any(|e| e.action == "tenant.create" && e.object_id == "acme"));
    assert_eq!(
        ctl.audit_list(&op(&bob), None, None, &newest()).await.unwrap_err().status_code(),
        403
    );

    // Before deleting, the provider admin is told what would go.
    let impact = ctl.tenant_deletion_preview(admin, acme.id).await.unwrap();
    assert_eq!(impact.instances, 1);
    assert_eq!(impact.members, ["alice@acme.test", "bob"]);
    assert_eq!(impact.stranded, ["alice@acme.test", "bob"], "neither is in another tenant");
    assert_eq!((impact.api_tokens, impact.identity_providers.len()), (0, 0));
    let refused = ctl.tenant_deletion_preview(&op(&alice), acme.id).await.unwrap_err();
    assert_eq!(refused.status_code(), 403);
    // Deleting needs the name, and no instances left.
    assert_eq!(ctl.tenant_delete(admin, acme.id, "acm").await.unwrap_err().status_code(), 400);
    let busy = ctl.tenant_delete(admin, acme.id, "acme").await.unwrap_err();
    assert!(busy.to_string().contains("still has 1 instance"), "{busy}");

    // Suspending a tenant stops its members from signing in.
    ctl.tenant_set_suspended(admin, acme.id, true).await.unwrap();
    let suspended =
        ctl.login("alice@acme.test", &own(&invited.one_time_password), None).await.unwrap_err();
    assert_eq!(suspended.status_code(), 403, "{suspended}");
    assert!(ctl.actor(alice.user_id).await.unwrap().is_none());
    ctl.tenant_set_suspended(admin, acme.id, false).await.unwrap();
    sign_in(&stack, "alice@acme.test", &invited.one_time_password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_act_for_their_user_in_one_tenant_until_revoked_or_expired() {
    use portal_controller::datastore::entity::api_token;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let stack = start(&sqlite_url("tokens"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let invited = ctl.user_invite(admin, None, "meg", "member").await.unwrap();
    let meg = sign_in(&stack, "meg", &invited.one_time_password).await;

    // Never more than one's own role.
    let err = ctl.api_token_create(&op(&meg), "too-strong", "tenant-admin", 30).await.unwrap_err();
    assert_eq!(err.status_code(), 403, "{err}");
    assert_eq!(
        ctl.api_token_create(&op(&meg), "x", "member", 0).await.unwrap_err().status_code(),
        400
    );

    let created = ctl.api_token_create(&op(&meg), "ci", "viewer", 30).await.unwrap();
    assert!(created.token.starts_with(&created.view.prefix));
    let as_token = ctl.token_actor(&created.token, None).await.unwrap().expect("token works");
    let token_actor = as_token.actor().expect("an actor");
    assert_eq!((token_actor.username.as_str(), token_actor.role.as_str()), ("meg", "viewer"));
    // A viewer token cannot launch even though meg could.
    let refused = ctl.instance_create(&as_token, &launch("t", "c8m32")).await.unwrap_err();
    assert_eq!(refused.status_code(), 403);
    // A wrong secret with the right prefix is refused.
    let forged = format!("{}{}", &created.token[..12], "x".repeat(32));
    assert!(ctl.token_actor(&forged, None).await.unwrap().is_none());
    let list = ctl.api_token_list(&op(&meg)).await.unwrap();
    assert!(list[0].last_used_at.is_some(), "use is recorded");
    // Someone else cannot revoke it.
    assert_eq!(ctl.api_token_revoke(admin, created.view.id).await.unwrap_err().status_code(), 404);
    ctl.api_token_revoke(&op(&meg), created.view.id).await.unwrap();
    assert!(ctl.token_actor(&created.token, None).await.unwrap().is_none());

    // Expired tokens stop working.
    let second = ctl.api_token_create(&op(&meg), "short", "member", 1).await.unwrap();
    api_token::Entity::update_many()
        .col_expr(api_token::Column::ExpiresAt, 0i64.into())
        .filter(api_token::Column::Name.eq("short"))
        .exec(ctl.datastore().connection())
        .await
        .unwrap();
    assert!(ctl.token_actor(&second.token, None).await.unwrap().is_none());
    // Disabled users' tokens stop working too.
    let third = ctl.api_token_create(&op(&meg), "third", "member", 1).await.unwrap();
    ctl.user_set_disabled(admin, None, meg.user_id, true).await.unwrap();
    assert!(ctl.token_actor(&third.token, None).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_provider_admins_make_provider_admin_tokens_and_they_act_as_one() {
    let stack = start(&sqlite_url("provider-tokens"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let invited = ctl.user_invite(admin, None, "tara", "tenant-admin").await.unwrap();
    let tara = sign_in(&stack, "tara", &invited.one_time_password).await;
    let refused = ctl.api_token_create(&op(&tara), "ops", "provider-admin", 1).await.unwrap_err();
    assert_eq!(refused.status_code(), 403, "{refused}");

    // A tenant-admin token of the provider admin is not a provider admin.
    let plain = ctl.api_token_create(admin, "plain", "tenant-admin", 1).await.unwrap();
    let plain = ctl.token_actor(&plain.token, None).await.unwrap().unwrap();
    assert_eq!(ctl.tenant_list(&plain).await.unwrap_err().status_code(), 403);
    assert_eq!(ctl.tenant_create(&plain, "nope").await.unwrap_err().status_code(), 403);

    let made = ctl.api_token_create(admin, "ops", "provider-admin", 1).await.unwrap();
    assert!(made.view.provider_admin);
    assert!(ctl.api_token_list(admin).await.unwrap().iter().any(|t| t.provider_admin));
    let ops = ctl.token_actor(&made.token, None).await.unwrap().unwrap();
    ctl.tenant_create(&ops, "by-token").await.expect("acts as provider admin");
    // Only while its user still is one.
    {
        use portal_controller::datastore::entity::user;
        use portal_types::ids::GenericUuid;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        user::Entity::update_many()
            .col_expr(user::Column::ProviderAdmin, false.into())
            .filter(user::Column::Id.eq(stack.admin.user_id.into_untyped_uuid()))
            .exec(ctl.datastore().connection())
            .await
            .unwrap();
    }
    let ops = ctl.token_actor(&made.token, None).await.unwrap().unwrap();
    assert_eq!(ctl.tenant_create(&ops, "no-more").await.unwrap_err().status_code(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_two_tenants_acts_in_the_one_they_choose() {
    let stack = start(&sqlite_url("switch"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let invited = ctl.user_invite(admin, None, "sam", "viewer").await.unwrap();
    let lab = ctl.tenant_create(admin, "lab").await.unwrap();
    ctl.user_add_to_tenant(admin, lab.id, "sam", "tenant-admin").await.unwrap();
    let again = ctl.user_add_to_tenant(admin, lab.id, "sam", "member").await.unwrap_err();
    assert_eq!(again.status_code(), 409);

    let sam = sign_in(&stack, "sam", &invited.one_time_password).await;
    let me = ctl.me(&op(&sam)).await.unwrap();
    let names: Vec<_> = me.memberships.iter().map(|m| m.tenant_name.as_str()).collect();
    assert_eq!(names, ["default", "lab"]);
    // Sam acts in "default" as a viewer unless he picks "lab", where he is tenant admin.
    assert_eq!(sam.tenant_name, "default");
    let in_lab = ctl.actor_in(sam.user_id, Some(lab.id)).await.unwrap().unwrap();
    assert_eq!((in_lab.tenant_name.as_str(), in_lab.role.as_str()), ("lab", "tenant-admin"));
    ctl.instance_create(&op(&in_lab), &launch("lab-vm", "c8m32")).await.unwrap();
    assert_eq!(ctl.instance_list(&op(&in_lab)).await.unwrap().len(), 1);
    assert!(ctl.instance_list(&op(&sam)).await.unwrap().is_empty(), "default sees none of lab's");
    // A tenant he is not in falls back to his first tenant.
    let other = ctl.tenant_create(admin, "other").await.unwrap();
    let fallback = ctl.actor_in(sam.user_id, Some(other.id)).await.unwrap().unwrap();
    assert_eq!(fallback.tenant_name, "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invited_users_choose_their_own_password_first_and_their_sessions_end() {
    let stack = start(&sqlite_url("password"), 1).await;
    let ctl = &stack.controller;
    let invited = ctl.user_invite(&op(&stack.admin), None, "pat", "member").await.unwrap();
    let first = invited.one_time_password.as_str();
    let user = ctl.login("pat", first, None).await.unwrap();
    let pat = ctl.actor(user).await.unwrap().unwrap();
    // With the password the admin saw, pat may only read their account and change it.
    assert!(pat.must_change_password);
    let refused = ctl.instance_list(&op(&pat)).await.unwrap_err();
    assert_eq!(refused.status_code(), 403);
    assert!(refused.to_string().contains("choose your own password"), "{refused}");
    let token = ctl.api_token_create(&op(&pat), "sneaky", "member", 30).await.unwrap_err();
    assert_eq!(token.status_code(), 403, "no API token before choosing a password");
    assert!(ctl.me(&op(&pat)).await.unwrap().must_change_password);
    let store = ctl.datastore();
    let record = session_row(pat.user_id, None);
    assert!(store.session_create(record.clone()).await.unwrap());

    // Each mistake is one sentence, and changes nothing.
    let new = "correct horse battery";
    for (current, new, repeat, says) in [
        ("wrong-password", new, new, "current password is wrong"),
        (first, new, "correct horse batterY", "differ"),
        (first, "short", "short", "12 to 256 characters"),
        (first, first, first, "is the current one"),
    ] {
        let err = ctl.password_change(&op(&pat), current, new, repeat).await.unwrap_err();
        assert_eq!(err.status_code(), 400, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    assert_eq!(
        ctl.password_change(&OpContext::anonymous(), first, new, new)
            .await
            .unwrap_err()
            .status_code(),
        401
    );
    assert!(store.session_load(&record.id).await.unwrap().is_some(), "nothing changed yet");

    ctl.password_change(&op(&pat), first, new, new).await.unwrap();
    assert!(store.session_load(&record.id).await.unwrap().is_none(), "pat's other sessions ended");
    assert_eq!(ctl.login("pat", first, None).await.unwrap_err(), Error::BadCredentials);
    let pat = sign_in(&stack, "pat", new).await;
    assert!(!pat.must_change_password);
    assert!(ctl.instance_list(&op(&pat)).await.unwrap().is_empty());
    let audit =
        ctl.audit_list(&op(&stack.admin), Some("account."), None, &newest()).await.unwrap().items;
    assert_eq!(audit.iter().filter(|e| e.outcome == "ok").count(), 1);
}

/// A tenant admin cannot disable or change the role of a user who also belongs to another
/// tenant, nor of a provider admin (who would otherwise be locked out for good); a provider
/// admin can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_cannot_disable_shared_users_or_provider_admins() {
    let stack = start(&sqlite_url("shared-users"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let beta = ctl.tenant_create(admin, "beta").await.unwrap();
    let invited = ctl.user_invite(admin, Some(acme.id), "alice", "tenant-admin").await.unwrap();
    let alice = sign_in(&stack, "alice", &invited.one_time_password).await;
    let carol = ctl.user_invite(admin, Some(acme.id), "carol", "member").await.unwrap();
    ctl.user_add_to_tenant(admin, beta.id, "carol", "member").await.unwrap();
    ctl.user_add_to_tenant(admin, acme.id, "admin", "member").await.unwrap();
    let dave = ctl.user_invite(admin, Some(acme.id), "dave", "member").await.unwrap();

    for target in [carol.user.id, stack.admin.user_id] {
        let disable = ctl.user_set_disabled(&op(&alice), None, target, true).await.unwrap_err();
        assert_eq!(disable.status_code(), 403, "{disable}");
        assert!(disable.to_string().contains("ask your provider"), "{disable}");
        let role = ctl.user_set_role(&op(&alice), None, target, "viewer").await.unwrap_err();
        assert_eq!(role.status_code(), 403, "{role}");
    }
    // The provider admin still signs in; a user of acme alone is alice's to manage.
    ctl.login("admin", PASSWORD, None).await.expect("the provider admin is not locked out");
    ctl.user_set_disabled(&op(&alice), None, dave.user.id, true).await.unwrap();
    ctl.user_set_role(&op(&alice), None, dave.user.id, "viewer").await.unwrap();
    ctl.user_set_disabled(admin, Some(acme.id), carol.user.id, true).await.unwrap();
}

/// A revoked session stays revoked: a request of the same session that was in flight
/// cannot write it back, and a copy of its data no longer signs anyone in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_cannot_be_written_back() {
    let stack = start(&sqlite_url("revoked-session"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let invited = ctl.user_invite(admin, None, "erin", "member").await.unwrap();
    let erin = sign_in(&stack, "erin", &invited.one_time_password).await;
    // The session as the web layer stores it at sign-in (user and signed-in time).
    let store: &DataStore = ctl.datastore();
    let signed_in_ms = portal_controller::datastore::now_ms();
    let record = session_row(erin.user_id, Some(signed_in_ms));
    let id = record.id.clone();
    assert!(store.session_create(record).await.unwrap());
    assert!(ctl.session_actor(erin.user_id, None, signed_in_ms, None).await.unwrap().is_some());

    // Erin's role changes (her sessions end) while a request of her session is in flight,
    // which then saves the session it loaded before.
    let in_flight = store.session_load(&id).await.unwrap().expect("loaded before the revocation");
    ctl.user_set_role(admin, None, erin.user_id, "viewer").await.unwrap();
    store.session_save(in_flight.clone()).await.unwrap();
    assert!(
        store.session_load(&id).await.unwrap().is_none(),
        "the deleted session was written back"
    );
    // Even restored by other means, a session from before the revocation is void.
    assert!(store.session_create(in_flight).await.unwrap());
    assert!(ctl.session_actor(erin.user_id, None, signed_in_ms, None).await.unwrap().is_none());
}

/// An API token acts for its user but cannot make more tokens (outliving its own expiry
/// and revocation), end sessions or change the password; a password change revokes the
/// user's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_cannot_manage_tokens_sessions_or_passwords() {
    let stack = start(&sqlite_url("token-limits"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let invited = ctl.user_invite(admin, None, "fay", "member").await.unwrap();
    let fay = sign_in(&stack, "fay", &invited.one_time_password).await;
    let made = ctl.api_token_create(&op(&fay), "ci", "member", 30).await.unwrap();
    let token = ctl.token_actor(&made.token, None).await.unwrap().expect("token acts");
    assert!(ctl.instance_list(&token).await.is_ok());
    let more = ctl.api_token_create(&token, "more", "member", 365).await.unwrap_err();
    assert_eq!(more.status_code(), 403, "{more}");
    assert!(more.to_string().contains("API token cannot"), "{more}");
    let revoke = ctl.api_token_revoke(&token, made.view.id).await.unwrap_err();
    assert_eq!(revoke.status_code(), 403);
    let mine = own(&invited.one_time_password);
    let change = ctl.password_change(&token, &mine, "another-password-1", "another-password-1");
    assert_eq!(change.await.unwrap_err().status_code(), 403);

    ctl.password_change(&op(&fay), &mine, "another-password-1", "another-password-1")
        .await
        .unwrap();
    assert!(ctl.token_actor(&made.token, None).await.unwrap().is_none(), "revoked by the change");
}

/// A new tenant gets the provider's default quotas, never "no limit": without a default or
/// a limit of its own a resource allows nothing; only an explicit "unlimited" lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tenants_get_default_quotas_and_a_missing_limit_allows_nothing() {
    use portal_types::params::QuotaLimit;
    let stack = start(&sqlite_url("default-quotas"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let gpus = "gpus:H100-SXM5-80GB";
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let quota = ctl.quota_get(admin, Some(acme.id)).await.unwrap();
    let line = quota.lines.iter().find(|l| l.resource == gpus).expect("a GPU default");
    assert_eq!((line.limit, line.default), (Some(8), true));
    let invited = ctl.user_invite(admin, Some(acme.id), "gil", "member").await.unwrap();
    let gil = sign_in(&stack, "gil", &invited.one_time_password).await;

    // One member cannot take the fleet: 8 GPUs by default.
    ctl.instance_create(&op(&gil), &launch("one-node", "h100x8")).await.unwrap();
    let more = ctl.instance_create(&op(&gil), &launch("two-nodes", "h100x1")).await.unwrap_err();
    assert!(more.to_string().contains("quota of 8"), "{more}");

    // No default for GPUs: a tenant without a limit of its own gets none.
    ctl.quota_default_set(admin, gpus, QuotaLimit::Default).await.unwrap();
    let none = ctl.instance_create(&op(&gil), &launch("none", "h100x1")).await.unwrap_err();
    assert!(none.to_string().contains("quota of 0"), "{none}");
    // An explicit unlimited, and the tenant's own limit over a default.
    ctl.quota_set(admin, acme.id, gpus, QuotaLimit::Unlimited).await.unwrap();
    ctl.instance_create(&op(&gil), &launch("more", "h100x1")).await.unwrap();
    ctl.quota_default_set(admin, "instances", QuotaLimit::Max(1)).await.unwrap();
    let capped = ctl.instance_create(&op(&gil), &launch("capped", "c8m32")).await.unwrap_err();
    assert!(capped.to_string().contains("quota of 1"), "{capped}");
    ctl.quota_set(admin, acme.id, "instances", QuotaLimit::Max(5)).await.unwrap();
    ctl.instance_create(&op(&gil), &launch("allowed", "c8m32")).await.unwrap();
    // Only provider admins see and change the defaults.
    assert_eq!(ctl.quota_default_list(&op(&gil)).await.unwrap_err().status_code(), 403);
    let set = ctl.quota_default_set(&op(&gil), gpus, QuotaLimit::Unlimited).await.unwrap_err();
    assert_eq!(set.status_code(), 403);
}

/// A provider admin's changes to a tenant are filed under that tenant: its tenant admin sees
/// them, another tenant's admin does not, and a refused attempt on another tenant stays with
/// the one who tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_admins_change_to_a_tenant_is_in_that_tenants_audit_log() {
    use portal_types::params::QuotaLimit;

    let stack = start(&sqlite_url("audit-tenant"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let globex = ctl.tenant_create(admin, "globex").await.unwrap();
    let a = ctl.user_invite(admin, Some(acme.id), "alice", "tenant-admin").await.unwrap();
    let alice = sign_in(&stack, "alice", &a.one_time_password).await;
    let g = ctl.user_invite(admin, Some(globex.id), "gary", "tenant-admin").await.unwrap();
    let gary = sign_in(&stack, "gary", &g.one_time_password).await;

    ctl.quota_set(admin, acme.id, "instances", QuotaLimit::Max(3)).await.unwrap();
    let bob = ctl.user_invite(admin, Some(acme.id), "bob", "viewer").await.unwrap();
    ctl.user_set_role(admin, Some(acme.id), bob.user.id, "member").await.unwrap();
    ctl.user_set_disabled(admin, Some(acme.id), bob.user.id, true).await.unwrap();
    ctl.tenant_set_suspended(admin, acme.id, true).await.unwrap();
    ctl.tenant_set_suspended(admin, acme.id, false).await.unwrap();
    // Gary's refused attempt on acme is not acme's business: it stays in globex's log.
    let refused = ctl.user_invite(&op(&gary), Some(acme.id), "mallory", "viewer").await;
    assert_eq!(refused.unwrap_err().status_code(), 404);

    let by_admin = |entries: &[portal_types::views::AuditEntry]| -> Vec<String> {
        entries.iter().filter(|e| e.actor == "admin").map(|e| e.action.clone()).collect()
    };
    let alices = ctl.audit_list(&op(&alice), None, None, &newest()).await.unwrap().items;
    let seen = by_admin(&alices);
    for action in [
        "tenant.create",
        "user.invite",
        "quota.set",
        "user.set_role",
        "user.disable",
        "tenant.suspend",
        "tenant.resume",
    ] {
        assert!(seen.iter().any(|a| a == action), "alice misses {action}: {seen:?}");
    }
    assert!(alices.iter().all(|e| e.actor != "gary"), "{alices:?}");
    let garys = ctl.audit_list(&op(&gary), None, None, &newest()).await.unwrap().items;
    assert!(
        garys.iter().all(|e| !e.object_id.starts_with(&acme.id.to_string())
            && e.object_id != "alice"
            && e.object_id != "bob"),
        "gary sees acme's entries: {garys:?}"
    );
    assert!(garys.iter().any(|e| e.actor == "gary" && e.object_id == "mallory"));
    // The provider admin still sees everything.
    let all = ctl.audit_list(admin, Some("quota.set"), None, &newest()).await.unwrap().items;
    assert_eq!(all.len(), 1);
}

/// The audit log is read a page at a time, cut in the database: walking its pages sees every
/// entry once, newest first (entries of the same millisecond by id), with the filters and a
/// tenant admin's scope applied, also when entries are written during the walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pages_walk_the_log_once_newest_first() {
    audit_pages(&sqlite_url("audit-pages")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_pages_walk_the_log_once_newest_first_on_postgres() {
    let Some(url) = postgres_url("audit_pages").await else { return };
    audit_pages(&url).await;
}

async fn audit_pages(url: &str) {
    use portal_controller::datastore::entity::audit_log;
    use portal_types::ids::GenericUuid;
    use portal_types::page::PageQuery;
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let ctl = portal_controller::Controller::open(&portal_controller::ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..portal_controller::ControllerConfig::new(url)
    })
    .await
    .expect("controller opens");
    let admin_id = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin_actor = ctl.actor(admin_id).await.unwrap().unwrap();
    let admin = &op(&admin_actor);
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let alice = member(&ctl, &admin_actor, acme.id, "alice", "tenant-admin").await;

    // 257 entries, seven to a millisecond, so that pages end inside a millisecond; every
    // third is acme's, every other one by "walker".
    let base = 1_700_000_000_000_i64;
    let row = |i: i64, at: i64, tenant: uuid::Uuid| audit_log::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        at: Set(at),
        actor_id: Set(None),
        actor_name: Set(if i % 2 == 0 { "walker" } else { "other" }.to_owned()),
        tenant_id: Set(Some(tenant)),
        action: Set(format!("walk.{}", if i % 2 == 0 { "even" } else { "odd" })),
        object_kind: Set("test".to_owned()),
        object_id: Set(i.to_string()),
        client_addr: Set(String::new()),
        outcome: Set("ok".to_owned()),
    };
    let (home, acme_id) = (admin_actor.tenant_id.into_untyped_uuid(), acme.id.into_untyped_uuid());
    let rows: Vec<audit_log::ActiveModel> =
        (0..257).map(|i| row(i, base + i / 7, if i % 3 == 0 { acme_id } else { home })).collect();
    // Newest first: by time, then by id, both descending.
    struct Written {
        at: i64,
        id: uuid::Uuid,
        object_id: String,
        acme: bool,
        walker: bool,
    }
    let mut expected: Vec<Written> = rows
        .iter()
        .map(|r| {
            let object_id = r.object_id.clone().unwrap();
            let i: i64 = object_id.parse().unwrap();
            let (at, id) = (r.at.clone().unwrap(), r.id.clone().unwrap());
            Written { at, id, object_id, acme: i % 3 == 0, walker: i % 2 == 0 }
        })
        .collect();
    expected.sort_by_key(|w| std::cmp::Reverse((w.at, w.id)));
    let db = ctl.datastore().connection();
    for chunk in rows.chunks(100) {
        audit_log::Entity::insert_many(chunk.to_vec()).exec(db).await.unwrap();
    }

    // Walks every page of `limit` entries; an entry newer than all of them is written after
    // the first page, and must not show up (nor shift anything).
    let walk = async |opctx: &OpContext, action: &str, actor: Option<&str>, limit: u32| {
        let mut seen = Vec::new();
        let mut page = PageQuery::first(limit);
        let mut pages = 0;
        loop {
            let got = ctl.audit_list(opctx, Some(action), actor, &page).await.unwrap();
            assert!(got.items.len() <= limit as usize);
            seen.extend(got.items.into_iter().map(|e| e.object_id));
            pages += 1;
            if pages == 1 {
                audit_log::Entity::insert(row(1_000 + pages, base + 10_000, home))
                    .exec(db)
                    .await
                    .unwrap();
            }
            match got.next_page_token {
                Some(token) => page.page_token = Some(token),
                None => return (seen, pages),
            }
        }
    };
    let ids = |keep: &dyn Fn(&Written) -> bool| -> Vec<String> {
        expected.iter().filter(|w| keep(w)).map(|w| w.object_id.clone()).collect()
    };

    let (seen, pages) = walk(admin, "walk.", None, 10).await;
    assert_eq!(seen, ids(&|_| true), "every entry once, newest first");
    assert_eq!(pages, 26);
    let (seen, _) = walk(admin, "walk.even", None, 7).await;
    assert_eq!(seen, ids(&|w| w.walker));
    let (seen, _) = walk(admin, "walk.", Some("walker"), 1000).await;
    assert_eq!(seen, ids(&|w| w.walker));
    // Acme's tenant admin walks acme's entries only.
    let (seen, _) = walk(&op(&alice), "walk.", None, 9).await;
    assert_eq!(seen, ids(&|w| w.acme));

    // A full last page says there is no next one; bad tokens and limits are sentences.
    let evens = async |limit| {
        ctl.audit_list(admin, Some("walk.even"), None, &PageQuery::first(limit)).await.unwrap()
    };
    assert_eq!(evens(129).await.next_page_token, None, "129 even entries");
    assert!(evens(128).await.next_page_token.is_some());
    for bad in ["nope", "12.not-a-uuid", ""] {
        let page = PageQuery { limit: None, page_token: Some(bad.to_owned()) };
        let err = ctl.audit_list(admin, None, None, &page).await.unwrap_err();
        assert_eq!(err.status_code(), 400, "{bad}: {err}");
    }
    let err = ctl.audit_list(admin, None, None, &PageQuery::first(0)).await.unwrap_err();
    assert_eq!(err.status_code(), 400);
}

/// A session row as the web layer (`portal-web`) stores one for `user`, valid for an hour.
fn session_row(user: portal_types::ids::UserUuid, signed_in_ms: Option<i64>) -> SessionRow {
    let user = portal_types::ids::GenericUuid::into_untyped_uuid(user);
    let mut data = serde_json::json!({ "user_id": user.to_string() });
    if let Some(ms) = signed_in_ms {
        data["signed_in_at_ms"] = serde_json::json!(ms);
    }
    SessionRow {
        id: uuid::Uuid::new_v4().to_string(),
        data: serde_json::to_vec(&data).unwrap(),
        expires_at: portal_controller::datastore::now_ms() + 3_600_000,
        user_id: Some(user),
    }
}
