//! "SSH keys": the signed-in user's public keys in this tenant (name, type, fingerprint,
//! comment, when added), a form to add one and a button to delete each. Every role has it;
//! viewers keep keys for when they may launch.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use portal_types::params;
use portal_types::views::Me;

use crate::api::{SshKeyCreate as AddKey, SshKeyDelete, ssh_key_list};

#[component]
pub fn KeysPage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <Keys me /> }.into_any())
}

#[component]
fn Keys(me: Me) -> impl IntoView {
    let add = ServerAction::<AddKey>::new();
    let delete = ServerAction::<SshKeyDelete>::new();
    let keys = crate::json::resource(
        move || (add.version().get(), delete.version().get()),
        |_| ssh_key_list(),
    );
    let name = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    // Refused in the browser before anything is sent: a private key pasted by mistake never
    // leaves the computer.
    let refused = RwSignal::new(None::<String>);
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let create =
            params::SshKeyCreate { name: name.get_untracked(), public_key: text.get_untracked() };
        match create.validate() {
            Err(e) => refused.set(Some(e.to_string())),
            Ok(()) => {
                refused.set(None);
                add.dispatch(AddKey { create });
            }
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = add.value().get() {
            name.set(String::new());
            text.set(String::new());
        }
    });
    let add_error = move || {
        refused.get().or_else(|| add.value().get().and_then(|r| r.err()).map(|e| e.to_string()))
    };
    let delete_error = move || delete.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    view! {
        <main class="dashboard">
            <section class="panel" data-testid="keys">
                <h2>"SSH keys"</h2>
                <p class="muted">"Your public keys in " <strong>{me.tenant_name.clone()}</strong>
                    ", for signing in to the VMs you launch. At most 50; ed25519, ECDSA or RSA of 2048 bits or more."</p>
                <Show when=move || delete_error().is_some()>
                    <p class="error" role="alert" data-testid="keys-error">{delete_error}</p>
                </Show>
                <Transition fallback=|| ()>
                    {move || keys.get().map(|list| view! {
                        <table class="instances" data-testid="key-table">
                            <thead><tr><th>"Name"</th><th>"Type"</th><th>"Fingerprint"</th><th>"Comment"</th><th>"Added"</th><th></th></tr></thead>
                            <tbody>
                                {list.unwrap_or_default().into_iter().map(|k| {
                                    let id = k.id;
                                    view! {
                                        <tr data-testid="key-row" data-name=k.name.clone()>
                                            <td class="name">{k.name.clone()}</td>
                                            <td>{k.algorithm.clone()}</td>
                                            <td><code class="fingerprint" data-testid="key-fingerprint">{k.fingerprint.clone()}</code></td>
                                            <td class="muted">{k.comment.clone()}</td>
                                            <td class="muted">{k.created_at.replace('T', " ").chars().take(16).collect::<String>()}</td>
                                            <td>
                                                <button class="danger" on:click=move |_| { delete.dispatch(SshKeyDelete { id }); }>"Delete"</button>
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
                <h2>"Add a key"</h2>
                // Before the page is interactive the form posts to the server function itself,
                // which checks the same and more.
                <form method="post" action=AddKey::url() class="launch" data-testid="key-form" on:submit=on_submit>
                    <label>"Name"
                        <input type="text" name="create[name]" required maxlength="64" placeholder="laptop"
                            data-testid="key-name"
                            prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                    </label>
                    <label class="wide">"Public key"
                        <textarea name="create[public_key]" required rows="3" class="key" spellcheck="false"
                            placeholder="ssh-ed25519 AAAA… you@laptop (the one line of ~/.ssh/id_ed25519.pub)"
                            data-testid="key-text"
                            prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                    </label>
                    <button type="submit" class="primary" data-testid="key-add">"Add key"</button>
                </form>
                <Show when=move || add_error().is_some()>
                    <p class="error" role="alert" data-testid="key-error">{add_error}</p>
                </Show>
            </section>
        </main>
    }
}
