//! The model lists: `GET /v1/models[/{model}]` in OpenAI's shape (with catalog facts), or in
//! Anthropic's when the request carries `anthropic-version`; and Bedrock's
//! `GET /inference-profiles[/{id}]`, answered from `[models]`. Each lists only what the caller's
//! routing policy lets it use through that API ([`Dispatch::allowed_models`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::errors::{Shape, render};
use crate::config::Config;
use crate::convert::response::model_object;
use crate::dispatch::Dispatch;
use crate::error::ApiError;
use crate::routing::Surface;
use crate::wire::bedrock::{PROFILE_TYPES, inference_profiles};
use crate::wire::openai::{ModelList, ModelObject, ModelReasoning};

/// Anthropic's shape for `GET /v1/models` is asked for with `anthropic-version`; it lists what the
/// Messages API serves.
fn shape_of(headers: &HeaderMap) -> (Shape, Surface) {
    if headers.contains_key("anthropic-version") {
        (Shape::Anthropic, Surface::Messages)
    } else {
        (Shape::OpenAi, Surface::Chat)
    }
}

/// `GET /v1/models`.
pub async fn list_models(State(dispatch): State<Arc<Dispatch>>, headers: HeaderMap) -> Response {
    let (shape, surface) = shape_of(&headers);
    let models = match dispatch.allowed_models(&headers, surface) {
        Ok((_, models)) => models,
        Err(error) => return render(shape, &error),
    };
    let config = &dispatch.config;
    match shape {
        Shape::Anthropic => {
            let data: Vec<serde_json::Value> = models.iter().map(|name| anthropic_model(config, name)).collect();
            let first = data.first().map(|m| m["id"].clone());
            let last = data.last().map(|m| m["id"].clone());
            axum::Json(serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
                .into_response()
        }
        _ => axum::Json(ModelList::new(models.iter().map(|name| openai_model(config, name)).collect())).into_response(),
    }
}

/// `GET /v1/models/{model}` (the SDKs' `models.retrieve`): one entry of the list, or 404.
pub async fn retrieve_model(
    State(dispatch): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Response {
    let (shape, surface) = shape_of(&headers);
    let found = dispatch.allowed_models(&headers, surface).and_then(|(_, allowed)| {
        allowed.into_iter().find(|name| *name == model).ok_or_else(|| {
            ApiError::not_found(
                "model_not_found",
                format!("model {model:?} is not served here; GET /v1/models lists the models you may use"),
            )
            .with_param("model")
        })
    });
    match found {
        Ok(name) if shape == Shape::Anthropic => axum::Json(anthropic_model(&dispatch.config, &name)).into_response(),
        Ok(name) => axum::Json(openai_model(&dispatch.config, &name)).into_response(),
        Err(error) => render(shape, &error),
    }
}

/// A model's OpenAI list entry: from its catalog rules when it is a `[models]` entry, else (a
/// model only an OpenAI-compatible endpoint serves) its name alone.
fn openai_model(config: &Config, name: &str) -> ModelObject {
    match crate::models::find_by_name(&config.models, name) {
        Some((name, model)) => model_object(name, model),
        None => ModelObject {
            id: name.to_owned(),
            object: "model",
            created: 0,
            owned_by: "byollm".to_owned(),
            display_name: None,
            family: None,
            context_window: 0,
            max_output_tokens: 0,
            reasoning: ModelReasoning { supported: false, thinking: "none", always_on: false, efforts: Vec::new() },
            vision: false,
            lifecycle: None,
        },
    }
}

/// One model in Anthropic's shape (`models.list`, `models.retrieve`).
fn anthropic_model(config: &Config, name: &str) -> serde_json::Value {
    let display = crate::models::find_by_name(&config.models, name)
        .and_then(|(_, model)| model.entry())
        .map_or(name, |entry| entry.display_name.as_str());
    serde_json::json!({"type": "model", "id": name, "display_name": display, "created_at": "1970-01-01T00:00:00Z"})
}

/// Most profiles in one page.
const MAX_PROFILE_PAGE: usize = 1000;

/// The query of `GET /inference-profiles`: these fields only, others skipped unbuilt (the query
/// is read before the caller is authenticated; a map of every pair cost 15 times its text).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ProfileQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(rename = "maxResults")]
    pub max_results: Option<String>,
    #[serde(rename = "nextToken")]
    pub next_token: Option<String>,
}

/// `GET /inference-profiles?type=&maxResults=&nextToken=` (Bedrock's `ListInferenceProfiles`),
/// answered from `[models]`: the configured inference profiles the caller may use, in the region
/// of its team (local: its session's). Claude Code calls it at start without credentials; that
/// call is refused (401) and Claude Code carries on.
pub async fn list_inference_profiles(
    State(dispatch): State<Arc<Dispatch>>,
    headers: HeaderMap,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match profiles_page(&dispatch, &headers, query) {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => render(Shape::Bedrock, &error),
    }
}

fn profiles_page(
    dispatch: &Dispatch,
    headers: &HeaderMap,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<serde_json::Value, ApiError> {
    let (listing, allowed) = dispatch.allowed_models(headers, Surface::BedrockOnly)?;
    let Ok(Query(query)) = query else {
        return Err(ApiError::invalid_request(
            "",
            "invalid_query",
            "the query takes type, maxResults and nextToken, each at most once",
        ));
    };
    let kind = query.kind.as_deref();
    if let Some(kind) = kind.filter(|kind| !PROFILE_TYPES.contains(kind)) {
        return Err(ApiError::invalid_request(
            "type",
            "invalid_value",
            format!("type {kind:?} is not SYSTEM_DEFINED or APPLICATION"),
        ));
    }
    let page = match query.max_results.as_deref().map(str::parse::<usize>) {
        None => MAX_PROFILE_PAGE,
        Some(Ok(n)) if (1..=MAX_PROFILE_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "maxResults",
                "invalid_value",
                "maxResults must be between 1 and 1000",
            ));
        }
    };
    let start = match query.next_token.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Err(ApiError::invalid_request(
                "nextToken",
                "invalid_value",
                "nextToken is not one this gateway handed out",
            ));
        }
    };
    let all = inference_profiles(&dispatch.config, &listing.region, kind, &allowed);
    let end = start.saturating_add(page).min(all.len());
    let summaries = all.get(start.min(all.len())..end).unwrap_or_default();
    let mut body = serde_json::json!({ "inferenceProfileSummaries": summaries });
    if end < all.len() {
        body["nextToken"] = serde_json::Value::String(end.to_string());
    }
    Ok(body)
}

/// `GET /inference-profiles/{id or ARN}` (Bedrock's `GetInferenceProfile`), from `[models]`.
pub async fn get_inference_profile(
    State(dispatch): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path(profile): Path<String>,
) -> Response {
    let (listing, allowed) = match dispatch.allowed_models(&headers, Surface::BedrockOnly) {
        Ok(found) => found,
        Err(error) => return render(Shape::Bedrock, &error),
    };
    let found = inference_profiles(&dispatch.config, &listing.region, None, &allowed)
        .into_iter()
        .find(|p| p.inference_profile_id == profile || p.inference_profile_arn == profile);
    match found {
        Some(summary) => axum::Json(summary).into_response(),
        None => render(
            Shape::Bedrock,
            &ApiError::not_found(
                "profile_not_found",
                format!(
                    "inference profile {:?} is not served here; GET /inference-profiles lists the ones you may use",
                    profile.chars().take(256).collect::<String>()
                ),
            ),
        ),
    }
}
