//! The live status stream in the browser: one `EventSource` on `/api/v1/events`, whose
//! messages patch the page's state without a reload. On the server this renders nothing.

use portal_types::views::LiveEvent;

/// Calls `on_event` for every event, and `on_open` whenever the stream (re)connects so the
/// page can refetch what it may have missed while disconnected, until the calling component
/// is unmounted.
pub fn subscribe(on_event: impl Fn(LiveEvent) + 'static, on_open: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new("/api/v1/events") else { return };
        let on_message =
            Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |msg: web_sys::MessageEvent| {
                if let Some(text) = msg.data().as_string()
                    && let Ok(event) = crate::json::from_text::<LiveEvent>(&text)
                {
                    on_event(event);
                }
            });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_open = Closure::<dyn Fn()>::new(on_open);
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        // The stream lives as long as the component that subscribed: navigating to another
        // page closes it (and frees its callbacks) instead of leaving it open.
        let alive = send_wrapper::SendWrapper::new((source, on_message, on_open));
        leptos::prelude::on_cleanup(move || alive.0.close());
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (on_event, on_open);
    }
}
