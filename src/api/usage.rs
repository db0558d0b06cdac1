//! `GET /v1/usage`: the caller's own team's usage today (UTC), per agent and model (requests,
//! tokens by kind, `cost_usd`: the same figures as the audit lines'), and the room left in its
//! budgets and its agents' with their reset times, from the limits store (Redis when the replicas
//! share one). A caller sees its own team only; rates' room is in every answer's headers.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::errors;
use crate::error::ApiError;

pub async fn usage(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = match state.callers.authenticate(&headers) {
        Ok(caller) => caller,
        Err(error) => return errors::openai(&ApiError::from(error)),
    };
    match state.dispatch.limits.usage(caller.team.as_str()).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => errors::openai(&error),
    }
}
