//! Provider-admin page `/admin/identity`: OpenID Connect identity providers and their group →
//! role rules. The server functions live here, beside the page that calls them, plus the
//! public list of sign-in buttons the sign-in page shows.

use leptos::prelude::*;
use portal_types::Error;
use serde::{Deserialize, Serialize};

use crate::form::{FormAction, PostForm};
#[cfg(feature = "ssr")]
use crate::ssr::{context, fail};

/// An identity provider as the admin page shows it (never the client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRow {
    pub name: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub tenant: String,
    pub email_domains: String,
    pub group_claim: String,
    /// `group=role, …`
    pub role_rules: String,
    pub default_role: String,
}

/// One "Sign in with …" button: names only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInButton {
    pub name: String,
    pub display_name: String,
}

#[server(prefix = "/api/fn", endpoint = "identity_provider_list")]
pub async fn identity_provider_list() -> Result<Vec<ProviderRow>, Error> {
    let (ctl, _, opctx) = context().await?;
    let list = ctl.identity_provider_list(&opctx).await.map_err(fail)?;
    Ok(list
        .into_iter()
        .map(|p| ProviderRow {
            role_rules: p
                .role_rules
                .iter()
                .map(|r| format!("{}={}", r.group, r.role))
                .collect::<Vec<_>>()
                .join(", "),
            name: p.name,
            display_name: p.display_name,
            issuer_url: p.issuer_url,
            client_id: p.client_id,
            tenant: p.tenant,
            email_domains: p.email_domains,
            group_claim: p.group_claim,
            default_role: p.default_role,
        })
        .collect())
}

/// The "add provider" form, as its fields are named (`form[name]`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderForm {
    pub name: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub tenant: String,
    pub email_domains: String,
    pub group_claim: String,
    /// One `group=role` per line (or comma-separated).
    pub role_rules: String,
    pub default_role: String,
}

#[server(prefix = "/api/fn", endpoint = "identity_provider_create")]
pub async fn identity_provider_create(form: ProviderForm) -> Result<(), Error> {
    use portal_controller::oidc::{ProviderCreate, parse_role_rules};
    let (ctl, _, opctx) = context().await?;
    let create = ProviderCreate {
        role_rules: parse_role_rules(&form.role_rules).map_err(fail)?,
        name: form.name,
        display_name: form.display_name,
        issuer_url: form.issuer_url,
        client_id: form.client_id,
        client_secret: form.client_secret,
        tenant: form.tenant,
        email_domains: form.email_domains,
        group_claim: form.group_claim,
        default_role: form.default_role,
    };
    ctl.identity_provider_create(&opctx, &create).await.map_err(fail)?;
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "identity_provider_delete")]
pub async fn identity_provider_delete(name: String) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.identity_provider_delete(&opctx, &name).await.map_err(fail)
}

/// Public on purpose: visitors who are not signed in need the buttons.
#[server(prefix = "/api/fn", endpoint = "identity_provider_buttons")]
pub async fn identity_provider_buttons() -> Result<Vec<SignInButton>, Error> {
    let (ctl, _, _) = context().await?;
    let buttons = ctl.identity_provider_buttons().await.map_err(fail)?;
    Ok(buttons
        .into_iter()
        .map(|b| SignInButton { name: b.name, display_name: b.display_name })
        .collect())
}

/// Public on purpose: why this browser's last single sign-on was refused (`reference` from
/// the sign-in page's URL).
#[server(prefix = "/api/fn", endpoint = "sso_refusal")]
pub async fn sso_refusal(reference: String) -> Result<Option<String>, Error> {
    let (_, session, _) = context().await?;
    portal_web::oidc::refusal(&session, &reference).await.map_err(fail)
}

#[component]
pub fn IdentityPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <Identity /> }.into_any())
}

