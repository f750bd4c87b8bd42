//! Sign-in with a local account or, one button each, an OpenID Connect identity provider;
//! a refused single sign-on comes back here as `?sso=<reference>` to the reason, which the
//! session keeps.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::Login;
use crate::form::{FormAction, PostForm};
use crate::pages::identity::{identity_provider_buttons, sso_refusal};

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = FormAction::<Login>::new();
    let error = move || login.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let query = use_query_map();
    let refused = crate::json::resource(
        move || query.read().get("sso"),
        |reference| async move {
            match reference {
                Some(reference) => sso_refusal(reference).await.ok().flatten(),
                None => None,
            }
        },
    );
    let providers = crate::json::resource(|| (), |_| identity_provider_buttons());
    view! {
        <main class="login">
            <div class="login-card">
                <h1>"GPU Cloud"</h1>
                <p class="muted">"Sign in to launch and manage GPU instances."</p>
                <PostForm action=login>
                    <label>
                        "Username" <input type="text" name="username" autocomplete="username" required data-testid="login-username" />
                    </label>
                    <label>
                        "Password" <input type="password" name="password" autocomplete="current-password" required data-testid="login-password" />
                    </label>
                    <button type="submit" class="primary" disabled=move || login.pending().get() data-testid="login-submit">
                        "Sign in"
                    </button>
                </PostForm>
                <Show when=move || error().is_some()>
                    <p class="error" role="alert" data-testid="login-error">{error}</p>
                </Show>
                <Transition fallback=|| ()>
                    {move || refused.get().flatten().map(|sentence| view! {
                        <p class="error" role="alert" data-testid="sso-error">{sentence}</p>
                    })}
                </Transition>
                <Transition fallback=|| ()>
                    {move || providers.get().and_then(Result::ok).map(|buttons| buttons.into_iter().map(|b| view! {
                        // rel=external: a full page load to the server route, not client routing.
                        <a class="button sso" rel="external" href=format!("/auth/oidc/{}/login", b.name)
                            data-testid="sso-button" data-name=b.name.clone()>
                            "Sign in with " {b.display_name}
                        </a>
                    }).collect_view())}
                </Transition>
            </div>
        </main>
    }
}
