//! `POST /v1/images/generations` for an image model: the request is checked against
//! the model (size multiples, step limits), takes a place in the queue (or gets 429),
//! and waits for the image worker's PNGs, returned inline as `b64_json`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Instant;

use anneal_image::pipeline::ImageRequest;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;
use tokio::sync::oneshot;

use super::api_error::ApiError;
use super::http::{
    Generator, ServerState, count_refusal, prepare_on_blocking_pool, read_body, unix_now,
};
use super::image_request::{ImageCall, parse_image_request};
use super::reply::Slot;

/// An image model's queue and defaults.
pub struct ImageSide {
    pub submit: Sender<ImageJob>,
    /// Sides must be multiples of this (2 · the VAE's scale: 16 for FLUX.1).
    pub size_step: usize,
    /// `num_inference_steps` when a request does not say (28 for FLUX.1-dev, 4 for schnell).
    pub default_steps: usize,
    /// `guidance_scale` when a request does not say.
    pub default_guidance: f32,
    /// `size` when a request does not say, `(width, height)`.
    pub default_size: (usize, usize),
}

/// One request for the image worker.
pub struct ImageJob {
    /// Index into the served models (0: the base, then the adapters).
    pub model: usize,
    pub prompt: String,
    pub request: ImageRequest,
    /// The PNG files, or why generation failed. Closed when the client left.
    pub reply: oneshot::Sender<Result<Vec<Vec<u8>>, String>>,
}

pub(crate) async fn image_generations(
    State(state): State<Arc<ServerState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let body = match read_body(&state, body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let started = prepare_on_blocking_pool(&state, &body, start_images).await;
    let (call, request, waiting, _slot) = match started {
        Ok(started) => started,
        Err(error) => return count_refusal(&state, &body, error),
    };
    let outcome = match waiting.await {
        Ok(Ok(images)) => Ok(images),
        Ok(Err(message)) => Err(ApiError::internal(message)),
        Err(_) => Err(ApiError::internal(
            "the image worker stopped before answering",
        )),
    };
    let model = call.model.as_str();
    let metrics = &state.metrics;
    metrics
        .request_duration
        .with_label_values(&[model])
        .observe(arrived.elapsed().as_secs_f64());
    match outcome {
        Ok(images) => {
            metrics.requests.with_label_values(&[model, "ok"]).inc();
            metrics
                .generated_images
                .with_label_values(&[model])
                .inc_by(images.len() as u64);
            let data: Vec<_> = images
                .iter()
                .map(|png| {
                    json!({
                        "b64_json": base64::engine::general_purpose::STANDARD.encode(png),
                        "revised_prompt": null,
                    })
                })
                .collect();
            Json(json!({
                "created": unix_now(),
                "data": data,
                "output_format": "png",
                "size": format!("{}x{}", request.width, request.height),
            }))
            .into_response()
        }
        Err(error) => {
            metrics.requests.with_label_values(&[model, "error"]).inc();
            error.into_response()
        }
    }
}

type Started = (
    ImageCall,
    ImageRequest,
    oneshot::Receiver<Result<Vec<Vec<u8>>, String>>,
    Slot,
);

/// Checks the request against the model, takes a place in the queue and hands it to
/// the worker.
fn start_images(state: &ServerState, body: &[u8]) -> Result<Started, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    let call = parse_image_request(body)?;
    let Generator::Image(side) = &state.generator else {
        return Err(ApiError::wrong_endpoint(
            "This server serves a chat model: use /v1/chat/completions",
        ));
    };
    let model = state.model_index(&call.model)?;
    let (width, height) = call.size.unwrap_or(side.default_size);
    let step = side.size_step;
    if !width.is_multiple_of(step) || !height.is_multiple_of(step) {
        return Err(ApiError::invalid(
            "size",
            format!(
                "`size` {width}x{height}: width and height must be multiples of {step} for this model"
            ),
        ));
    }
    let request = ImageRequest {
        width,
        height,
        steps: call.steps.unwrap_or(side.default_steps),
        guidance: call.guidance.unwrap_or(side.default_guidance),
        count: call.n,
        seed: call.seed.unwrap_or_else(rand::random),
    };
    let slot = Slot::take(&state.in_flight, state.max_in_flight, &state.metrics)
        .ok_or_else(|| ApiError::overloaded(state.max_in_flight))?;
    let (reply, waiting) = oneshot::channel();
    side.submit
        .send(ImageJob {
            model,
            prompt: call.prompt.clone(),
            request: request.clone(),
            reply,
        })
        .map_err(|_| ApiError::shutting_down())?;
    Ok((call, request, waiting, slot))
}
