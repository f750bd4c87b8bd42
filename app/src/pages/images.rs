//! The image catalog panel of the provider-admin page: every image (retired ones greyed),
//! a form to add one, and retiring.

use leptos::prelude::*;
use portal_types::Error;
use portal_types::views::ImageView;

use crate::api::{ImageCreate, ImageRetire, image_list};
use crate::form::{FormAction, PostForm};

#[component]
pub fn ImagesPanel() -> impl IntoView {
    let create = FormAction::<ImageCreate>::new();
    let retire = ServerAction::<ImageRetire>::new();
    let images = crate::json::resource(
        move || (create.version().get(), retire.version().get()),
        |_| image_list(true),
    );
    let error = move || {
        let err = |v: Option<Result<ImageView, Error>>| v.and_then(|r| r.err());
        err(create.value().get()).or_else(|| err(retire.value().get())).map(|e| e.to_string())
    };
    view! {
        <section class="panel" data-testid="images">
            <h2>"Images"</h2>
            <p class="muted">"What VMs boot: a file in every host's image store. A retired image is offered for no new launch; instances that booted it keep it."</p>
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="image-error">{error}</p>
            </Show>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move { match images.await {
                    Ok(list) => view! { <ImageTable images=list retire /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }})}
            </Transition>
            <PostForm action=create attr:class="launch" attr:data-testid="image-form">
                <label>"Name" <input type="text" name="create[name]" required maxlength="64" placeholder="ubuntu-24.04-cuda-12.8" /></label>
                <label>"OS" <input type="text" name="create[os]" required maxlength="64" placeholder="Ubuntu 24.04 LTS" /></label>
                <label>"CUDA" <input type="text" name="create[cuda_version]" maxlength="32" class="narrow" placeholder="12.8" /></label>
                <label>"Driver" <input type="text" name="create[driver_version]" maxlength="32" class="narrow" placeholder="570" /></label>
                <label>"Default user" <input type="text" name="create[default_user]" required maxlength="32" value="ubuntu" /></label>
                <label>"Source file" <input type="text" name="create[source]" required maxlength="128" placeholder="ubuntu-24.04-cuda-12.8.qcow2" /></label>
                <button type="submit" class="primary" disabled=move || create.pending().get()>"Add image"</button>
            </PostForm>
        </section>
    }
}

#[component]
fn ImageTable(images: Vec<ImageView>, retire: ServerAction<ImageRetire>) -> impl IntoView {
    view! {
        <table class="instances" data-testid="image-table">
            <thead><tr><th>"Name"</th><th>"OS"</th><th>"User"</th><th>"Source"</th><th></th></tr></thead>
            <tbody>
                {images.into_iter().map(|i| {
                    let id = i.id;
                    let retired = i.retired;
                    view! {
                        <tr data-testid="image-row" data-name=i.name.clone() class:muted=retired>
                            <td class="name">{i.name.clone()}</td>
                            <td>{i.summary()}</td>
                            <td>{i.default_user.clone()}</td>
                            <td class="mono">{i.source.clone()}</td>
                            <td>
                                {if retired {
                                    view! { <span data-testid="image-retired">"retired"</span> }.into_any()
                                } else {
                                    view! {
                                        <button class="danger" data-testid="image-retire"
                                            on:click=move |_| { retire.dispatch(ImageRetire { id }); }>
                                            "Retire"
                                        </button>
                                    }.into_any()
                                }}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
