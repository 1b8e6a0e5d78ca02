//! `POST /v1/images/generations` bodies, as OpenAI's images API shapes them (`model`,
//! `prompt`, `n`, `size`, `response_format`), plus `seed`, `num_inference_steps` and
//! `guidance_scale` as extra fields: parsed and checked into an [`ImageCall`], or
//! refused with an error that names the field.

use serde::Deserialize;
use serde_json::Value;

use super::api_error::{ApiError, parse_body};

/// OpenAI's limit on images per request.
pub const MAX_IMAGES: usize = 10;
/// The longest side served, in pixels.
pub const MAX_SIDE: usize = 2048;
/// OpenAI's longest prompt (gpt-image-1's); T5 reads at most its sequence length anyway.
const MAX_PROMPT_CHARS: usize = 32_000;

/// A checked request; the model name, and the size against the model, are the
/// caller's to resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageCall {
    pub model: String,
    pub prompt: String,
    pub n: usize,
    /// `(width, height)`; `None`: the server's default (`size` absent or `auto`).
    pub size: Option<(usize, usize)>,
    pub seed: Option<u64>,
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<u64>,
    size: Option<String>,
    response_format: Option<String>,
    output_format: Option<String>,
    seed: Option<i64>,
    num_inference_steps: Option<u64>,
    guidance_scale: Option<f64>,
    // Accepted when they ask for nothing beyond what this server does.
    quality: Option<String>,
    style: Option<String>,
    background: Option<String>,
    // Bookkeeping that changes nothing here.
    user: Option<Value>,
    moderation: Option<Value>,
}

/// Parses and checks a request body.
pub fn parse_image_request(bytes: &[u8]) -> Result<ImageCall, ApiError> {
    let body: Body = parse_body(bytes)?;
    let model = body.model.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::invalid(
            "model",
            "`model` is required: the name of a model from GET /v1/models",
        )
    })?;
    let prompt = body
        .prompt
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required and must not be empty"))?;
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(ApiError::invalid(
            "prompt",
            format!("`prompt` must be at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    let n = body.n.unwrap_or(1);
    if n == 0 || n > MAX_IMAGES as u64 {
        return Err(ApiError::invalid(
            "n",
            format!("`n` must be between 1 and {MAX_IMAGES}, got {n}"),
        ));
    }
    let size = match body.size.as_deref() {
        None | Some("auto") => None,
        Some(text) => Some(parse_size(text)?),
    };
    if let Some(format) = body.response_format.filter(|f| f != "b64_json") {
        return Err(ApiError::invalid(
            "response_format",
            format!(
                "`response_format` {format:?} is not supported: this server returns images inline as b64_json and keeps no image store for URLs"
            ),
        ));
    }
    if let Some(format) = body.output_format.filter(|f| f != "png") {
        return Err(ApiError::invalid(
            "output_format",
            format!("`output_format` {format:?} is not supported: images are PNG"),
        ));
    }
    let seed = match body.seed {
        Some(seed) if seed < 0 => {
            return Err(ApiError::invalid(
                "seed",
                format!("`seed` must be 0 or more, got {seed}"),
            ));
        }
        seed => seed.map(|s| s as u64),
    };
    let steps = match body.num_inference_steps {
        Some(steps) if steps == 0 || steps > 100 => {
            return Err(ApiError::invalid(
                "num_inference_steps",
                format!("`num_inference_steps` must be between 1 and 100, got {steps}"),
            ));
        }
        steps => steps.map(|s| s as usize),
    };
    let guidance = match body.guidance_scale {
        Some(g) if !(0.0..=100.0).contains(&g) => {
            return Err(ApiError::invalid(
                "guidance_scale",
                format!("`guidance_scale` must be between 0 and 100, got {g}"),
            ));
        }
        g => g.map(|g| g as f32),
    };
    refuse_unless(&body.quality, "quality", &["auto", "standard"])?;
    refuse_unless(&body.style, "style", &[])?;
    refuse_unless(&body.background, "background", &["auto", "opaque"])?;
    let _ = (body.user, body.moderation);
    Ok(ImageCall {
        model,
        prompt,
        n: n as usize,
        size,
        seed,
        steps,
        guidance,
    })
}

/// `WIDTHxHEIGHT` in pixels.
fn parse_size(text: &str) -> Result<(usize, usize), ApiError> {
    let invalid = || {
        ApiError::invalid(
            "size",
            format!("`size` must be WIDTHxHEIGHT in pixels (e.g. 1024x1024) or auto, got {text:?}"),
        )
    };
    let (w, h) = text.split_once('x').ok_or_else(invalid)?;
    let w: usize = w.parse().map_err(|_| invalid())?;
    let h: usize = h.parse().map_err(|_| invalid())?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(ApiError::invalid(
            "size",
            format!("`size` {text}: each side must be between 1 and {MAX_SIDE} pixels"),
        ));
    }
    Ok((w, h))
}

fn refuse_unless(value: &Option<String>, field: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::invalid(
            field,
            format!("`{field}` {v:?} is not supported by this server"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ImageCall, ApiError> {
        parse_image_request(body.as_bytes())
    }

    fn refused(body: &str) -> (Option<String>, String) {
        let error = parse(body).unwrap_err();
        (error.param, error.message)
    }

    #[test]
    fn openai_requests_parse_with_the_extra_fields() {
        let call = parse(
            r#"{"model": "flux", "prompt": "a cat", "n": 2, "size": "512x768",
                "response_format": "b64_json", "seed": 7, "num_inference_steps": 20,
                "guidance_scale": 4.5, "quality": "standard", "user": "u1"}"#,
        )
        .unwrap();
        assert_eq!(
            call,
            ImageCall {
                model: "flux".into(),
                prompt: "a cat".into(),
                n: 2,
                size: Some((512, 768)),
                seed: Some(7),
                steps: Some(20),
                guidance: Some(4.5),
            }
        );
        let defaults = parse(r#"{"model": "flux", "prompt": "a cat", "size": "auto"}"#).unwrap();
        assert_eq!((defaults.n, defaults.size, defaults.seed), (1, None, None));
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        assert_eq!(refused(r#"{"prompt": "x"}"#).0.as_deref(), Some("model"));
        assert_eq!(
            refused(r#"{"model": "m", "prompt": " "}"#).0.as_deref(),
            Some("prompt")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "n": 11}"#)
                .0
                .as_deref(),
            Some("n")
        );
        let (param, message) = refused(r#"{"model": "m", "prompt": "x", "size": "big"}"#);
        assert_eq!(param.as_deref(), Some("size"));
        assert!(message.contains("WIDTHxHEIGHT"), "{message}");
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "size": "4096x4096"}"#)
                .0
                .as_deref(),
            Some("size")
        );
        let (param, message) =
            refused(r#"{"model": "m", "prompt": "x", "response_format": "url"}"#);
        assert_eq!(param.as_deref(), Some("response_format"));
        assert!(message.contains("b64_json"), "{message}");
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "seed": -1}"#)
                .0
                .as_deref(),
            Some("seed")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "num_inference_steps": 0}"#)
                .0
                .as_deref(),
            Some("num_inference_steps")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "guidance_scale": -1}"#)
                .0
                .as_deref(),
            Some("guidance_scale")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "quality": "hd"}"#)
                .0
                .as_deref(),
            Some("quality")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "style": "vivid"}"#)
                .0
                .as_deref(),
            Some("style")
        );
        assert_eq!(
            refused(r#"{"model": "m", "prompt": "x", "mask": 1}"#)
                .0
                .as_deref(),
            Some("mask")
        );
        assert_eq!(refused(r#"[1]"#).0, None);
    }
}
