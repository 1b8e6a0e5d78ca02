//! Gradient accumulation is one big batch: a step over the same 4 samples (SFT) or
//! pairs (DPO) run as 1 x 4, 2 x 2 and 4 x 1 micro-batches, or unevenly as 3 + 1,
//! gives the same loss, the same gradient norm and the same updated adapter, whatever
//! micro-batch the memory plan picks for a device.

use std::path::{Path, PathBuf};

use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::CausalLm;
use anneal_model::lora::projections_mut;
use anneal_train::backward::LayerActivations;
use anneal_train::dpo::data::{PreferencePair, prepare_pairs};
use anneal_train::dpo::loss::{DpoConfig, PairBatch};
use anneal_train::dpo::reference::Reference;
use anneal_train::dpo::step::dpo_step;
use anneal_train::optimizer::adamw;
use anneal_train::sft::data::prepare;
use anneal_train::sft::step::sft_step;
use anneal_train::step_settings::StepSettings;
use anneal_train::tensor_batch::Batch;
use anneal_train::tokenized::TokenizedSample;
use anneal_train::train_backend::CpuTrainBackend;
use burn::tensor::DType;

use crate::support::{lora_with_nonzero_b, qwen, qwen_for_training};

type B = CpuTrainBackend;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn tokenizer() -> ModelTokenizer {
    ModelTokenizer::from_model_dir(&qwen(), "Qwen2ForCausalLM").unwrap()
}

pub(crate) const SETTINGS: StepSettings = StepSettings {
    learning_rate: 1e-2,
    max_grad_norm: 1.0,
    activations: LayerActivations::Recomputed,
};

/// Every LoRA A and B value of `model`, in one list.
pub(crate) fn adapter(mut model: CausalLm<B>) -> Vec<f32> {
    let mut values = Vec::new();
    for (_, _, projection) in projections_mut(&mut model) {
        let lora = projection.lora.as_ref().unwrap();
        for weight in [lora.a.val(), lora.b.val()] {
            values.extend(weight.into_data().to_vec::<f32>().unwrap());
        }
    }
    values
}

/// What one step gave: its loss, its gradient norm before clipping, the adapter after.
pub(crate) struct Stepped {
    pub loss: f64,
    pub grad_norm: f64,
    pub adapter: Vec<f32>,
}

/// `items` cut into consecutive micro-batches of `sizes`.
pub(crate) fn split<'a, T>(items: &'a [T], sizes: &[usize]) -> Vec<Vec<&'a T>> {
    let mut rest = items;
    sizes
        .iter()
        .map(|&size| {
            let (head, tail) = rest.split_at(size);
            rest = tail;
            head.iter().collect()
        })
        .collect()
}

/// The adapter after the step, relative to its largest value. AdamW divides each
/// gradient by its own running root mean square, so an entry whose gradient is near
/// zero moves by a share of the learning rate that rounding decides: the padding of
/// a split's shorter rows changes the order of a few sums. Measured: 1.5e-5 for DPO
/// in 4 micro-batches (CPU kernels' exponentials within 2 ulp); a wrong accumulation
/// moves entries by up to the learning rate, 1e-2 against a largest value of 0.21.
const ADAPTER_TOLERANCE: f32 = 4e-5;

/// Asserts that every split's step is the whole batch's: loss and gradient norm to
/// 1e-5 relative, the adapter to [`ADAPTER_TOLERANCE`].
pub(crate) fn assert_same(whole: &Stepped, split: &Stepped, what: &str) {
    let relative = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(
        relative(split.loss, whole.loss) <= 1e-5,
        "{what}: loss {} vs {}",
        split.loss,
        whole.loss
    );
    assert!(
        relative(split.grad_norm, whole.grad_norm) <= 1e-5,
        "{what}: grad norm {} vs {}",
        split.grad_norm,
        whole.grad_norm
    );
    // max |gap| / max |value|: the step moved every value by about the learning rate.
    let scale = whole.adapter.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = split
        .adapter
        .iter()
        .zip(&whole.adapter)
        .fold(0f32, |m, (s, w)| m.max((s - w).abs()));
    assert!(
        scale > 0.0 && gap / scale <= ADAPTER_TOLERANCE,
        "{what}: adapter gap {gap} of {scale}"
    );
}

pub(crate) fn sft_samples() -> Vec<TokenizedSample> {
    let data = std::fs::File::open(repo().join("examples/datasets/support-sft.jsonl")).unwrap();
    let prepared = prepare(data, &tokenizer(), 400).unwrap();
    prepared.samples.into_iter().take(4).collect()
}

