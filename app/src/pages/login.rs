//! Sign-in with a local account.

use leptos::prelude::*;

use crate::api::Login;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let error = move || login.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    view! {
        <main class="login">
            <div class="login-card">
                <h1>"GPU Cloud"</h1>
                <p class="muted">"Sign in to launch and manage GPU instances."</p>
                <ActionForm action=login>
                    <label>
                        "Username" <input type="text" name="username" autocomplete="username" required data-testid="login-username" />
                    </label>
                    <label>
                        "Password" <input type="password" name="password" autocomplete="current-password" required data-testid="login-password" />
                    </label>
                    <button type="submit" class="primary" disabled=move || login.pending().get() data-testid="login-submit">
                        "Sign in"
                    </button>
                </ActionForm>
                <Show when=move || error().is_some()>
                    <p class="error" role="alert" data-testid="login-error">{error}</p>
                </Show>
            </div>
        </main>
    }
}
