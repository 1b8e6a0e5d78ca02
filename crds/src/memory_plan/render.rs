//! The plan as a table people read (`trainer plan JOB.yaml`): one row per part of the
//! peak in GiB, with the arithmetic behind it, then the micro-batch and accumulation.

use std::fmt;

use super::cpu_peak::CPU_MARGIN_PERCENT;
use super::footprint::{
    MARGIN_PERCENT, layer_weight_dtype, logits_chunk_tokens, trainable_bytes_per_param,
};
use super::inputs::DeviceKind;
use super::inputs::{PlanInputs, TrainedWeights};
use super::plan::MemoryPlan;

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inputs = &self.inputs;
        let shape = &inputs.shape;
        let cpu = inputs.device.kind == DeviceKind::Cpu;
        writeln!(f, "memory plan: {}", describe_inputs(inputs))?;
        let rows = [
            ("base weights", self.base_weights, describe_weights(self)),
            (
                "trainable state",
                self.trainable_state,
                format!(
                    "{} parameters x {} bytes ({})",
                    count(self.trainable_params),
                    trainable_bytes_per_param(inputs),
                    match inputs.trained {
                        TrainedWeights::Lora { .. } => "f32 value, gradient, 2 AdamW moments",
                        TrainedWeights::Full => "f32 master copy, gradient, 2 AdamW moments",
                    }
                ),
            ),
            (
                "activations",
                self.activations,
                format!(
                    "{} x {:.2} GiB per sample ({})",
                    self.micro_batch,
                    self.activations_per_sample.as_gib(),
                    if inputs.gradient_checkpointing {
                        "each layer's input kept, one layer recomputed at a time"
                    } else {
                        "every layer's activations kept"
                    }
                ),
            ),
            (
                "shared tables",
                self.shared_tables,
                "causal-mask triangles and RoPE tables, once per length".to_owned(),
            ),
            (
                "logits",
                self.logits,
                format!(
                    "a chunk of up to {} tokens x {} vocabulary, f32, {}",
                    logits_chunk_tokens(shape.vocab_size),
                    shape.vocab_size,
                    match cpu {
                        false => "and its gradient",
                        true => "its gradient in place",
                    }
                ),
            ),
            (
                "margin",
                self.margin,
                match cpu {
                    false => {
                        format!("{MARGIN_PERCENT}% + 1 GiB: workspace, fragmentation, CUDA context")
                    }
                    true => format!(
                        "{CPU_MARGIN_PERCENT}% + 64 MiB: the allocator's slack and the process"
                    ),
                },
            ),
            (
                "peak",
                self.peak,
                match cpu {
                    false => format!(
                        "of {} per {}",
                        inputs.device.per_device,
                        inputs.device.kind.noun()
                    ),
                    true => format!(
                        "of {} per CPU (activations and the logits chunk are never held at once: the larger counts)",
                        inputs.device.per_device
                    ),
                },
            ),
        ];
        for (part, bytes, how) in rows {
            writeln!(f, "  {part:<16}{:>9.2} GiB  {how}", bytes.as_gib())?;
        }
        let each = match self.replicas {
            1 => String::new(),
            n => format!(
                " on each of {n} {}s, data-parallel (a copy of the model on each)",
                inputs.device.kind.noun()
            ),
        };
        write!(
            f,
            "micro-batch {} x {} accumulation step{}{each} = batchSize {}",
            self.micro_batch,
            self.accumulation,
            if self.accumulation == 1 { "" } else { "s" },
            inputs.batch_size
        )?;
        let room = self.micro_batch * self.accumulation * self.replicas;
        if room != inputs.batch_size && self.replicas == 1 {
            write!(
                f,
                " (the last micro-batch has {})",
                inputs.batch_size - self.micro_batch * (self.accumulation - 1)
            )?;
        } else if room != inputs.batch_size {
            write!(f, " (some micro-batches are shorter)")?;
        }
        Ok(())
    }
}

/// The base weights' row: parameters x bytes, and where the layers are held
/// narrower than they compute, the two parts and the widened layer.
fn describe_weights(plan: &MemoryPlan) -> String {
    let inputs = &plan.inputs;
    let (layer_dtype, base_dtype) = (layer_weight_dtype(inputs), inputs.base_dtype);
    if layer_dtype == base_dtype {
        let params = plan.base_weights.bytes() / base_dtype.bytes();
        return format!(
            "{} parameters x {} bytes ({}){}",
            count(params),
            base_dtype.bytes(),
            base_dtype.name(),
            placement(plan)
        );
    }
    let shape = &inputs.shape;
    format!(
        "{} layer parameters x {} bytes ({}), {} outside the layers x {} bytes ({}), one layer widened to {} at a time",
        count(plan.layers_per_device * shape.layer_params()),
        layer_dtype.bytes(),
        layer_dtype.name(),
        count(shape.outside_layer_params()),
        base_dtype.bytes(),
        base_dtype.name(),
        base_dtype.name()
    )
}

