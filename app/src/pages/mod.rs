pub mod account;
pub mod admin;
pub mod dashboard;
pub mod identity;
pub mod login;
pub mod tenancy;
pub mod topology;

use leptos::prelude::*;
use leptos_router::components::Redirect;
use portal_types::Error;
use portal_types::views::Me;

use crate::api::get_me;

/// Signs the page in: anonymous visitors go to sign-in, users who must choose their own
/// password to My account, others see `page` or the refusal.
pub(crate) fn guarded(allowed: fn(&Me) -> bool, page: fn(Me) -> AnyView) -> impl IntoView {
    guard(allowed, page, false)
}

/// [`guarded`] for My account, the one page open to users who must choose a password.
pub(crate) fn guarded_account(page: fn(Me) -> AnyView) -> impl IntoView {
    guard(|_| true, page, true)
}

fn guard(allowed: fn(&Me) -> bool, page: fn(Me) -> AnyView, account: bool) -> impl IntoView {
    let me = Resource::new(|| (), |_| get_me());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || me.get().map(|me| match me {
                Ok(me) if me.must_change_password && !account => {
                    view! { <Redirect path="/account" /> }.into_any()
                }
                Ok(me) if allowed(&me) => page(me),
                Ok(_) => view! { <p class="error">"Your role does not allow this page."</p> }.into_any(),
                Err(Error::Unauthenticated) => view! { <Redirect path="/login" /> }.into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
        </Suspense>
    }
}
