//! The OpenAPI document as served: what utoipa derives from the handlers' annotations,
//! completed with what every operation of this server shares, so the document is valid
//! OpenAPI 3.1 and says every status an operation can answer.
//!
//! The shared answers come from the layers and extractors, not from the handlers: a bearer
//! operation can answer 401 and 403 and the per-member 429; a JSON body 400, 413, 415 and
//! 422; a path id 404 (an id that is not one); every operation 503 (a store down, a request
//! over its time). Each error is `application/problem+json` with the `ProblemBody` schema.

use serde_json::{Map, Value, json};

/// An id in a path or a body: JSON Schema 2020-12 treats `format` as an annotation, so a
/// generated client or fuzzer would send any string; the pattern says what the server takes.
const UUID_PATTERN: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

const PROBLEM: &str = "application/problem+json";
const PROBLEM_REF: &str = "#/components/schemas/ProblemBody";

/// Operations rate-limited per client address or e-mail, without a bearer token.
const LIMITED_WITHOUT_TOKEN: [&str; 3] = ["/api/v1/members", "/api/v1/auth/login", "/api/v1/auth/refresh"];
/// The insurer's signed webhook: its own security schemes instead of a bearer token.
const INSURER_PATH: &str = "/api/v1/insurance/insurer/cancellations";

/// `derived`, completed (see the module).
pub fn complete(derived: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(derived).unwrap_or_else(|_| json!({}));
    add_insurer_schemes(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item.iter_mut() {
                if let Some(operation) = operation.as_object_mut()
                    && ["get", "post", "put", "patch", "delete"].contains(&method.as_str())
                {
                    complete_operation(path, method, operation);
                }
            }
        }
    }
    constrain_ids(&mut doc);
    doc
}

fn complete_operation(path: &str, method: &str, operation: &mut Map<String, Value>) {
    let parameters: Vec<(String, String)> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    (field("in"), field("name"))
                })
                .collect()
        })
        .unwrap_or_default();
    let has_in = |place: &str| parameters.iter().any(|(at, _)| at == place);
    let bearer = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|s| s.get("bearer").is_some()));
    let insurer = path == INSURER_PATH;
    let json_body = operation.get("requestBody").is_some();
    let reads_body = matches!(method, "post" | "patch" | "put");
    if insurer {
        // The signature headers are the insurer's credentials: its security schemes.
        operation.insert(
            "security".to_owned(),
            json!([{ "insurer_timestamp": [], "insurer_signature": [] }]),
        );
    }

    let mut shared: Vec<(u16, &str)> = Vec::new();
    if json_body || has_in("header") {
        shared.push((
            400,
            "request.malformed_json, idempotency.key_required: the body is not JSON or a required header is missing",
        ));
    }
    if bearer || insurer {
        shared.push((
            401,
            "auth.unauthenticated, insurer.invalid_signature: no valid credentials",
        ));
    }
    if bearer {
        shared.push((403, "auth.forbidden: the caller's role may not do this"));
    }
    if has_in("path") {
        shared.push((404, "resource.not_found: nothing has this id (or it is not an id)"));
    }
    if reads_body {
        shared.push((413, "request.too_large: the body is over the limit"));
    }
    if json_body {
        shared.push((415, "request.unsupported_media_type: the body is not application/json"));
    }
    if json_body || has_in("query") || has_in("header") {
        shared.push((
            422,
            "validation.failed: a value is out of its range or of the wrong type",
        ));
    }
    if bearer || LIMITED_WITHOUT_TOKEN.contains(&path) {
        shared.push((
            429,
            "rate_limited, auth.rate_limited: too many requests; see Retry-After",
        ));
    }
    shared.push((
        503,
        "service.unavailable, request.timeout, auth.busy: try again shortly",
    ));

    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else { return };
    for (status, description) in shared {
        responses.entry(status.to_string()).or_insert_with(
            || json!({ "description": description, "content": { PROBLEM: { "schema": { "$ref": PROBLEM_REF } } } }),
        );
    }
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        let needs_description = response
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if needs_description {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Response");
            response.insert("description".to_owned(), Value::String(reason.to_owned()));
        }
        // Errors are problem documents (RFC 9457), whatever the annotation said.
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
            && let Some(json) = content.get("application/json").cloned()
            && json.pointer("/schema/$ref").and_then(Value::as_str) == Some(PROBLEM_REF)
        {
            content.remove("application/json");
            content.insert(PROBLEM.to_owned(), json);
        }
    }
}

fn add_insurer_schemes(doc: &mut Value) {
    let Some(components) = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
    else {
        return;
    };
    let Some(schemes) = components
        .as_object_mut()
        .map(|c| c.entry("securitySchemes").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    schemes.insert(
        "insurer_timestamp".to_owned(),
        json!({ "type": "apiKey", "in": "header", "name": "X-Insurer-Timestamp",
                "description": "unix seconds, within 5 minutes of the server's clock" }),
    );
    schemes.insert(
        "insurer_signature".to_owned(),
        json!({ "type": "apiKey", "in": "header", "name": "X-Insurer-Signature",
                "description": "sha256=<hex HMAC-SHA256 of \"<X-Insurer-Timestamp>.<raw body>\"> with the webhook secret" }),
    );
}

/// Every `format: uuid` string schema also gets [`UUID_PATTERN`].
fn constrain_ids(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_uuid = map.get("format").and_then(Value::as_str) == Some("uuid");
            if is_uuid && !map.contains_key("pattern") {
                map.insert("pattern".to_owned(), Value::String(UUID_PATTERN.to_owned()));
            }
            map.values_mut().for_each(constrain_ids);
        }
        Value::Array(list) => list.iter_mut().for_each(constrain_ids),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        complete(&super::super::api().1)
    }

    #[test]
    fn every_response_has_a_description_and_errors_are_problem_documents() {
        let doc = document();
        let mut responses = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("an item") {
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    responses += 1;
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(!description.is_empty(), "{method} {path} {status}");
                    if status.starts_with('4') || status.starts_with('5') {
                        let content = response["content"].as_object().expect("error content");
                        assert_eq!(
                            content.keys().collect::<Vec<_>>(),
                            [PROBLEM],
                            "{method} {path} {status}"
                        );
                    }
                }
                assert!(operation["responses"].get("503").is_some(), "{method} {path}");
            }
        }
        assert!(responses > 100, "{responses}");
    }

    #[test]
    fn shared_answers_follow_what_an_operation_takes() {
        let doc = document();
        let op = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
        let charge = op("/api/v1/points/charge", "post");
        for status in ["400", "401", "403", "413", "415", "422", "429", "503"] {
            assert!(charge.get(status).is_some(), "charge {status}");
        }
        assert!(charge.get("404").is_none());
        let product = op("/api/v1/products/{id}", "get");
        assert!(product.get("404").is_some() && product.get("401").is_none());
        let insurer = &doc["paths"][INSURER_PATH]["post"];
        assert_eq!(
            insurer["security"],
            json!([{ "insurer_timestamp": [], "insurer_signature": [] }])
        );
        assert!(insurer["responses"].get("401").is_some() && insurer["responses"].get("403").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"]["insurer_signature"]["name"],
            "X-Insurer-Signature"
        );
        let id = doc["paths"]["/api/v1/products/{id}"]["get"]["parameters"][0]["schema"].clone();
        assert_eq!(id["pattern"], UUID_PATTERN);
        let search = doc["paths"]["/api/v1/admin/members"]["get"]["parameters"][0].clone();
        assert_eq!(
            (search["in"].as_str(), search["required"].as_bool()),
            (Some("query"), Some(true))
        );
    }
}