#[component]
fn Identity() -> impl IntoView {
    let create = FormAction::<IdentityProviderCreate>::new();
    let delete = ServerAction::<IdentityProviderDelete>::new();
    let providers = crate::json::resource(
        move || (create.version().get(), delete.version().get()),
        |_| identity_provider_list(),
    );
    let error = move || {
        create
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| delete.value().get().and_then(Result::err))
            .map(|e| e.to_string())
    };
    view! {
        <main class="dashboard">
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="idp-error">{error}</p>
            </Show>
            <section class="panel">
                <h2>"Identity providers"</h2>
                <p class="muted">
                    "Users sign in with their company's OpenID Connect provider and land in its tenant; "
                    "their groups map to roles. Register the redirect URL "
                    <code>"<portal>/auth/oidc/callback"</code> " at the provider."
                </p>
                <Transition fallback=|| ()>
                    {move || providers.get().map(|p| match p {
                        Ok(list) => view! { <ProviderTable list delete /> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    })}
                </Transition>
                <PostForm action=create attr:class="launch" attr:data-testid="idp-form">
                    <label>"Name" <input type="text" name="form[name]" required placeholder="corp-sso" /></label>
                    <label>"Button text" <input type="text" name="form[display_name]" placeholder="Corp SSO" /></label>
                    <label>"Issuer URL" <input type="url" name="form[issuer_url]" required placeholder="https://login.example.com" /></label>
                    <label>"Client ID" <input type="text" name="form[client_id]" required /></label>
                    <label>"Client secret" <input type="password" name="form[client_secret]" autocomplete="off" /></label>
                    <label>"Tenant" <input type="text" name="form[tenant]" required value="default" /></label>
                    <label>"E-mail domains" <input type="text" name="form[email_domains]" placeholder="empty: any; or example.com, example.org" /></label>
                    <label>"Group claim" <input type="text" name="form[group_claim]" value="groups" /></label>
                    <label>"Role rules" <textarea name="form[role_rules]" rows="3" placeholder="ml-team=member\nplatform=tenant-admin"></textarea></label>
                    <label>"Default role"
                        <select name="form[default_role]">
                            <option value="viewer">"viewer"</option>
                            <option value="member">"member"</option>
                            <option value="tenant-admin">"tenant-admin"</option>
                            <option value="none">"none: refuse users no rule matches"</option>
                        </select>
                    </label>
                    <button type="submit" class="primary">"Add provider"</button>
                </PostForm>
            </section>
        </main>
    }
}

#[component]
fn ProviderTable(
    list: Vec<ProviderRow>,
    delete: ServerAction<IdentityProviderDelete>,
) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="empty" data-testid="idp-empty">"No identity providers yet."</p> }
            .into_any();
    }
    view! {
        <table class="instances" data-testid="idp-table">
            <thead>
                <tr><th>"Name"</th><th>"Issuer"</th><th>"Client"</th><th>"Tenant"</th><th>"Domains"</th><th>"Roles"</th><th></th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|p| {
                    let name = p.name.clone();
                    // "none" admits only users a rule matches.
                    let otherwise = if p.default_role == "none" { "refused" } else { p.default_role.as_str() };
                    let roles = if p.role_rules.is_empty() {
                        format!("everyone {otherwise}")
                    } else {
                        format!("{} (else {otherwise}) from {}", p.role_rules, p.group_claim)
                    };
                    view! {
                        <tr data-testid="idp-row" data-name=p.name.clone()>
                            <td class="name">{p.display_name.clone()} <span class="muted">" (" {p.name.clone()} ")"</span></td>
                            <td>{p.issuer_url.clone()}</td>
                            <td>{p.client_id.clone()}</td>
                            <td>{p.tenant.clone()}</td>
                            <td>{if p.email_domains.is_empty() { "any".to_owned() } else { p.email_domains.clone() }}</td>
                            <td>{roles}</td>
                            <td>
                                <button class="danger" data-testid="idp-delete" on:click=move |_| {
                                    delete.dispatch(IdentityProviderDelete { name: name.clone() });
                                }>"Remove"</button>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
