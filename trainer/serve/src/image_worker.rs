//! The image worker: the thread that owns an image pipeline and makes one request's
//! images at a time, in arrival order (a FLUX step at 1024x1024 keeps a GPU busy on
//! its own). A request whose client left before its turn is skipped; a generation
//! that panics fails its request and nothing else.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Receiver;

use anneal_image::flux::FluxTransformer;
use anneal_image::pipeline::FluxPipeline;
use anneal_image::png_out::encode_png;
use burn::prelude::Backend;

use crate::image_http::ImageJob;

/// Serves `jobs` until every sender is gone. `transformers[0]` is the base model's,
/// each other one the base with one adapter attached (sharing the base's tensors).
pub fn run_image_worker<B: Backend>(
    pipe: &mut FluxPipeline<B>,
    transformers: &[FluxTransformer<B>],
    jobs: Receiver<ImageJob>,
) {
    for job in jobs {
        if job.reply.is_closed() {
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| make_images(pipe, transformers, &job)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(format!("image generation failed: {message}"))
            });
        // The client may have left meanwhile; nobody else wants the images.
        let _ = job.reply.send(result);
    }
}

fn make_images<B: Backend>(
    pipe: &mut FluxPipeline<B>,
    transformers: &[FluxTransformer<B>],
    job: &ImageJob,
) -> Result<Vec<Vec<u8>>, String> {
    pipe.transformer = transformers[job.model].clone();
    let request = &job.request;
    let prompt = pipe
        .encode_prompts(&[&job.prompt])
        .map_err(|e| e.to_string())?;
    let noise = pipe.noise(request).map_err(|e| e.to_string())?;
    let images = pipe
        .generate(request, &prompt, noise, |_| {})
        .map_err(|e| e.to_string())?;
    let values = images
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    values
        .chunks(3 * request.width * request.height)
        .map(|chw| encode_png(chw, request.width, request.height).map_err(|e| e.to_string()))
        .collect()
}
