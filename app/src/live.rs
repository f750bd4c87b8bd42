//! The live status stream in the browser: one `EventSource` on `/api/v1/events`, whose
//! messages patch the page's state without a reload. On the server this renders nothing.

use portal_types::views::LiveEvent;
#[cfg(any(feature = "hydrate", test))]
use {portal_types::views::InstanceView, serde::Deserialize};

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
                    && let Some(event) = decode(&text)
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

/// One message as `LiveEvent`'s derived `Deserialize` reads it (tagged by its `type` field),
/// without the derive's buffering of the whole message into serde's generic `Content`, which
/// cost the browser bundle a second decoder of `InstanceView`: the tag is read first, then the
/// same text again as the variant's fields (unknown fields, `type` among them, are ignored).
#[cfg(any(feature = "hydrate", test))]
fn decode(text: &str) -> Option<LiveEvent> {
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct BudgetAlert {
        month: String,
        percent: i64,
    }
    let tag: Tag = crate::json::from_text(text).ok()?;
    match tag.kind.as_str() {
        "instance" => crate::json::from_text::<InstanceView>(text)
            .ok()
            .map(|view| LiveEvent::Instance(Box::new(view))),
        "fleet_changed" => Some(LiveEvent::FleetChanged),
        "budget_alert" => crate::json::from_text::<BudgetAlert>(text)
            .ok()
            .map(|b| LiveEvent::BudgetAlert { month: b.month, percent: b.percent }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_types::ids::{GenericUuid, InstanceUuid};
    use portal_types::views::InstanceState;

    /// Every message the server sends reads as the derived `Deserialize` reads it.
    #[test]
    fn decodes_as_the_derived_deserializer() {
        let view = InstanceView {
            id: InstanceUuid::from_untyped_uuid(uuid::Uuid::from_u128(7)),
            name: "train-01".into(),
            instance_type: "h100x8".into(),
            state: InstanceState::Running,
            gpu_count: 8,
            gpu_model: "H100".into(),
            vcpus: 160,
            memory_gib: 1600,
            host_name: Some("su1-h03".into()),
            image: None,
            ssh_keys: vec!["laptop".into()],
            message: Some("booted".into()),
            created_at: "2026-12-03T10:00:00Z".into(),
        };
        let events = [
            LiveEvent::Instance(Box::new(view)),
            LiveEvent::FleetChanged,
            LiveEvent::BudgetAlert { month: "2026-12".into(), percent: 80 },
        ];
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(decode(&text), Some(event.clone()), "{text}");
            assert_eq!(serde_json::from_str::<LiveEvent>(&text).unwrap(), event);
        }
        // Missing optional fields and keys in another order, as the derive accepts them.
        let text = r#"{"id":"00000000-0000-0000-0000-000000000007","name":"a","instance_type":"c8m32",
            "state":"Provisioning","gpu_count":0,"gpu_model":"","vcpus":8,"memory_gib":32,
            "created_at":"t","type":"instance"}"#;
        assert_eq!(decode(text), serde_json::from_str::<LiveEvent>(text).ok());
        assert!(decode(text).is_some());
        for bad in [r#"{"type":"nope"}"#, r#"{"percent":1}"#, "[]", r#"{"type":"budget_alert"}"#] {
            assert_eq!(decode(bad), serde_json::from_str::<LiveEvent>(bad).ok(), "{bad}");
        }
    }
}
