//! The debug routes (`/debug/fleet`, `/debug/query`; the status page at `/` is
//! `status_page`), and the 404 they answer when the debug API is off.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::OpsState;

/// The body of a 404 from a debug route when the API is off; `fleetdns query` and `status`
/// recognise it.
pub const DEBUG_OFF: &str = "debug API is off on this server ([ops] debug = false)\n";
/// The same for `fleetdns agent`, which answers no DNS.
pub const DEBUG_AGENT: &str =
    "this is a fleetdns agent: it answers no DNS; ask a DNS server (fleetdns serve)\n";

/// The 404 of a debug route without the debug API.
pub(crate) fn debug_unavailable(state: &OpsState) -> Response {
    let body = if state.served.is_none() {
        DEBUG_AGENT
    } else {
        DEBUG_OFF
    };
    (StatusCode::NOT_FOUND, body).into_response()
}

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

pub(super) async fn debug_fleet(State(state): State<Arc<OpsState>>) -> Response {
    let Some(debug) = state.debug.clone() else {
        return debug_unavailable(&state);
    };
    let report = crate::debug_api::fleet(&debug, &state, state.served.as_deref());
    json(StatusCode::OK, &report)
}

pub(super) async fn debug_query(
    State(state): State<Arc<OpsState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(debug) = state.debug.clone() else {
        return debug_unavailable(&state);
    };
    let mut name = None;
    let mut qtype = "A".to_owned();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "name" => name = Some(v.into_owned()),
            "type" => qtype = v.into_owned(),
            _ => {}
        }
    }
    let Some(name) = name else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "missing parameter: name (e.g. /debug/query?name=payment.default.svc.clusterset.local&type=A)"}),
        );
    };
    match crate::debug_api::query(&debug, state.served.as_deref(), &name, &qtype) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": e.to_string()}),
        ),
    }
}
