//! `trainer plan PIPELINE_DIR`: what making images with a FLUX pipeline needs in
//! memory, read from its configs alone: each component's weights at the backend's
//! bytes (bf16 on a GPU, f32 on the CPU), the peak of `trainer generate-image` (every
//! weight is loaded at once; the text encoders are freed before denoising, so their
//! memory goes to the activations) and of `trainer serve` (they stay), and whether
//! that fits the device.

use std::process::ExitCode;

use anneal_crds::memory_plan::ByteSize;
use anneal_image::memory::PipelineSize;
use anneal_image::pipeline::PipelineDefaults;

use crate::plan_command::PlanArgs;

/// 0 when generating fits, 1 when it does not, 2 when no plan could be made.
pub fn run(args: &PlanArgs) -> ExitCode {
    let dir = &args.manifest;
    let (size, defaults) = match PipelineSize::read(dir)
        .and_then(|size| PipelineDefaults::read(dir).map(|defaults| (size, defaults)))
    {
        Ok(read) => read,
        Err(error) => {
            eprintln!("trainer plan: {error}");
            return ExitCode::from(2);
        }
    };
    // A pipeline runs on one device.
    let (on, budget, bytes) = match args.cpu_memory {
        Some(memory) => ("the CPU, f32", memory, 4),
        None => ("one GPU, bf16", args.gpu_memory, 2),
    };
    let (width, height) = args.size.unwrap_or_else(|| defaults.size());
    let count = args.count.max(1) as u64;
    let prompt_tokens = defaults.prompt_tokens() as u64;
    let row = |name: &str, parameters: u64, note: &str| {
        format!(
            "  {name:<12} {:>16} parameters  {:>9}{note}",
            thousands(parameters),
            ByteSize(parameters * bytes).to_string()
        )
    };
    println!("FLUX pipeline {} on {on}:", dir.display());
    println!("{}", row("transformer", size.transformer, ""));
    println!(
        "{}",
        row(
            "T5 encoder",
            size.t5,
            "  (freed by generate-image once the prompt is encoded)"
        )
    );
    println!(
        "{}",
        row(
            "CLIP text",
            size.clip,
            "  (freed by generate-image once the prompt is encoded)"
        )
    );
    println!("{}", row("VAE decoder", size.vae_decoder, ""));
    let denoising = bytes * (size.transformer + size.vae_decoder);
    let encoders = bytes * (size.t5 + size.clip);
    let activations =
        size.activation_bytes(width as u64, height as u64, count, prompt_tokens, bytes);
    let generate = (denoising + encoders).max(denoising + activations);
    let serve = denoising + encoders + activations;
    println!(
        "{count} image(s) of {width}x{height} with {prompt_tokens} T5 tokens: activations about {} (an estimate: the widest block's tensors and one block of attention scores)",
        ByteSize(activations)
    );
    println!(
        "peak: trainer generate-image {}, trainer serve {} (budget {budget})",
        ByteSize(generate),
        ByteSize(serve)
    );
    if serve <= budget.0 {
        println!("fits: both");
        ExitCode::SUCCESS
    } else if generate <= budget.0 {
        println!(
            "fits: generate-image only; trainer serve keeps the text encoders and needs {}",
            ByteSize(serve)
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "does not fit: generating needs {} of {budget}",
            ByteSize(generate)
        );
        ExitCode::from(1)
    }
}

/// `n` with thousands separators.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
