//! `trainer serve` on an image model (the tiny random FLUX pipeline of the reference
//! fixtures, with a LoRA adapter): the official `openai` client's `images.generate`
//! gets the images the library makes for the same seed, bad requests are refused by
//! field, a full queue gets 429, a chat request gets told where to go, and SIGTERM
//! lets the image in flight finish.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anneal_image::flux::lora::FluxLora;
use anneal_image::pipeline::{FluxPipeline, ImageRequest};
use anneal_image::png_out::encode_png;
use anneal_model::backend::CpuBackend;
use base64::Engine as _;
use burn::tensor::DType;
use serde_json::Value;

use crate::support::fixture;
use crate::support::serve::{Server, test_python};

fn start(extra: &[&str]) -> Server {
    let lora = format!("styled={}", fixture("flux-tiny").join("lora-a").display());
    let mut args = vec!["--adapter", &lora];
    args.extend_from_slice(extra);
    Server::start_with(fixture("flux-tiny").to_str().unwrap(), &args, &[])
}

/// The library's PNGs for the Python client's request (seed 11, 3 steps, guidance 4,
/// 12x16, two images), with `adapter` attached when given.
fn library_pngs(adapter: Option<&Path>) -> Vec<Vec<u8>> {
    let mut pipe = FluxPipeline::<CpuBackend>::load(
        &fixture("flux-tiny"),
        &Default::default(),
        DType::F32,
        512,
    )
    .unwrap();
    if let Some(path) = adapter {
        pipe.set_adapters(&[FluxLora::read(path).unwrap()]).unwrap();
    }
    let request = ImageRequest {
        width: 12,
        height: 16,
        steps: 3,
        guidance: 4.0,
        count: 2,
        seed: 11,
    };
    let prompt = pipe
        .encode_prompts(&["a red circle on a blue background"])
        .unwrap();
    let noise = pipe.noise(&request).unwrap();
    let values = pipe
        .generate(&request, &prompt, noise, |_| {})
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    values
        .chunks(3 * 12 * 16)
        .map(|chw| encode_png(chw, 12, 16).unwrap())
        .collect()
}

fn decoded(images: &Value) -> Vec<Vec<u8>> {
    images
        .as_array()
        .unwrap()
        .iter()
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap())
                .unwrap()
        })
        .collect()
}

#[test]
fn the_openai_sdk_gets_the_libraries_images_for_the_base_and_an_adapter() {
    let server = start(&[]);
    let output = Command::new(test_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_openai_images.py"))
        .args([&server.base_url(), "flux-tiny", "styled"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the openai client failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log.lock().unwrap()
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["models"], serde_json::json!(["flux-tiny", "styled"]));
    assert_eq!(seen["base"]["decodes"], true);
    let base = decoded(&seen["base"]["images"]);
    let styled = decoded(&seen["adapter"]["images"]);
    assert_eq!(base, library_pngs(None));
    assert_eq!(
        styled,
        library_pngs(Some(&fixture("flux-tiny").join("lora-a")))
    );
    assert_ne!(base, styled);

    let errors = &seen["errors"];
    assert_eq!(errors["unknown_model"]["status"], 404);
    assert_eq!(errors["unknown_model"]["code"], "model_not_found");
    assert_eq!(errors["size"]["status"], 400);
    assert_eq!(errors["size"]["param"], "size");
    assert!(
        errors["size"]["message"]
            .as_str()
            .unwrap()
            .contains("multiples of 4")
    );
    assert_eq!(errors["url"]["param"], "response_format");
    assert_eq!(errors["n"]["param"], "n");
    assert_eq!(server.metric("anneal_serve_generated_images_total"), 4.0);
}

#[test]
fn a_full_queue_gets_429_chat_is_refused_and_sigterm_finishes_the_image_in_flight() {
    let mut server = start(&[
        "--max-running",
        "1",
        "--max-waiting",
        "0",
        "--shutdown-grace-seconds",
        "60",
    ]);
    let (status, body) = server.call(
        "POST",
        "/v1/chat/completions",
        r#"{"model": "flux-tiny", "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("/v1/images/generations"), "{body}");

    // A slow request (a large image, many steps) holds the only place.
    let slow =
        r#"{"model": "flux-tiny", "prompt": "a dot", "size": "64x64", "num_inference_steps": 100}"#;
    let mut socket = server.open("POST", "/v1/images/generations", slow);
    server.wait_for("the slow request to take its place", |s| {
        s.metric("anneal_serve_requests_in_flight") >= 1.0
    });
    let (status, body) = server.call(
        "POST",
        "/v1/images/generations",
        r#"{"model": "flux-tiny", "prompt": "x", "size": "12x16"}"#,
    );
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limit_exceeded"), "{body}");

    // SIGTERM while it runs: health turns 503, the image still arrives, then exit 0.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut socket, &mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    assert!(reply.contains("\"b64_json\""), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{}", server.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log.lock().unwrap());
}
