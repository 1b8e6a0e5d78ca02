use std::path::Path;

use burn::tensor::DType;

use super::*;
use crate::backend::CpuBackend;
use crate::llm::{CausalLm, load_model};

type B = CpuBackend;

fn tiny() -> CausalLm<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
    load_model::<B>(&dir, &Default::default(), DType::F32)
        .unwrap()
        .1
}

/// `len` token ids starting from `seed`.
fn sample(seed: usize, len: usize) -> Vec<i64> {
    (0..len)
        .map(|i| ((seed * 131 + i * 37) % 250) as i64)
        .collect()
}

fn logits(model: &CausalLm<B>, rows: Vec<Vec<i64>>, layout: Layout<'_>) -> Vec<f32> {
    let (n, len) = (rows.len(), rows[0].len());
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(rows.concat(), [n, len]),
        &Default::default(),
    );
    let (hidden, _) = model.forward_laid_out(ids, None, layout);
    model.logits(hidden).into_data().to_vec::<f32>().unwrap()
}

/// Every sample of two packed rows (one of them padded, and long enough that its
/// blocks start past the row's first key) gets the logits it gets alone, and the
/// padding changes nothing.
#[test]
fn each_packed_sample_computes_what_it_computes_alone() {
    let model = tiny();
    let vocab = model.head().dims()[1];
    let rows = [vec![70usize, 10, 100], vec![30, 130]];
    let len = 180;
    let packed = PackedRows::new(&rows, len);
    let mut seed = 0;
    let mut ids = Vec::new();
    let mut alone = Vec::new();
    for lengths in &rows {
        let mut row = Vec::new();
        for &n in lengths {
            seed += 1;
            let tokens = sample(seed, n);
            alone.push(logits(
                &model,
                vec![tokens.clone()],
                Layout::OneSequencePerRow,
            ));
            row.extend(tokens);
        }
        row.resize(len, 3); // padding
        ids.push(row);
    }
    let together = logits(&model, ids, Layout::Packed(&packed));
    let mut next = alone.iter();
    for (r, lengths) in rows.iter().enumerate() {
        let mut start = 0;
        for &n in lengths {
            let want = next.next().unwrap();
            let got = &together[(r * len + start) * vocab..(r * len + start + n) * vocab];
            let gap = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(gap < 1e-4, "row {r}, sample at {start} of {n}: {gap}");
            start += n;
        }
    }
}

#[test]
fn positions_restart_per_sample_and_attention_takes_the_samples_apart() {
    let packed = PackedRows::new(&[vec![3, 2], vec![1, 4]], 6);
    assert_eq!(packed.positions(), [0, 1, 2, 0, 1, 0, 0, 0, 1, 2, 3, 0]);
    let device = Default::default();
    let apart = packed.unpacking::<B>(&device);
    assert_eq!(apart.longest(), 4);
    // Token t of the batch holds t in all its 2 channels.
    let tokens = Tensor::<B, 1, Int>::arange(0..12, &device)
        .float()
        .reshape([12, 1])
        .repeat_dim(1, 2)
        .reshape([2, 6, 1, 2]);
    let samples = apart.samples_apart(tokens.clone()); // [4, 4, 1, 2]
    assert_eq!(samples.dims(), [4, 4, 1, 2]);
    let firsts: Vec<f32> = samples
        .clone()
        .narrow(3, 0, 1)
        .into_data()
        .to_vec()
        .unwrap();
    // Samples (3, 2 | 1, 4 tokens), each padded to 4 slots with token 0.
    assert_eq!(
        firsts,
        [
            0., 1., 2., 0., 3., 4., 0., 0., 6., 0., 0., 0., 7., 8., 9., 10.
        ]
    );
    // Back in rows, every token of a sample is where it was; padding (5, 11) gets slot 0.
    let back = apart.back_in_rows(samples.reshape([4, 4, 2]), 2, 6);
    let back: Vec<f32> = back.narrow(2, 0, 1).into_data().to_vec().unwrap();
    assert_eq!(back, [0., 1., 2., 3., 4., 0., 6., 7., 8., 9., 10., 0.]);
}
