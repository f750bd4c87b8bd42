//! `/api/v1/docs`: the OpenAPI document as a page a person can read, rendered once on the
//! server (no script, no third-party viewer): every operation by tag with its parameters,
//! body and answers, then every schema.

use std::fmt::Write;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

/// The page, with a policy that allows only the portal's own stylesheet.
pub async fn serve(page: Arc<String>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; frame-ancestors 'none'",
            ),
        ],
        (*page).clone(),
    )
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A schema's name from a `$ref`, or its type written short (`array of X`, `string`).
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", type_of(items));
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return options.iter().map(type_of).collect::<Vec<_>>().join(" or ");
    }
    match &schema["type"] {
        Value::String(t) => esc(t),
        Value::Array(ts) => {
            ts.iter().filter_map(Value::as_str).map(esc).collect::<Vec<_>>().join(" or ")
        }
        _ => "object".to_owned(),
    }
}

pub fn page(doc: &utoipa::openapi::OpenApi) -> String {
    let json = serde_json::to_value(doc).unwrap_or_default();
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>API · GPU cloud portal</title>\
         <link rel=\"stylesheet\" href=\"/pkg/portal.css\"></head><body><main class=\"api-docs\">",
    );
    let info = &json["info"];
    let _ = write!(
        html,
        "<h1>{} <small>{}</small></h1><p>{}</p><p><a href=\"/api/v1/openapi.json\">OpenAPI \
         document (JSON)</a> · <a href=\"/account\">API tokens</a></p>",
        esc(info["title"].as_str().unwrap_or("API")),
        esc(info["version"].as_str().unwrap_or("")),
        esc(info["description"].as_str().unwrap_or("")),
    );
    let mut by_tag: std::collections::BTreeMap<String, Vec<(String, String, &Value)>> =
        Default::default();
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            by_tag.entry(tag).or_default().push((method.to_uppercase(), path.clone(), op));
        }
    }
    for (tag, ops) in &by_tag {
        let _ = write!(html, "<h2>{}</h2>", esc(tag));
        for (method, path, op) in ops {
            let _ = write!(
                html,
                "<section class=\"api-op\" id=\"{}\"><h3><code>{method} {}</code></h3><p>{}</p>",
                esc(op["operationId"].as_str().unwrap_or("")),
                esc(path),
                esc(op["description"].as_str().or(op["summary"].as_str()).unwrap_or("")),
            );
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                html.push_str(
                    "<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>About</th></tr>",
                );
                for p in params {
                    let _ = write!(
                        html,
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or("")),
                        if p["required"].as_bool() == Some(true) { " *" } else { "" },
                        esc(p["in"].as_str().unwrap_or("")),
                        type_of(&p["schema"]),
                        esc(p["description"].as_str().unwrap_or("")),
                    );
                }
                html.push_str("</table>");
            }
            if let Some(body) = op["requestBody"]["content"]["application/json"].get("schema") {
                let _ = write!(html, "<p>Body: {}</p>", type_of(body));
            }
            html.push_str("<ul>");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                if !status.starts_with('2') {
                    continue;
                }
                let body = response["content"]["application/json"]
                    .get("schema")
                    .map(|s| format!(": {}", type_of(s)))
                    .unwrap_or_default();
                let _ = write!(
                    html,
                    "<li>{} {}{body}</li>",
                    esc(status),
                    esc(response["description"].as_str().unwrap_or(""))
                );
            }
            html.push_str(
                "<li>Errors: <a href=\"#schema-ErrorBody\">ErrorBody</a> with 400, 401, 403, \
                 404, 409, 429, 500, 503 or 507</li></ul></section>",
            );
        }
    }
    html.push_str("<h2>Schemas</h2>");
    for (name, schema) in json["components"]["schemas"].as_object().into_iter().flatten() {
        let _ =
            write!(html, "<section class=\"api-schema\" id=\"schema-{0}\"><h3>{0}</h3>", esc(name));
        if let Some(about) = schema["description"].as_str() {
            let _ = write!(html, "<p>{}</p>", esc(about));
        }
        if let Some(props) = schema["properties"].as_object() {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            html.push_str("<table><tr><th>Field</th><th>Type</th><th>About</th></tr>");
            for (field, prop) in props {
                let _ = write!(
                    html,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(field),
                    if required.contains(&field.as_str()) { " *" } else { "" },
                    type_of(prop),
                    esc(prop["description"].as_str().unwrap_or("")),
                );
            }
            html.push_str("</table>");
        } else if let Some(values) = schema["enum"].as_array() {
            let values: Vec<String> =
                values.iter().map(|v| format!("<code>{}</code>", esc(&v.to_string()))).collect();
            let _ = write!(html, "<p>One of {}</p>", values.join(", "));
        }
        html.push_str("</section>");
    }
    html.push_str("</main></body></html>");
    html
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_and_schema_is_on_the_page() {
        let (_, doc) = super::super::router();
        let page = super::page(&doc);
        assert!(page.contains("<code>POST /api/v1/instances</code>"), "{page}");
        assert!(page.contains("id=\"schema-InstanceView\""));
        assert!(page.contains("Idempotency-Key"));
        assert!(!page.contains("<script"));
    }
}
