//! The WASM entry point: hydrates the server-rendered page into the live app.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // What `leptos::mount::hydrate_lazy` does, and then marks the document: a page split out
    // of the bundle (app/src/pages/lazy.rs) is hydrated only once its WASM chunk has arrived.
    // Browser tests (and people) wait for `<body data-hydrated>` to tell a live form from a
    // server-rendered one that would still post natively.
    wasm_bindgen_futures::spawn_local(async {
        let body = leptos::prelude::document().body().expect("the page has a <body>");
        leptos::mount::hydrate_from_async(body.clone(), portal_app::App).await.forget();
        let _ = body.set_attribute("data-hydrated", "true");
    });
}