#[test]
fn an_sft_step_in_micro_batches_is_the_step_of_the_whole_batch() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    let model = lora_with_nonzero_b(qwen_for_training(DType::F32), 0.0);
    let samples = sft_samples();
    let lengths: Vec<usize> = samples.iter().map(|s| s.ids.len()).collect();
    assert!(
        lengths.iter().any(|&l| l != lengths[0]),
        "{lengths:?}: padding differs by split"
    );
    let step = |sizes: &[usize]| {
        let batches: Vec<Batch<B>> = split(&samples, sizes)
            .iter()
            .map(|micro| Batch::new(micro, &device))
            .collect();
        let (model, stats) = sft_step(model.clone(), &mut adamw::<B, _>(0.0), &batches, SETTINGS);
        assert_eq!(
            stats.trained_tokens,
            samples
                .iter()
                .map(|s| s.mask.iter().filter(|&&m| m).count())
                .sum::<usize>()
        );
        Stepped {
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            adapter: adapter(model),
        }
    };
    let whole = step(&[4]);
    assert_same(&whole, &step(&[2, 2]), "2 x 2");
    assert_same(&whole, &step(&[1, 1, 1, 1]), "4 x 1");
    // Uneven micro-batches weigh each sample as the whole batch does.
    assert_same(&whole, &step(&[3, 1]), "3 + 1");
}

/// Sequence packing is the same step too: the 4 samples side by side in one row, or
/// in rows of 3 + 1 or 2 + 2, with layers kept or recomputed, give
/// the unpacked batch's loss, gradient norm and adapter: each sample sees only itself
/// and its positions restart at 0.
#[test]
fn a_packed_sft_step_is_the_step_of_the_whole_batch() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    let model = lora_with_nonzero_b(qwen_for_training(DType::F32), 0.0);
    let samples = sft_samples();
    let refs: Vec<&TokenizedSample> = samples.iter().collect();
    let step = |batches: Vec<Batch<B>>, activations| {
        let settings = StepSettings {
            activations,
            ..SETTINGS
        };
        let (model, stats) = sft_step(model.clone(), &mut adamw::<B, _>(0.0), &batches, settings);
        Stepped {
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            adapter: adapter(model),
        }
    };
    let whole = step(
        vec![Batch::new(&refs, &device)],
        LayerActivations::Recomputed,
    );
    let s = &refs;
    let packings = [
        vec![vec![s[0], s[1], s[2], s[3]]],
        vec![vec![s[0], s[1], s[2]], vec![s[3]]],
        vec![vec![s[3], s[0]], vec![s[1], s[2]]],
    ];
    for rows in packings {
        let longest = rows
            .iter()
            .map(|row| row.iter().map(|s| s.ids.len() - 1).sum::<usize>())
            .max();
        let batch = Batch::<B>::packed(&rows, &device);
        assert_eq!(batch.inputs.dims(), [rows.len(), longest.unwrap()]);
        for activations in [LayerActivations::Recomputed, LayerActivations::Kept] {
            let what = format!("{} rows, {activations:?}", rows.len());
            assert_same(
                &whole,
                &step(vec![Batch::packed(&rows, &device)], activations),
                &what,
            );
        }
    }
}

pub(crate) fn pairs() -> Vec<PreferencePair> {
    let data = std::fs::read(repo().join("examples/quickstart/house-style-dpo.jsonl")).unwrap();
    let prepared = prepare_pairs(data.as_slice(), &tokenizer(), 256).unwrap();
    prepared.pairs.into_iter().take(4).collect()
}

#[test]
fn a_dpo_step_in_micro_batches_is_the_step_of_the_whole_batch() {
    let _generator = crate::support::generator_turn();
    let device = Default::default();
    // Adapter B is not zero, so the trained model already differs from its reference
    // (the adapter off) and Δ is not 0; the SFT term and label smoothing are on.
    let model = lora_with_nonzero_b(qwen_for_training(DType::F32), 0.0);
    let config = DpoConfig::new()
        .with_label_smoothing(0.1)
        .with_sft_weight(0.5);
    let pairs = pairs();
    assert_eq!(pairs.len(), 4);
    let step = |sizes: &[usize]| {
        let batches: Vec<PairBatch<B>> = split(&pairs, sizes)
            .iter()
            .map(|micro| PairBatch::new(micro, &device))
            .collect();
        let mut optimizer = adamw::<B, _>(0.0);
        let reference = &Reference::AdapterOff;
        let (model, stats) = dpo_step(
            model.clone(),
            reference,
            &config,
            &mut optimizer,
            &batches,
            SETTINGS,
        );
        assert_eq!(stats.pairs, 4);
        Stepped {
            loss: stats.scores.loss,
            grad_norm: stats.grad_norm,
            adapter: adapter(model),
        }
    };
    let whole = step(&[4]);
    assert!(
        whole.loss != std::f64::consts::LN_2,
        "the rewards are not all zero"
    );
    assert_same(&whole, &step(&[2, 2]), "2 x 2");
    assert_same(&whole, &step(&[1, 1, 1, 1]), "4 x 1");
    // Uneven micro-batches weigh each pair as the whole batch does.
    assert_same(&whole, &step(&[3, 1]), "3 + 1");
}