/// `LoRA r8 on 7 modules, 1 sequence of 4096 tokens per sample, batchSize 8, recomputation on, 1 x 80 GiB GPU`.
fn describe_inputs(inputs: &PlanInputs) -> String {
    let trained = match &inputs.trained {
        TrainedWeights::Lora { rank, targets, .. } => {
            let modules: Vec<&str> = targets.iter().map(|t| t.hf_name()).collect();
            format!("LoRA r{rank} on {}", modules.join(", "))
        }
        TrainedWeights::Full => "full training".to_owned(),
    };
    let sequences = inputs.sequences_per_sample;
    format!(
        "{trained}; {sequences} sequence{} of {} tokens per sample, batchSize {}, recomputation {}; {}",
        if sequences == 1 { "" } else { "s" },
        inputs.max_tokens,
        inputs.batch_size,
        if inputs.gradient_checkpointing {
            "on"
        } else {
            "off"
        },
        inputs.device
    )
}

/// `, 40 of 80 layers on this GPU` when the layers are spread over several devices.
fn placement(plan: &MemoryPlan) -> String {
    let layers = plan.inputs.shape.layers;
    if plan.layers_per_device == layers {
        String::new()
    } else {
        format!(
            ", {} of {layers} layers and the embeddings on the busiest {}",
            plan.layers_per_device,
            plan.inputs.device.kind.noun()
        )
    }
}

/// A parameter count as `7.62B`, `20.19M`, `1.2K` or `12`.
fn count(n: u64) -> String {
    let n_f = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.2}B", n_f / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.2}M", n_f / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}K", n_f / 1e3)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use crate::hyperparameters::TargetModule;
    use crate::memory_plan::{
        ByteSize, DeviceMemory, PlanInputs, TrainedWeights, WeightDtype, known_shape, plan,
    };

    #[test]
    fn a_plan_reads_as_a_table_in_gib() {
        let inputs = PlanInputs {
            shape: known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap(),
            base_dtype: WeightDtype::Bf16,
            trained: TrainedWeights::Lora {
                rank: 8,
                targets: TargetModule::ALL.to_vec(),
                dropout: true,
            },
            sequences_per_sample: 1,
            max_tokens: 4096,
            batch_size: 8,
            gradient_checkpointing: true,
            device: DeviceMemory::gpus(ByteSize::gib(80), 1),
        };
        let text = plan(&inputs).unwrap().to_string();
        let expected = "\
memory plan: LoRA r8 on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; 1 sequence of 4096 tokens per sample, batchSize 8, recomputation on; 1 x 80 GiB GPU
  base weights        14.19 GiB  7.62B parameters x 2 bytes (bf16)
  trainable state      0.30 GiB  20.19M parameters x 16 bytes (f32 value, gradient, 2 AdamW moments)
  activations         34.13 GiB  8 x 4.27 GiB per sample (each layer's input kept, one layer recomputed at a time)
  shared tables        0.01 GiB  causal-mask triangles and RoPE tables, once per length
  logits               0.25 GiB  a chunk of up to 220 tokens x 152064 vocabulary, f32, and its gradient
  margin               5.89 GiB  10% + 1 GiB: workspace, fragmentation, CUDA context
  peak                54.76 GiB  of 80 GiB per GPU
micro-batch 8 x 1 accumulation step = batchSize 8";
        assert_eq!(text, expected);

        let spread = PlanInputs {
            shape: known_shape("Qwen/Qwen2.5-72B-Instruct").unwrap(),
            device: DeviceMemory::gpus(ByteSize::gib(141), 2),
            ..inputs
        };
        let text = plan(&spread).unwrap().to_string();
        assert!(
            text.contains("  base weights        70.03 GiB  37.60B parameters x 2 bytes (bf16), 40 of 80 layers and the embeddings on the busiest GPU\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "micro-batch 5 x 2 accumulation steps = batchSize 8 (the last micro-batch has 3)"
            ),
            "{text}"
        );
    }
}
