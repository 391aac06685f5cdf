//! `GET /openapi.json`: the OpenAPI 3.1 description, generated from the handlers'
//! `#[utoipa::path]` annotations and the response types, so it cannot drift from the code.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{batch, dimensions, health, keys, scan, snapshot, Encoding};
use crate::Problem;

/// The OpenAPI document of jessy-core.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jessy-core",
        description = "Jessy's HTTP API: dimensions (ordered keyspaces) of byte-string keys and values. Errors are application/problem+json; every response carries X-Request-Id. See docs/HTTP.md.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        health::health,
        health::metrics,
        serve,
        dimensions::list,
        dimensions::create,
        dimensions::drop,
        dimensions::compact,
        keys::get,
        keys::head,
        keys::put,
        keys::delete,
        scan::scan,
        batch::batch,
        snapshot::snapshot,
        snapshot::head,
    ),
    components(schemas(
        Problem,
        Encoding,
        health::Health,
        dimensions::DimensionInfo,
        dimensions::DimensionList,
        dimensions::CompactResult,
        scan::ScanItem,
        scan::ScanPage,
        batch::BatchOp,
        batch::BatchRequest,
        batch::BatchResult,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "keys", description = "Reading and writing keys"),
        (name = "dimensions", description = "Keyspaces"),
        (name = "operations", description = "Health, metrics, snapshots"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Required on /v1 when the server has JESSY_API_TOKEN set"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, rendered once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json", body = Object))
)]
pub(crate) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json()).into_response()
}
