//! "My account": who I am, in which tenant with which role, my sessions, my password and my
//! API tokens.

use leptos::prelude::*;
use portal_types::views::Me;

use crate::api::{
    ApiTokenCreate, ApiTokenRevoke, PasswordChange, SessionEnd, api_token_list, session_list,
};
use crate::form::{FormAction, PostForm};

#[component]
pub fn AccountPage() -> impl IntoView {
    super::guarded_account(|me| view! { <Account me /> }.into_any())
}

#[component]
fn Account(me: Me) -> impl IntoView {
    let create = FormAction::<ApiTokenCreate>::new();
    let revoke = ServerAction::<ApiTokenRevoke>::new();
    let end = ServerAction::<SessionEnd>::new();
    let change = FormAction::<PasswordChange>::new();
    let sessions = crate::json::resource(
        move || (end.version().get(), change.version().get()),
        |_| session_list(),
    );
    let password_error = move || change.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let password_changed = move || change.value().get().is_some_and(|r| r.is_ok());
    let must_change = me.must_change_password;
    let provider_admin = me.provider_admin;
    let tokens = crate::json::resource(
        move || (create.version().get(), revoke.version().get()),
        |_| api_token_list(),
    );
    let error = move || {
        create
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| revoke.value().get().and_then(|r| r.err()))
            .map(|e| e.to_string())
    };
    let created = move || create.value().get().and_then(|r| r.ok());
    view! {
        <main class="dashboard">
            <section class="panel" data-testid="account">
                <h2>{me.username.clone()}</h2>
                <p>"Tenant " <strong>{me.tenant_name.clone()}</strong> " · role " <strong>{me.role.as_str()}</strong>
                    {me.provider_admin.then_some(" · provider admin")}</p>
            </section>
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="account-error">{error}</p>
            </Show>
            {move || created().map(|c| view! {
                <p class="panel" data-testid="token-created">
                    "New token " <strong>{c.view.name.clone()}</strong> " (shown only now): "
                    <code data-testid="token-secret">{c.token.clone()}</code>
                </p>
            })}
            <section class="panel">
                <h2>"Sessions"</h2>
                <Transition fallback=|| ()>
                    {move || sessions.get().map(|list| view! {
                        <table class="instances" data-testid="session-table">
                            <thead><tr><th>"Session"</th><th>"Ends if unused"</th><th></th></tr></thead>
                            <tbody>
                                {list.unwrap_or_default().into_iter().map(|s| {
                                    let label = s.label.clone();
                                    view! {
                                        <tr data-testid="session-row">
                                            <td><code>{s.label.clone()}</code>{s.current.then_some(" (this browser)")}</td>
                                            <td class="muted">{s.expires_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                            <td>
                                                <button class="danger" on:click=move |_| { end.dispatch(SessionEnd { label: label.clone() }); }>"End"</button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                </Transition>
            </section>
            <section class="panel">
                <h2>"Password"</h2>
                <p class="muted">"Changing it signs out your other sessions and revokes your API tokens."</p>
                <Show when=move || must_change && !password_changed()>
                    <p class="notice" data-testid="password-required">
                        "Choose your own password to continue: the one you were given was for signing in once."
                    </p>
                </Show>
                <PostForm action=change attr:class="launch" attr:data-testid="password-form">
                    <label>"Current password" <input type="password" name="current" required autocomplete="current-password" /></label>
                    <label>"New password" <input type="password" name="new" required minlength="12" autocomplete="new-password" /></label>
                    <label>"New password again" <input type="password" name="repeat" required minlength="12" autocomplete="new-password" /></label>
                    <button type="submit" class="primary">"Change password"</button>
                </PostForm>
                <Show when=move || password_error().is_some()>
                    <p class="error" role="alert" data-testid="password-error">{password_error}</p>
                </Show>
                <Show when=password_changed>
                    <p data-testid="password-changed">"Password changed. Your other sessions were signed out and your API tokens revoked. "
                        <a href="/" data-testid="continue">"Continue to the dashboard"</a></p>
                </Show>
            </section>
            <section class="panel">
                <h2>"API tokens"</h2>
                <p class="muted">"Send a token as " <code>"Authorization: Bearer <token>"</code> " to call the API as yourself, in this tenant, with at most the token's role. "
                    <a href="/api/v1/docs" rel="external" data-testid="api-docs">"API reference"</a></p>
                <Transition fallback=|| ()>
                    {move || tokens.get().map(|list| view! {
                        <table class="instances" data-testid="token-table">
                            <thead><tr><th>"Name"</th><th>"Starts with"</th><th>"Role"</th><th>"Expires"</th><th>"Last used"</th><th></th></tr></thead>
                            <tbody>
                                {list.unwrap_or_default().into_iter().map(|t| {
                                    let id = t.id;
                                    view! {
                                        <tr data-testid="token-row" data-name=t.name.clone()>
                                            <td class="name">{t.name.clone()}</td>
                                            <td><code>{t.prefix.clone()}</code></td>
                                            <td>{if t.provider_admin { "provider-admin" } else { t.role.as_str() }}</td>
                                            <td class="muted">{t.expires_at.chars().take(10).collect::<String>()}</td>
                                            <td class="muted">{t.last_used_at.clone().map_or_else(|| "never".to_owned(), |u| u.replace('T', " ").chars().take(19).collect())}</td>
                                            <td>
                                                {if t.revoked {
                                                    view! { <span class="muted">"revoked"</span> }.into_any()
                                                } else {
                                                    view! { <button class="danger" on:click=move |_| { revoke.dispatch(ApiTokenRevoke { id }); }>"Revoke"</button> }.into_any()
                                                }}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                </Transition>
                <PostForm action=create attr:class="launch" attr:data-testid="token-form">
                    <label>"Name" <input type="text" name="name" required placeholder="ci-pipeline" /></label>
                    <label>"Role"
                        <select name="role">
                            <option value="viewer">"viewer"</option>
                            <option value="member" selected>"member"</option>
                            <option value="tenant-admin">"tenant-admin"</option>
                            {provider_admin.then(|| view! { <option value="provider-admin">"provider-admin"</option> })}
                        </select>
                    </label>
                    <label>"Days" <input type="number" name="days" value="30" min="1" max="365" class="narrow" /></label>
                    <button type="submit" class="primary">"Create token"</button>
                </PostForm>
            </section>
        </main>
    }
}
