//! Data parallelism is one device's step: the same micro-batches run on 2 or 3
//! replicas of the model (every device the CPU here, so the replicas' code path runs
//! with nothing else changed) give the loss, the gradient norm and the updated adapter
//! of one device taking them in turn, with LoRA dropout on; a second step shows the
//! replicas got the update; and DPO's kept reference follows each replica.

use anneal_crds::finetunejob::TrainingType;
use anneal_model::llm::CausalLm;
use anneal_train::data_parallel::Replicas;
use anneal_train::dpo::loss::{DpoConfig, PairBatch};
use anneal_train::dpo::reference::Reference;
use anneal_train::dpo::step::{DpoStep, dpo_step};
use anneal_train::optimizer::{SftOptimizer, adamw};
use anneal_train::sft::step::{sft_step, sft_step_on};
use anneal_train::state::step_seed;
use anneal_train::tensor_batch::Batch;
use anneal_train::train_backend::CpuTrainBackend;
use burn::prelude::*;
use burn::tensor::DType;

use crate::accumulation::{SETTINGS, Stepped, adapter, assert_same, pairs, sft_samples, split};
use crate::support::{lora_with_nonzero_b, qwen_for_training};

type B = CpuTrainBackend;

/// Two SFT steps over the same 4 samples cut as `sizes`, on `devices` replicas (1: the
/// plain step), each step's dropout seeded as a run seeds it.
fn two_sft_steps(model: &CausalLm<B>, sizes: &[usize], devices: usize) -> [Stepped; 2] {
    let samples = sft_samples();
    let device = Default::default();
    let mut replicas = Replicas::new(model, &vec![device; devices]);
    assert_eq!(replicas.len(), devices);
    let assigned = replicas.assign(sizes.len());
    let batches: Vec<Batch<B>> = (split(&samples, sizes).iter().zip(assigned))
        .map(|(micro, replica)| Batch::new(micro, replicas.device(replica)))
        .collect();
    let mut optimizer: SftOptimizer<B> = adamw(0.0);
    let mut model = model.clone();
    let mut stepped = Vec::new();
    for step in 0..2 {
        B::seed(&device, step_seed(5, step));
        let stats;
        (model, stats) = match devices {
            1 => sft_step(model, &mut optimizer, &batches, SETTINGS),
            _ => sft_step_on(model, &mut optimizer, &batches, SETTINGS, &mut replicas),
        };
        stepped.push(Stepped {
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            adapter: adapter(model.clone()),
        });
    }
    stepped.try_into().ok().unwrap()
}

#[test]
fn an_sft_step_on_replicas_is_the_step_on_one_device() {
    let _generator = crate::support::generator_turn();
    // LoRA dropout on: replicas draw their masks in the order one device does.
    let model = lora_with_nonzero_b(qwen_for_training(DType::F32), 0.1);
    for sizes in [&[2, 2][..], &[1, 1, 1, 1], &[2, 1, 1]] {
        let [one_first, one_second] = two_sft_steps(&model, sizes, 1);
        assert!(
            one_second.loss != one_first.loss,
            "the update changed the model"
        );
        for devices in [2, 3] {
            let [first, second] = two_sft_steps(&model, sizes, devices);
            let what = format!("{sizes:?} on {devices} replicas");
            assert_same(&one_first, &first, &format!("{what}, step 1"));
            // Step 2 runs on every replica's copy of the update.
            assert_same(&one_second, &second, &format!("{what}, step 2"));
        }
    }
}

#[test]
fn a_dpo_step_on_replicas_keeps_each_replicas_reference() {
    let _generator = crate::support::generator_turn();
    let device: burn::tensor::Device<B> = Default::default();
    // A continued adapter: the reference is the model as it starts (its own adapter),
    // kept aside, which each replica needs beside it.
    let model = lora_with_nonzero_b(qwen_for_training(DType::F32), 0.0);
    let reference = Reference::for_training(TrainingType::Lora, true, &model);
    let trained = lora_with_nonzero_b(model.clone(), 0.0);
    let config = DpoConfig::new().with_sft_weight(0.5);
    let pairs = pairs();
    let step = |devices: usize| {
        let mut replicas = Replicas::new(&trained, &vec![device; devices]);
        let batches: Vec<PairBatch<B>> = (split(&pairs, &[2, 2]).iter())
            .zip(replicas.assign(2))
            .map(|(micro, replica)| PairBatch::new(micro, replicas.device(replica)))
            .collect();
        let mut optimizer = adamw::<B, _>(0.0);
        let (model, stats) = match devices {
            1 => dpo_step(
                trained.clone(),
                &reference,
                &config,
                &mut optimizer,
                &batches,
                SETTINGS,
            ),
            _ => {
                let beside = reference.for_replica(replicas.model(&trained, 1));
                let references = [reference.for_replica(&trained), beside];
                let step = DpoStep {
                    config: &config,
                    settings: SETTINGS,
                };
                step.run(
                    trained.clone(),
                    &references,
                    &mut optimizer,
                    &batches,
                    &mut replicas,
                )
            }
        };
        Stepped {
            loss: stats.scores.loss,
            grad_norm: stats.grad_norm,
            adapter: adapter(model),
        }
    };
    let one = step(1);
    assert!(
        one.loss != std::f64::consts::LN_2,
        "policy and reference differ"
    );
    assert_same(&one, &step(2), "2 replicas");
}
