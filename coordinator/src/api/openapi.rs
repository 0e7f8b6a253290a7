//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the code: the route
//! table ([`routes::ROUTES`]: methods, paths, summaries, access), the query types
//! (`utoipa::IntoParams`) and the body types (`utoipa::ToSchema`, [`CoordinatorSchemas`]).

use ciro_api::coordinator::items;
use ciro_api::coordinator::openapi::CoordinatorSchemas;
use ciro_api::coordinator::routes::{self, Access, HttpMethod};
use ciro_api::coordinator::{
    EventsQuery, ItemsQuery, ListJobs, ListModels, ListWorkers, PollAssignments, StatsQuery,
};
use serde_json::{json, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, OpenApi};

/// What one route takes and answers, beside its table entry.
struct Shape {
    query: Vec<utoipa::openapi::path::Parameter>,
    /// `(content type, schema)` of the request body.
    body: Option<(&'static str, Value)>,
    /// `(status, content type, schema)` of the success answer.
    ok: (&'static str, &'static str, Value),
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn bytes() -> Value {
    json!({"type": "string", "format": "binary"})
}

fn shape(method: HttpMethod, path: &str) -> Shape {
    let query = |params: Vec<utoipa::openapi::path::Parameter>| params;
    let none = Vec::new;
    let json_ok = |name: &str| ("200", "application/json", schema(name));
    match (method, path) {
        (HttpMethod::Put, routes::BLOB) => Shape {
            query: none(),
            body: Some(("application/octet-stream", bytes())),
            ok: ("201", "application/json", schema("BlobInfo")),
        },
        (HttpMethod::Get, routes::BLOB) => Shape {
            query: none(),
            body: None,
            ok: ("200", "application/octet-stream", bytes()),
        },
        (HttpMethod::Get, routes::BLOB_META | routes::JOB_EVIDENCE) => Shape {
            query: none(),
            body: None,
            ok: json_ok("BlobInfo"),
        },
        (HttpMethod::Get, routes::MODELS) => Shape {
            query: query(ListModels::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: json_ok("Page_Model"),
        },
        (HttpMethod::Get, routes::MODEL) => Shape {
            query: none(),
            body: None,
            ok: json_ok("Model"),
        },
        (HttpMethod::Get, routes::JOBS) => Shape {
            query: query(ListJobs::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: json_ok("Page_Job"),
        },
        (HttpMethod::Get, routes::JOB) => Shape {
            query: none(),
            body: None,
            ok: json_ok("JobDetails"),
        },
        (HttpMethod::Get, routes::JOB_EVENTS | routes::SUBMITTER_EVENTS) => Shape {
            query: none(),
            body: None,
            ok: ("200", "text/event-stream", json!({"type": "string"})),
        },
        (HttpMethod::Put, routes::JOB_OUTPUT) => Shape {
            query: none(),
            body: Some(("application/octet-stream", bytes())),
            ok: json_ok("OutputAccepted"),
        },
        (HttpMethod::Get, routes::JOB_INPUTS | routes::JOB_OUTPUTS) => Shape {
            query: query(ItemsQuery::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: ("200", items::CONTENT_TYPE, bytes()),
        },
        (HttpMethod::Put, routes::JOB_OUTPUTS) => Shape {
            query: none(),
            body: Some((items::CONTENT_TYPE, bytes())),
            ok: json_ok("OutputsAccepted"),
        },
        (HttpMethod::Put, routes::JOB_RECEIPT) => Shape {
            query: none(),
            body: Some(("application/json", schema("SignedReceipt"))),
            ok: ("204", "", Value::Null),
        },
        (HttpMethod::Post, routes::JOB_RELEASE) => Shape {
            query: none(),
            body: Some(("application/json", schema("ReleaseRequest"))),
            ok: json_ok("ReleaseAccepted"),
        },
        (HttpMethod::Get, routes::JOB_RECEIPT) => Shape {
            query: none(),
            body: None,
            ok: json_ok("SignedReceipt"),
        },
        (HttpMethod::Get, routes::EVENTS) => Shape {
            query: query(EventsQuery::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: ("200", "text/event-stream", json!({"type": "string"})),
        },
        (HttpMethod::Get, routes::STATS) => Shape {
            query: query(StatsQuery::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: json_ok("NetworkStats"),
        },
        (HttpMethod::Get, routes::WORKERS) => Shape {
            query: query(ListWorkers::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: json_ok("Page_Worker"),
        },
        (HttpMethod::Get, routes::WORKER) => Shape {
            query: none(),
            body: None,
            ok: json_ok("Worker"),
        },
        (HttpMethod::Post, routes::WORKER_HEARTBEAT) => Shape {
            query: none(),
            body: Some(("application/json", schema("Heartbeat"))),
            ok: json_ok("HeartbeatAck"),
        },
        (HttpMethod::Get, routes::WORKER_ASSIGNMENTS) => Shape {
            query: query(PollAssignments::into_params(|| Some(ParameterIn::Query))),
            body: None,
            ok: json_ok("Assignments"),
        },
        _ => Shape {
            query: none(),
            body: None,
            ok: ("200", "application/json", json!({})),
        },
    }
}

/// A path parameter's schema, by its name.
fn path_parameter(name: &str) -> Value {
    let schema = match name {
        "digest" => json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        "address" => json!({"type": "string", "pattern": "^0x[0-9a-fA-F]{1,64}$"}),
        _ => json!({"type": "integer", "format": "int64", "minimum": 0}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

const SIGNATURE_HEADERS: [(&str, &str); 6] = [
    ("x-ciro-account", "The signing account (0x-hex)"),
    (
        "x-ciro-coordinator",
        "The origin (scheme://host[:port]) the request is signed for: this coordinator's",
    ),
    ("x-ciro-timestamp", "Unix seconds when signed"),
    (
        "x-ciro-nonce",
        "A felt never used by this account within the window",
    ),
    ("x-ciro-content-sha256", "SHA-256 of the body (64 hex)"),
    (
        "x-ciro-signature",
        "The account's signature felts, comma-separated",
    ),
];

/// The whole document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(CoordinatorSchemas::openapi()).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "CIRO coordinator",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Jobs, models, workers and job data of the CIRO network. Writes and reads of private data are signed as SNIP-12 typed data by a Starknet account (x-ciro-* headers), naming the deployment's JobMgr contract and the coordinator's origin. Every error is {code, message}."
    });
    doc["components"]["securitySchemes"] = json!({
        "starknetSignature": {"type": "apiKey", "in": "header", "name": "x-ciro-signature",
            "description": "SNIP-12 signature of the request, with the other x-ciro-* headers"}
    });
    let mut paths = serde_json::Map::new();
    for route in routes::ROUTES {
        let shape = shape(route.method, route.path);
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(path_parameter)
            .collect();
        for param in &shape.query {
            parameters.push(serde_json::to_value(param).unwrap_or_default());
        }
        if route.access != Access::Public {
            for (name, description) in SIGNATURE_HEADERS {
                parameters.push(json!({
                    "name": name, "in": "header", "required": route.access == Access::Signed,
                    "description": description, "schema": {"type": "string"}
                }));
            }
        }
        let (status, content_type, ok_schema) = shape.ok;
        let mut ok = json!({"description": "Success"});
        if !content_type.is_empty() {
            ok["content"] = json!({content_type: {"schema": ok_schema}});
        }
        let error = json!({"description": "Error", "content": {"application/json": {"schema": schema("ErrorBody")}}});
        let mut operation = json!({
            "summary": route.summary,
            "operationId": format!("{}{}", route.method.as_str().to_lowercase(), route.path.replace(['/', '{', '}'], "_")),
            "parameters": parameters,
            "responses": {status: ok, "4XX": error.clone(), "5XX": error},
        });
        if let Some((content_type, body_schema)) = shape.body {
            operation["requestBody"] =
                json!({"required": true, "content": {content_type: {"schema": body_schema}}});
        }
        if route.access != Access::Public {
            operation["security"] = json!([{"starknetSignature": []}]);
        }
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_lowercase()] = operation;
    }
    doc["paths"] = Value::Object(paths);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_parameters_and_every_ref_resolves() {
        let doc = document();
        for route in routes::ROUTES {
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            assert_eq!(op["summary"], route.summary, "{}", route.path);
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for segment in route.path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(names.contains(&name), "{}: {name}", route.path);
                }
            }
        }
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
        assert!(doc["paths"]["/v1/jobs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "submitter"));
    }
}
