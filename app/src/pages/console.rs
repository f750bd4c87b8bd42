//! The instance page's Console tab: the VM's serial console in an xterm.js terminal, over the
//! WebSocket `/instances/:id/console/ws`. xterm.js (vendored under `/vendor/xterm/`) is
//! loaded when the tab first opens, never with the main bundle. Read-write for those who may
//! power the instance, read-only for viewers (the server drops their keystrokes; the page
//! does not even send them). Server-rendered, the tab says it needs JavaScript.

use leptos::prelude::*;
use portal_types::ids::InstanceUuid;

/// Where the console connection stands.
#[derive(Clone, Debug, PartialEq)]
// Only the browser's session connects or disconnects.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum Status {
    Connecting,
    Connected { read_write: bool },
    Disconnected(String),
}

impl Status {
    fn text(&self) -> String {
        match self {
            Status::Connecting => "connecting…".to_owned(),
            Status::Connected { read_write: true } => "connected, read-write".to_owned(),
            Status::Connected { read_write: false } => {
                "connected, read-only: your role can watch but not type".to_owned()
            }
            Status::Disconnected(reason) => format!("disconnected: {reason}"),
        }
    }

    fn class(&self) -> &'static str {
        match self {
            Status::Connecting => "console-status",
            Status::Connected { .. } => "console-status on",
            Status::Disconnected(_) => "console-status off",
        }
    }
}

#[component]
pub fn ConsoleTab(id: InstanceUuid) -> impl IntoView {
    // Effects run only in the browser: until one has, the page is server-rendered.
    let scripted = RwSignal::new(false);
    Effect::new(move |_| scripted.set(true));
    view! {
        <section class="panel" data-testid="instance-console">
            <Show
                when=move || scripted.get()
                fallback=|| view! {
                    <p class="muted" data-testid="console-needs-js">
                        "The serial console needs JavaScript; enable it to use the console."
                    </p>
                }
            >
                <Terminal id />
            </Show>
        </section>
    }
}

