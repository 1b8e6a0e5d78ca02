//! The GPU half of the Validating phase, as a pure function: a job whose memory plan
//! does not fit the GPUs it asks for (with several, data-parallel when the model fits
//! one, else its layers placed across them) is refused before any pod exists, with the figure and what would fit. A job
//! whose model shape is unknown is let through: its plan is skipped, never guessed.

use anneal_crds::FineTuneJob;
use anneal_crds::memory_plan::{ByteSize, DeviceMemory, ModelShape, plan_for_job};

use crate::finetunejob::validation_verdict::{Verdict, VerdictReason};

/// The model's shape, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ShapeFound {
    /// From the model's own `config.json`.
    ConfigJson(ModelShape),
    /// From the built-in table, by `spec.baseModel.name`.
    BuiltIn(ModelShape),
    /// Neither; why, in words.
    Unknown(String),
}

/// Judges the job's memory plan on its `spec.resources.gpus` GPUs of `gpu_memory`
/// each. Passes, with the plan's figures or why it was skipped, unless the plan is
/// known not to fit.
pub fn judge_memory(job: &FineTuneJob, shape: &ShapeFound, gpu_memory: ByteSize) -> Verdict {
    let valid = |message: String| Verdict {
        reason: VerdictReason::Valid,
        message,
    };
    if job.spec.resources.gpus == 0 {
        return valid(
            "memory plan skipped: the job runs on the CPU (spec.resources.gpus: 0)".into(),
        );
    }
    let (shape, from) = match shape {
        ShapeFound::ConfigJson(shape) => (*shape, "its config.json"),
        ShapeFound::BuiltIn(shape) => (*shape, "the built-in shape of its name"),
        ShapeFound::Unknown(why) => return valid(format!("memory plan skipped: {why}")),
    };
    let name = &job.spec.base_model.name;
    let gpus = job.spec.resources.gpus;
    let device = DeviceMemory::gpus(gpu_memory, gpus);
    let on_gpus = match gpus {
        1 => "one GPU".to_owned(),
        _ => format!("{gpus} GPUs"),
    };
    match plan_for_job(&job.spec, shape, device) {
        Ok(plan) => {
            let (layout, each) = match (gpus, plan.replicas) {
                (1, _) => (String::new(), ""),
                (_, 1) => (
                    format!(
                        ", its {} layers placed across {gpus} GPUs ({} on the busiest)",
                        plan.inputs.shape.layers, plan.layers_per_device
                    ),
                    "",
                ),
                (_, replicas) => (
                    format!(", data-parallel on {replicas} GPUs (a copy of the model on each)"),
                    " on each",
                ),
            };
            valid(format!(
                "memory plan ({name}, from {from}): {} of {} per GPU{layout} at micro-batch {} x {} accumulation{each} and maxTokens {}",
                plan.peak, gpu_memory, plan.micro_batch, plan.accumulation, plan.inputs.max_tokens
            ))
        }
        Err(does_not_fit) => Verdict {
            reason: VerdictReason::InsufficientGpuMemory,
            message: format!("does not fit {on_gpus}: {name} {does_not_fit}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::memory_plan::known_shape;

    fn job(model: &str, extra: serde_json::Value) -> FineTuneJob {
        let mut spec = serde_json::json!({
            "baseModel": {"name": model, "source": "s3://models/m"},
            "dataset": {"train": "s3://data/train.jsonl"},
        });
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        FineTuneJob::new("j", serde_json::from_value(spec).unwrap())
    }

    fn built_in(model: &str) -> ShapeFound {
        ShapeFound::BuiltIn(known_shape(model).unwrap())
    }

    const QWEN_7B: &str = "Qwen/Qwen2.5-7B-Instruct";
    const QWEN_72B: &str = "Qwen/Qwen2.5-72B-Instruct";

    #[test]
    fn verdicts_by_model_tokens_and_gpu() {
        let gib = ByteSize::gib;
        let tokens = |n: u32| serde_json::json!({"hyperparameters": {"maxTokens": n}});
        let cases = [
            // The standard preset at 4096 tokens: all 8 samples at a time.
            (
                job(QWEN_7B, serde_json::json!({})),
                built_in(QWEN_7B),
                gib(80),
                VerdictReason::Valid,
                "memory plan (Qwen/Qwen2.5-7B-Instruct, from the built-in shape of its name): 54.8 GiB of 80 GiB per GPU at micro-batch 8 x 1 accumulation and maxTokens 4096",
            ),
            (
                job(QWEN_7B, serde_json::json!({})),
                built_in(QWEN_7B),
                gib(141),
                VerdictReason::Valid,
                "memory plan (Qwen/Qwen2.5-7B-Instruct, from the built-in shape of its name): 54.8 GiB of 141 GiB per GPU at micro-batch 8 x 1 accumulation and maxTokens 4096",
            ),
            (
                job(QWEN_72B, serde_json::json!({})),
                built_in(QWEN_72B),
                gib(80),
                VerdictReason::InsufficientGpuMemory,
                "does not fit one GPU: Qwen/Qwen2.5-72B-Instruct needs 168.5 GiB per GPU at micro-batch 1 with maxTokens 4096 (base weights 135.4 GiB), more than the 80 GiB of a GPU; no maxTokens fits on 1 x 80 GiB GPU, or on 3 GPUs of 80 GiB with its layers placed across them (spec.resources.gpus: 3)",
            ),
            (
                job(QWEN_72B, serde_json::json!({})),
                built_in(QWEN_72B),
                gib(141),
                VerdictReason::InsufficientGpuMemory,
                "does not fit one GPU: Qwen/Qwen2.5-72B-Instruct needs 168.5 GiB per GPU at micro-batch 1 with maxTokens 4096 (base weights 135.4 GiB), more than the 141 GiB of a GPU; no maxTokens fits on 1 x 141 GiB GPU, or on 2 GPUs of 141 GiB with its layers placed across them (spec.resources.gpus: 2)",
            ),
            // Two H200s hold 72B with its layers placed across them.
            (
                job(QWEN_72B, serde_json::json!({"resources": {"gpus": 2}})),
                built_in(QWEN_72B),
                gib(141),
                VerdictReason::Valid,
                "memory plan (Qwen/Qwen2.5-72B-Instruct, from the built-in shape of its name): 134.1 GiB of 141 GiB per GPU, its 80 layers placed across 2 GPUs (40 on the busiest) at micro-batch 5 x 2 accumulation and maxTokens 4096",
            ),
            // Two 80 GiB GPUs do not: it says how many would.
            (
                job(QWEN_72B, serde_json::json!({"resources": {"gpus": 2}})),
                built_in(QWEN_72B),
                gib(80),
                VerdictReason::InsufficientGpuMemory,
                "does not fit 2 GPUs: Qwen/Qwen2.5-72B-Instruct needs 90.2 GiB per GPU at micro-batch 1 with maxTokens 4096 (base weights 70.0 GiB), more than the 80 GiB of a GPU; it fits with maxTokens 316 or less, or on 3 GPUs of 80 GiB with its layers placed across them (spec.resources.gpus: 3)",
            ),
            // 7B fits one GPU: on four it trains data-parallel, two samples on each.
            (
                job(QWEN_7B, serde_json::json!({"resources": {"gpus": 4}})),
                built_in(QWEN_7B),
                gib(80),
                VerdictReason::Valid,
                "memory plan (Qwen/Qwen2.5-7B-Instruct, from the built-in shape of its name): 26.6 GiB of 80 GiB per GPU, data-parallel on 4 GPUs (a copy of the model on each) at micro-batch 2 x 1 accumulation on each and maxTokens 4096",
            ),
            // Qwen2.5-7B's whole 32k context fits, one sample at a time; twice that does not.
            (
                job(QWEN_7B, tokens(32_768)),
                built_in(QWEN_7B),
                gib(80),
                VerdictReason::Valid,
                "memory plan (Qwen/Qwen2.5-7B-Instruct, from the built-in shape of its name): 54.8 GiB of 80 GiB per GPU at micro-batch 1 x 8 accumulation and maxTokens 32768",
            ),
            (
                job(QWEN_7B, tokens(65_536)),
                built_in(QWEN_7B),
                gib(80),
                VerdictReason::InsufficientGpuMemory,
                "does not fit one GPU: Qwen/Qwen2.5-7B-Instruct needs 92.4 GiB per GPU at micro-batch 1 with maxTokens 65536 (base weights 14.2 GiB), more than the 80 GiB of a GPU; it fits with maxTokens 54704 or less, or on 2 GPUs of 80 GiB with its layers placed across them (spec.resources.gpus: 2)",
            ),
            // A model the operator knows nothing about is let through.
            (
                job("my-org/house-model", serde_json::json!({})),
                ShapeFound::Unknown("my-org/house-model is not a built-in model and the operator does not read pvc:// sources".into()),
                gib(80),
                VerdictReason::Valid,
                "memory plan skipped: my-org/house-model is not a built-in model and the operator does not read pvc:// sources",
            ),
            // The CPU backend is not planned.
            (
                job(QWEN_72B, serde_json::json!({"resources": {"gpus": 0}})),
                built_in(QWEN_72B),
                gib(80),
                VerdictReason::Valid,
                "memory plan skipped: the job runs on the CPU (spec.resources.gpus: 0)",
            ),
        ];
        for (job, shape, memory, reason, message) in cases {
            let verdict = judge_memory(&job, &shape, memory);
            assert_eq!(
                (verdict.reason, verdict.message.as_str()),
                (reason, message),
                "{} on {memory}",
                job.spec.base_model.name
            );
        }
    }

    #[test]
    fn a_shape_from_config_json_says_so() {
        let verdict = judge_memory(
            &job("my-org/seven", serde_json::json!({})),
            &ShapeFound::ConfigJson(known_shape(QWEN_7B).unwrap()),
            ByteSize::gib(80),
        );
        assert!(verdict.passed());
        assert!(
            verdict
                .message
                .starts_with("memory plan (my-org/seven, from its config.json): 54.8 GiB"),
            "{}",
            verdict.message
        );
    }
}
