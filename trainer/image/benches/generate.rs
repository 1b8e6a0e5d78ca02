//! Seconds per image of a FLUX pipeline folder on the CPU backend: prompt encoding,
//! the denoising steps and decoding, as `trainer generate-image` runs them. Prints one
//! JSON line (`seconds_per_image`, `peak_rss_mib`), read by benches/flux_cpu.py, which
//! runs diffusers' FluxPipeline on the same folder for the ratio.
//!
//! cargo bench -p anneal-image --bench generate -- PIPELINE_DIR WIDTH HEIGHT STEPS ITERS

use std::path::PathBuf;
use std::time::Instant;

use anneal_image::latents::pack;
use anneal_image::pipeline::{FluxPipeline, ImageRequest};
use anneal_image::sample::{decode_images, denoise};
use anneal_model::backend::CpuBackend;
use burn::tensor::DType;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: generate PIPELINE_DIR WIDTH HEIGHT STEPS ITERS";
    let dir = PathBuf::from(args.first().expect(usage));
    let number = |i: usize| -> usize { args.get(i).expect(usage).parse().expect(usage) };
    let (width, height, steps, iters) = (number(1), number(2), number(3), number(4));

    let pipe = FluxPipeline::<CpuBackend>::load(&dir, &Default::default(), DType::F32, 512)
        .expect("the pipeline loads");
    let request = ImageRequest {
        width,
        height,
        steps,
        guidance: 3.5,
        count: 1,
        seed: 0,
    };
    // (text encoders, denoising steps, VAE decoder) seconds of one image.
    let run = || {
        let start = Instant::now();
        let prompt = pipe
            .encode_prompts(&["a red circle on a blue background"])
            .expect("the prompt encodes");
        let _ = prompt.context.clone().into_data();
        let text = start.elapsed().as_secs_f64();
        let grid = pipe.check_request(&request).expect("a valid request");
        let noise = pipe.noise(&request).expect("noise");
        let start = Instant::now();
        // into_data waits for the result, so the times cover the whole computation.
        let latents = denoise(
            &pipe.transformer,
            &pipe.scheduler,
            pack(noise),
            grid,
            &prompt,
            steps,
            request.guidance,
            |_| {},
        )
        .expect("denoised");
        let _ = latents.clone().into_data();
        let denoising = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let _ = decode_images(&pipe.vae, latents, grid).into_data();
        let decoding = start.elapsed().as_secs_f64();
        [text, denoising, decoding]
    };
    // One untimed image: first-touch allocation.
    run();
    let mut parts = [0.0; 3];
    for _ in 0..iters {
        for (total, part) in parts.iter_mut().zip(run()) {
            *total += part / iters as f64;
        }
    }
    let seconds: f64 = parts.iter().sum();
    println!(
        "{}",
        serde_json::json!({
            "implementation": "anneal (burn flex, f32)",
            "seconds_per_image": seconds,
            "text_seconds": parts[0],
            "denoising_seconds": parts[1],
            "decoding_seconds": parts[2],
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