#[component]
fn Terminal(id: InstanceUuid) -> impl IntoView {
    let status = RwSignal::new(Status::Connecting);
    let screen = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    let reconnect = {
        let session = StoredValue::new_local(None::<browser::Session>);
        let connect = move || {
            status.set(Status::Connecting);
            browser::with_xterm(move |loaded| match loaded {
                Err(reason) => {
                    let _ = status.try_set(Status::Disconnected(reason));
                }
                Ok(()) => {
                    // The script may load after the tab was left: then there is nothing to do.
                    let Some(parent) = screen.try_get_untracked().flatten() else { return };
                    // Replacing the old session closes it.
                    let _ = session.try_update_value(|s| *s = None);
                    match browser::Session::open(&parent, id, status) {
                        Ok(opened) => {
                            let _ = session.try_update_value(|s| *s = Some(opened));
                        }
                        Err(reason) => {
                            let _ = status.try_set(Status::Disconnected(reason));
                        }
                    }
                }
            });
        };
        Effect::new(move |_| connect());
        on_cleanup(move || {
            let _ = session.try_update_value(|s| *s = None);
        });
        connect
    };
    #[cfg(not(feature = "hydrate"))]
    let reconnect = move || {
        let _ = (id, screen);
    };
    view! {
        <p class="console-bar">
            <span class=move || status.read().class() data-testid="console-status">
                {move || status.read().text()}
            </span>
            <Show when=move || matches!(*status.read(), Status::Disconnected(_))>
                <button data-testid="console-reconnect" on:click=move |_| reconnect()>"Reconnect"</button>
            </Show>
        </p>
        <div class="console-screen" data-testid="console-screen" node_ref=screen></div>
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use portal_types::ids::InstanceUuid;
    use std::cell::Cell;
    use std::rc::Rc;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;

    use super::Status;

    const SCRIPT_ID: &str = "xterm-js";
    const SCRIPT: &str = "/vendor/xterm/xterm.js";
    const STYLESHEET: &str = "/vendor/xterm/xterm.css";
    /// The server takes at most 4 KiB of input per frame.
    const INPUT_FRAME_BYTES: usize = 4 * 1024;

    #[wasm_bindgen]
    extern "C" {
        /// xterm.js's `Terminal` (the global its UMD build defines).
        pub type Terminal;
        #[wasm_bindgen(constructor)]
        fn new(options: &JsValue) -> Terminal;
        #[wasm_bindgen(method)]
        fn open(this: &Terminal, parent: &web_sys::HtmlElement);
        #[wasm_bindgen(method, js_name = write)]
        fn write_bytes(this: &Terminal, data: &js_sys::Uint8Array);
        #[wasm_bindgen(method, js_name = onData)]
        fn on_data(this: &Terminal, listener: &Closure<dyn FnMut(String)>);
        #[wasm_bindgen(method)]
        fn focus(this: &Terminal);
        #[wasm_bindgen(method)]
        fn dispose(this: &Terminal);
        #[wasm_bindgen(method, getter)]
        fn options(this: &Terminal) -> TerminalOptions;

        type TerminalOptions;
        #[wasm_bindgen(method, setter = disableStdin)]
        fn set_disable_stdin(this: &TerminalOptions, disabled: bool);
    }

    /// Calls `then` once xterm.js is loaded (at once if it is), or with why it cannot be.
    /// The script and stylesheet are added to the page the first time.
    pub fn with_xterm(then: impl FnOnce(Result<(), String>) + 'static) {
        if js_sys::Reflect::has(&js_sys::global(), &JsValue::from_str("Terminal")).unwrap_or(false)
        {
            return then(Ok(()));
        }
        let document = document();
        let script = match document.get_element_by_id(SCRIPT_ID) {
            Some(script) => script,
            None => match add_assets(&document) {
                Ok(script) => script,
                Err(_) => return then(Err("the terminal could not be set up".to_owned())),
            },
        };
        let then = Rc::new(Cell::new(Some(then)));
        let on_load = {
            let then = Rc::clone(&then);
            Closure::once_into_js(move || {
                if let Some(then) = then.take() {
                    then(Ok(()));
                }
            })
        };
        let failed = script.clone();
        let on_error = Closure::once_into_js(move || {
            // The next attempt adds it again instead of waiting for a load that never comes.
            failed.remove();
            if let Some(then) = then.take() {
                then(Err("the terminal could not be loaded; reload the page".to_owned()));
            }
        });
        let _ = script.add_event_listener_with_callback("load", on_load.unchecked_ref());
        let _ = script.add_event_listener_with_callback("error", on_error.unchecked_ref());
    }

    fn add_assets(document: &web_sys::Document) -> Result<web_sys::Element, JsValue> {
        let head = document.query_selector("head")?.ok_or(JsValue::NULL)?;
        let link = document.create_element("link")?;
        link.set_attribute("rel", "stylesheet")?;
        link.set_attribute("href", STYLESHEET)?;
        head.append_child(&link)?;
        let script = document.create_element("script")?;
        script.set_id(SCRIPT_ID);
        script.set_attribute("src", SCRIPT)?;
        head.append_child(&script)?;
        Ok(script)
    }

    /// One connection with its terminal; dropping it closes both.
    pub struct Session {
        socket: web_sys::WebSocket,
        terminal: Terminal,
        _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
        _on_close: Closure<dyn FnMut(web_sys::CloseEvent)>,
        _on_data: Closure<dyn FnMut(String)>,
    }

    impl Session {
        pub fn open(
            parent: &web_sys::HtmlElement,
            id: InstanceUuid,
            status: RwSignal<Status>,
        ) -> Result<Self, String> {
            parent.set_inner_html("");
            let options = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&options, &"convertEol".into(), &JsValue::FALSE);
            let _ = js_sys::Reflect::set(&options, &"cursorBlink".into(), &JsValue::TRUE);
            let terminal = Terminal::new(&options);
            terminal.open(parent);
            let location = window().location();
            let scheme = match location.protocol().as_deref() {
                Ok("https:") => "wss:",
                _ => "ws:",
            };
            let host = location.host().unwrap_or_default();
            let url = format!("{scheme}//{host}/instances/{id}/console/ws");
            let Ok(socket) = web_sys::WebSocket::new(&url) else {
                terminal.dispose();
                return Err("the browser refused to open the connection".to_owned());
            };
            socket.set_binary_type(web_sys::BinaryType::Arraybuffer);
            let read_write = Rc::new(Cell::new(false));
            let on_message = {
                let terminal: Terminal = JsValue::from(&terminal).unchecked_into();
                let read_write = Rc::clone(&read_write);
                Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                    move |msg: web_sys::MessageEvent| {
                        let data = msg.data();
                        if let Some(text) = data.as_string() {
                            // The first frame: the mode this session has.
                            let writable = text.contains("\"read-write\"");
                            read_write.set(writable);
                            terminal.options().set_disable_stdin(!writable);
                            let _ = status.try_set(Status::Connected { read_write: writable });
                            terminal.focus();
                        } else {
                            terminal.write_bytes(&js_sys::Uint8Array::new(&data));
                        }
                    },
                )
            };
            socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            let on_close =
                Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |e: web_sys::CloseEvent| {
                    let reason = e.reason();
                    let reason = if reason.is_empty() {
                        "the connection was lost".to_owned()
                    } else {
                        reason
                    };
                    let _ = status.try_set(Status::Disconnected(reason));
                });
            socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            let on_data = {
                let socket = socket.clone();
                Closure::<dyn FnMut(String)>::new(move |typed: String| {
                    if !read_write.get() || socket.ready_state() != web_sys::WebSocket::OPEN {
                        return;
                    }
                    for chunk in typed.as_bytes().chunks(INPUT_FRAME_BYTES) {
                        let _ = socket.send_with_u8_array(chunk);
                    }
                })
            };
            terminal.on_data(&on_data);
            Ok(Session {
                socket,
                terminal,
                _on_message: on_message,
                _on_close: on_close,
                _on_data: on_data,
            })
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            self.socket.set_onmessage(None);
            self.socket.set_onclose(None);
            let _ = self.socket.close();
            self.terminal.dispose();
        }
    }
}
