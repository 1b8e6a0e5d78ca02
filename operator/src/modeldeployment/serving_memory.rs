//! Whether a served model's weights fit the GPUs a deployment asks for, judged before
//! any pod is scheduled, so that a model too large for them fails with a message
//! instead of pods that crash while loading. The shape comes from the base model's
//! name in the built-in table the training plan uses (Qwen2.5, Llama 3.x); other
//! models are not judged here. Weights are held in bf16, 2 bytes a parameter.
//! - `runtime: builtin`: `trainer serve` holds the whole model on one GPU.
//! - `runtime: vllm`: the weights are sharded across `gpus` (`--tensor-parallel-size`).
//!
//! Each GPU keeps 10% and 1 GiB for the CUDA context, the workspace and the KV cache
//! (vLLM takes 90% of a GPU by default). Passing says the model loads; how many
//! requests run at once at long contexts is the KV cache's to decide.

use anneal_crds::ModelDeployment;
use anneal_crds::limits::GPUS_MAX;
use anneal_crds::memory_plan::{ByteSize, GIB, ModelShape};
use anneal_crds::modeldeployment::ServingRuntime;

/// bf16 on the GPU.
const BYTES_PER_PARAMETER: u64 = 2;

/// What of a GPU's memory weights may take.
fn usable(gpu_memory: ByteSize) -> u64 {
    (gpu_memory.bytes() as f64 * 0.9) as u64 - GIB.min(gpu_memory.bytes() / 2)
}

/// Why `shape`'s weights (the base model `name`) do not fit the deployment's GPUs of
/// `gpu_memory` each, naming what would; `None` when they fit, or on the CPU.
pub fn weights_do_not_fit(
    deployment: &ModelDeployment,
    name: &str,
    shape: &ModelShape,
    gpu_memory: ByteSize,
) -> Option<String> {
    let gpus = u64::from(deployment.spec.resources.gpus);
    if gpus == 0 {
        return None;
    }
    let weights = shape.params() * BYTES_PER_PARAMETER;
    let shards = match deployment.spec.runtime {
        ServingRuntime::Builtin => 1,
        ServingRuntime::Vllm => gpus,
    };
    if weights.div_ceil(shards) <= usable(gpu_memory) {
        return None;
    }
    let needed = (1..=u64::from(GPUS_MAX))
        .filter(|n| shape.attention_heads.is_multiple_of(*n))
        .find(|n| weights.div_ceil(*n) <= usable(gpu_memory));
    let what = format!(
        "the weights of {name} ({:.1}B parameters) take {:.1} GiB in bf16",
        shape.params() as f64 / 1e9,
        ByteSize(weights).as_gib()
    );
    let room = format!(
        "the {:.1} GiB one {:.0} GiB GPU holds for them (10% and 1 GiB stay for the CUDA context and the KV cache)",
        ByteSize(usable(gpu_memory)).as_gib(),
        gpu_memory.as_gib()
    );
    let fix = |runtime_too: bool| match needed {
        Some(n) if runtime_too => {
            format!("use runtime: vllm with gpus: {n} (--tensor-parallel-size {n})")
        }
        Some(n) => format!("ask for gpus: {n}"),
        None => format!("no count of GPUs up to {GPUS_MAX} of this size holds them"),
    };
    Some(match deployment.spec.runtime {
        ServingRuntime::Builtin => format!(
            "{what}, more than {room}; runtime builtin serves on one GPU: {}",
            fix(true)
        ),
        ServingRuntime::Vllm => format!(
            "{what}, {:.1} GiB a GPU across gpus: {gpus}, more than {room}: {}",
            ByteSize(weights.div_ceil(gpus)).as_gib(),
            fix(false)
        ),
    })
}

#[cfg(test)]
mod tests {
    use anneal_crds::manifest::parse_modeldeployment;
    use anneal_crds::memory_plan::known_shape;

    use super::*;

    fn deployment(runtime: &str, gpus: u32) -> ModelDeployment {
        parse_modeldeployment(&format!(
            r#"
apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: big, namespace: team-a}}
spec:
  model:
    baseModel: {{name: Qwen/Qwen2.5-72B-Instruct, source: "s3://models/qwen2.5-72b"}}
  runtime: {runtime}
  resources: {{gpus: {gpus}}}
"#
        ))
        .unwrap()
    }

    fn judged(name: &str, runtime: &str, gpus: u32, gpu_gib: u64) -> Option<String> {
        let shape = known_shape(name).unwrap();
        weights_do_not_fit(
            &deployment(runtime, gpus),
            name,
            &shape,
            ByteSize::gib(gpu_gib),
        )
    }

    #[test]
    fn a_model_larger_than_a_gpu_is_refused_with_the_gpus_that_hold_it() {
        let qwen72 = "Qwen/Qwen2.5-72B-Instruct";
        assert_eq!(
            judged(qwen72, "builtin", 1, 80).unwrap(),
            "the weights of Qwen/Qwen2.5-72B-Instruct (72.7B parameters) take 135.4 GiB in bf16, more than the 71.0 GiB one 80 GiB GPU holds for them (10% and 1 GiB stay for the CUDA context and the KV cache); runtime builtin serves on one GPU: use runtime: vllm with gpus: 2 (--tensor-parallel-size 2)"
        );
        assert_eq!(
            judged(qwen72, "vllm", 1, 80).unwrap(),
            "the weights of Qwen/Qwen2.5-72B-Instruct (72.7B parameters) take 135.4 GiB in bf16, 135.4 GiB a GPU across gpus: 1, more than the 71.0 GiB one 80 GiB GPU holds for them (10% and 1 GiB stay for the CUDA context and the KV cache): ask for gpus: 2"
        );
        assert_eq!(judged(qwen72, "vllm", 2, 80), None);
        // On 24 GiB cards: 64 heads take 8 shards.
        assert!(
            judged(qwen72, "vllm", 4, 24)
                .unwrap()
                .ends_with("ask for gpus: 8"),
        );
    }

    #[test]
    fn models_that_fit_one_gpu_and_cpu_serving_pass() {
        assert_eq!(judged("Qwen/Qwen2.5-7B-Instruct", "builtin", 1, 80), None);
        assert_eq!(judged("Qwen/Qwen2.5-32B-Instruct", "builtin", 1, 80), None);
        assert_eq!(judged("Qwen/Qwen2.5-72B-Instruct", "builtin", 0, 80), None);
        // 7B on a 16 GiB card: 14.2 GiB of weights leave no room.
        assert!(judged("Qwen/Qwen2.5-7B-Instruct", "builtin", 1, 16).is_some());
    }
}
