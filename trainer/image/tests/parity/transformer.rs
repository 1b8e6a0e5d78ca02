//! The FLUX transformer, its 2x2 packing and the sampler schedule, against diffusers.

use anneal_image::flux::{Conditioning, FluxTransformer, load_flux_transformer};
use anneal_image::latents::{pack, unpack};
use anneal_image::schedule::SchedulerConfig;
use burn::tensor::DType;

use super::fixtures::*;

fn run(model: &FluxTransformer<B>, r: &Reference, case: &str) -> Vec<f32> {
    let timestep = r[&format!("{case}.timestep")].0.clone();
    let guidance = r.get(&format!("{case}.guidance")).map(|g| g.0.clone());
    let cond = Conditioning {
        context: tensor::<3>(r, &format!("{case}.context")),
        pooled: tensor::<2>(r, &format!("{case}.pooled")),
        timestep: &timestep,
        guidance: guidance.as_deref(),
    };
    // Latents 8x6: a 4x3 grid of packed tokens.
    values(model.forward(tensor::<3>(r, &format!("{case}.packed")), (4, 3), &cond))
}

#[test]
fn the_transformer_matches_diffusers_in_f32() {
    let r = reference();
    let (config, model) = load_flux_transformer::<B>(
        &fixtures().join("transformer"),
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    assert!(config.guidance_embeds);
    let ours = run(&model, &r, "transformer");
    let theirs = &r["transformer.output"].0;
    let error = relative_error(&ours, theirs);
    eprintln!("f32: relative error {error:e}");
    assert!(error < 1e-5, "relative error {error}");
    // The guidance embedding takes part: another scale gives another output.
    let timestep = r["transformer.timestep"].0.clone();
    let cond = Conditioning {
        context: tensor::<3>(&r, "transformer.context"),
        pooled: tensor::<2>(&r, "transformer.pooled"),
        timestep: &timestep,
        guidance: Some(&[7.0, 7.0]),
    };
    let other = values(model.forward(tensor::<3>(&r, "transformer.packed"), (4, 3), &cond));
    assert!(relative_error(&other, theirs) > 1e-2);
}

#[test]
fn the_schnell_transformer_in_bf16_matches_diffusers_within_bf16_rounding() {
    let r = reference();
    let (config, model) = load_flux_transformer::<B>(
        &fixtures().join("transformer-schnell"),
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    assert!(!config.guidance_embeds);
    assert_eq!(config.parameters(), 122_256);
    let ours = run(&model, &r, "transformer-schnell");
    // diffusers ran every op in bf16; this runs the bf16 weights in f32.
    let error = relative_error(&ours, &r["transformer-schnell.output"].0);
    eprintln!("bf16: relative error {error:e}");
    assert!(error < 2e-2, "relative error {error}");
}

#[test]
fn packing_and_unpacking_match_diffusers_exactly() {
    let r = reference();
    let packed = pack(tensor::<4>(&r, "transformer.latents"));
    assert_eq!(packed.dims(), [2, 12, 16]);
    assert_eq!(values(packed.clone()), r["transformer.packed"].0);
    assert_eq!(values(unpack(packed, 4, 3)), r["transformer.latents"].0);
    let unpacked = unpack(tensor::<3>(&r, "transformer.output"), 4, 3);
    assert_eq!(values(unpacked), r["transformer.unpacked"].0);
}

#[test]
fn sampler_sigmas_match_diffusers_to_the_bit() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
            .unwrap();
    let dev = SchedulerConfig::read(&fixtures().join("scheduler")).unwrap();
    assert!(dev.use_dynamic_shifting);
    let schnell: SchedulerConfig = serde_json::from_str(r#"{"shift": 1.0}"#).unwrap();
    let cases = json["schedules"].as_array().unwrap();
    assert_eq!(cases.len(), 13);
    for case in cases {
        let steps = case["steps"].as_u64().unwrap() as usize;
        let expected: Vec<f32> = case["sigmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let (config, seq) = match case["image_seq_len"].as_u64() {
            Some(seq) => {
                let mu = case["mu"].as_f64().unwrap();
                assert!((dev.mu(seq as usize) - mu).abs() < 1e-12, "mu at {seq}");
                (&dev, seq as usize)
            }
            None => (&schnell, 0),
        };
        let sigmas = config.sigmas(steps, seq).unwrap();
        assert_eq!(sigmas, expected, "{steps} steps, {seq} tokens");
        let timesteps: Vec<f32> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours: Vec<f32> = sigmas[..steps].iter().map(|s| s * 1000.0).collect();
        assert_eq!(ours, timesteps);
    }
}
