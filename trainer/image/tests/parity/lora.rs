//! LoRA adapters in diffusers' FLUX format, made by PEFT, give the images diffusers
//! gives with them (one adapter; two adding up; none again after clearing).

use anneal_image::flux::lora::FluxLora;
use anneal_image::pipeline::{FluxPipeline, ImageRequest};
use burn::tensor::DType;

use super::fixtures::*;

fn request() -> ImageRequest {
    ImageRequest {
        width: 12,
        height: 16,
        steps: 3,
        guidance: 4.0,
        count: 1,
        seed: 0,
    }
}

#[test]
fn adapters_change_the_image_exactly_as_in_diffusers() {
    let r = reference();
    let mut pipe =
        FluxPipeline::<B>::load(&fixtures(), &Default::default(), DType::F32, 30).unwrap();
    let prompt = pipe
        .encode_prompts(&["a red circle on a blue background"])
        .unwrap();
    let image = |pipe: &FluxPipeline<B>| {
        values(
            pipe.generate(&request(), &prompt, tensor::<4>(&r, "lora.noise"), |_| {})
                .unwrap(),
        )
    };
    let a = FluxLora::read(&fixtures().join("lora-a")).unwrap();
    // Rank 4 on 11 kinds of layer, in both block kinds.
    assert!(
        a.modules()
            .any(|m| m == "single_transformer_blocks.1.attn.to_q")
    );
    assert!(
        a.modules()
            .any(|m| m == "transformer_blocks.0.ff_context.net.0.proj")
    );
    let b = FluxLora::read(&fixtures().join("lora-b/pytorch_lora_weights.safetensors")).unwrap();

    pipe.set_adapters(std::slice::from_ref(&a)).unwrap();
    let with_a = image(&pipe);
    let error_a = relative_error(&with_a, &r["lora.image_a"].0);
    pipe.set_adapters(&[a, b]).unwrap();
    let error_ab = relative_error(&image(&pipe), &r["lora.image_ab"].0);
    pipe.set_adapters(&[]).unwrap();
    let none = image(&pipe);
    let error_none = relative_error(&none, &r["lora.image_none"].0);
    eprintln!("lora: a {error_a:e}, a+b {error_ab:e}, none {error_none:e}");
    assert!(error_a < 5e-5 && error_ab < 5e-5 && error_none < 5e-5);
    // The adapter matters: its image is far from the base model's.
    assert!(relative_error(&with_a, &none) > 1e-2);
}

#[test]
fn adapters_that_do_not_fit_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: Vec<(&str, Vec<usize>)>| {
        let path = dir.path().join(name);
        let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(n, shape)| {
                let bytes = vec![0u8; 4 * shape.iter().product::<usize>()];
                (n.to_owned(), bytes, shape)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(n, bytes, shape)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    bytes,
                )
                .unwrap();
                (n.clone(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    };
    let mut pipe =
        FluxPipeline::<B>::load(&fixtures(), &Default::default(), DType::F32, 30).unwrap();
    let refused = |pipe: &mut FluxPipeline<B>, path: &std::path::Path| match FluxLora::read(path) {
        Err(e) => e.to_string(),
        Ok(lora) => pipe.set_adapters(&[lora]).unwrap_err().to_string(),
    };
    let unknown = write(
        "unknown.safetensors",
        vec![
            (
                "transformer.transformer_blocks.9.attn.to_q.lora_A.weight",
                vec![2, 32],
            ),
            (
                "transformer.transformer_blocks.9.attn.to_q.lora_B.weight",
                vec![32, 2],
            ),
        ],
    );
    let error = refused(&mut pipe, &unknown);
    assert!(
        error.contains("transformer_blocks.9.attn.to_q") && error.contains("no such linear layer"),
        "{error}"
    );
    let wrong = write(
        "wrong.safetensors",
        vec![
            ("transformer.x_embedder.lora_A.weight", vec![2, 8]),
            ("transformer.x_embedder.lora_B.weight", vec![32, 2]),
        ],
    );
    let error = refused(&mut pipe, &wrong);
    assert!(
        error.contains("x_embedder") && error.contains("8x32") && error.contains("16x32"),
        "{error}"
    );
    let text = write(
        "text.safetensors",
        vec![(
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
            vec![2, 20],
        )],
    );
    assert!(refused(&mut pipe, &text).contains("text encoders"));
    let empty = write("empty.safetensors", vec![("something.else", vec![1])]);
    assert!(refused(&mut pipe, &empty).contains("not a diffusers FLUX LoRA file"));
}
