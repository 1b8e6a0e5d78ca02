//! The plan itself: the peak of one training step on the busiest device, the largest
//! micro-batch that fits and the gradient accumulation that reaches `batchSize`; or,
//! when not even one sample fits, a [`DoesNotFit`] that says what would.
//!
//! With several GPUs, a model that fits one trains data-parallel: a copy on each GPU,
//! each on its share of a step's batch, so the plan is one GPU's at that share. A
//! model that does not fit one has its decoder layers placed across them, and the plan
//! counts the busiest GPU.

use super::byte_size::ByteSize;
use super::cpu_peak::{
    cpu_layer_phase_bytes, cpu_logits_bytes, cpu_loss_phase_activation_bytes, cpu_margin_bytes,
};
use super::footprint::{
    activation_bytes_per_sample, base_weight_bytes, logits_bytes, margin_bytes, shared_table_bytes,
    trainable_params, trainable_state_bytes,
};
use super::inputs::{DeviceKind, DeviceMemory, PlanInputs};

/// The most devices [`DoesNotFit`] looks at when it asks how many would hold a job
/// (and never more than the model has layers: a device holds at least one).
pub const DEVICES_SEARCH_MAX: u32 = 64;

/// Where the memory of one training step goes, on the busiest device.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub inputs: PlanInputs,
    /// Copies of the model that train side by side, one per GPU, each on its share of
    /// a step's batch (data parallelism); 1 on one device, and when the layers are
    /// placed across several. Every figure below is one device's.
    pub replicas: u64,
    /// Decoder layers on the busiest device (all of them on one device).
    pub layers_per_device: u64,
    /// The frozen base (or, with full training, the compute copy) in its dtype.
    pub base_weights: ByteSize,
    /// Parameters that train on the busiest device.
    pub trainable_params: u64,
    /// Their f32 values, gradients and AdamW moments (and the master copy, full training).
    pub trainable_state: ByteSize,
    /// Activations of one sample at `maxTokens`.
    pub activations_per_sample: ByteSize,
    /// `micro_batch` samples' activations.
    pub activations: ByteSize,
    /// The causal-mask triangles and RoPE tables shared by all layers and samples.
    pub shared_tables: ByteSize,
    /// One chunk of logits and their gradient.
    pub logits: ByteSize,
    /// Workspace and fragmentation.
    pub margin: ByteSize,
    /// What the device must hold: on a GPU the sum of the parts; on the CPU the
    /// weights, tables and margin with the larger of the layers' and the loss's phases.
    pub peak: ByteSize,
    /// Samples per forward/backward pass: the largest that fits, at most `batchSize`
    /// (with data parallelism, at most a replica's share of it).
    pub micro_batch: u64,
    /// Micro-batches per optimizer step on each replica: `ceil(batchSize /
    /// micro_batch)` on one; some may be shorter.
    pub accumulation: u64,
}

/// Not even a micro-batch of one sample fits: the figures, and what would fit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct DoesNotFit {
    /// The peak at micro-batch 1.
    pub peak: ByteSize,
    pub base_weights: ByteSize,
    pub device: DeviceMemory,
    pub max_tokens: u64,
    /// The largest `maxTokens` that fits at micro-batch 1 on the same devices.
    pub fitting_max_tokens: Option<u64>,
    /// The fewest GPUs that hold the job at its `maxTokens` with consecutive layers
    /// placed on each (GPUs only).
    pub fitting_devices: Option<u32>,
}

impl DoesNotFit {
    fn describe(&self) -> String {
        let noun = self.device.kind.noun();
        let mut text = format!(
            "needs {} per {noun} at micro-batch 1 with maxTokens {} (base weights {}), more than the {} of a {noun}",
            self.peak, self.max_tokens, self.base_weights, self.device.per_device
        );
        match self.fitting_max_tokens {
            Some(tokens) => text += &format!("; it fits with maxTokens {tokens} or less"),
            None => text += &format!("; no maxTokens fits on {}", self.device),
        }
        if self.device.kind == DeviceKind::Gpu {
            match self.fitting_devices {
                Some(gpus) => {
                    text += &format!(
                        ", or on {gpus} GPUs of {} with its layers placed across them (spec.resources.gpus: {gpus})",
                        self.device.per_device
                    )
                }
                None => {
                    text += &format!(
                        ", and no number of {} GPUs holds it with its layers placed across them",
                        self.device.per_device
                    )
                }
            }
        }
        text
    }
}

/// The plan of `inputs`: the largest micro-batch up to `batch_size` whose peak fits
/// the device, or why none does. On several devices: data-parallel when one device
/// holds a micro-batch of the replicas' share, else the layers placed across them.
pub fn plan(inputs: &PlanInputs) -> Result<MemoryPlan, DoesNotFit> {
    if let Some(share) = data_parallel_share(inputs)
        && let Ok(replica) = plan_one_layout(&share.inputs)
    {
        let accumulation = inputs
            .batch_size
            .max(1)
            .div_ceil(replica.micro_batch)
            .div_ceil(share.replicas);
        return Ok(MemoryPlan {
            inputs: inputs.clone(),
            replicas: share.replicas,
            accumulation,
            ..replica
        });
    }
    plan_one_layout(inputs)
}

/// One replica of a data-parallel job: its inputs (one device, its share of the batch)
/// and how many replicas train.
struct ReplicaShare {
    inputs: PlanInputs,
    replicas: u64,
}

/// With several devices, one replica's share: `ceil(batchSize / replicas)` samples on
/// one device. No more replicas than samples in a step. `None` on one device.
fn data_parallel_share(inputs: &PlanInputs) -> Option<ReplicaShare> {
    let batch = inputs.batch_size.max(1);
    let replicas = u64::from(inputs.device.devices).min(batch);
    (replicas > 1).then(|| ReplicaShare {
        inputs: PlanInputs {
            batch_size: batch.div_ceil(replicas),
            device: inputs.device.with_devices(1),
            ..inputs.clone()
        },
        replicas,
    })
}

/// The plan with the model on one device, or its layers placed across all of
/// `inputs`' devices.
fn plan_one_layout(inputs: &PlanInputs) -> Result<MemoryPlan, DoesNotFit> {
    let batch = inputs.batch_size.max(1);
    let fits = |micro: u64| peak_bytes(inputs, micro) <= inputs.device.per_device.bytes();
    let Some(micro_batch) = (1..=batch).rev().find(|&micro| fits(micro)) else {
        return Err(does_not_fit(inputs));
    };
    Ok(breakdown(inputs, micro_batch))
}

/// The peak bytes of `inputs` at `micro_batch` samples.
pub fn peak_bytes(inputs: &PlanInputs, micro_batch: u64) -> u64 {
    breakdown(inputs, micro_batch).peak.bytes()
}

fn breakdown(inputs: &PlanInputs, micro_batch: u64) -> MemoryPlan {
    let layers = inputs.layers_per_device();
    let base_weights = base_weight_bytes(inputs, layers);
    let trainable_state = trainable_state_bytes(inputs, layers);
    let shared_tables = shared_table_bytes(inputs);
    let fixed = base_weights + trainable_state + shared_tables;
    let (per_sample, activations, logits, subtotal, margin) = match inputs.device.kind {
        // Bounds: every part at its largest, all at once.
        DeviceKind::Gpu => {
            let per_sample = activation_bytes_per_sample(inputs, layers);
            let activations = micro_batch * per_sample;
            let logits = logits_bytes(inputs, micro_batch);
            let subtotal = fixed + activations + logits;
            (
                per_sample,
                activations,
                logits,
                subtotal,
                margin_bytes(subtotal),
            )
        }
        // As measured: the larger of the layers' phase and the loss's (cpu_peak).
        DeviceKind::Cpu => {
            let sequences = inputs.sequences_per_sample;
            let per_sample = sequences * cpu_layer_phase_bytes(inputs, layers);
            let activations = micro_batch * per_sample;
            let logits = cpu_logits_bytes(inputs, micro_batch);
            let loss_phase =
                micro_batch * sequences * cpu_loss_phase_activation_bytes(inputs, layers) + logits;
            let subtotal = fixed + activations.max(loss_phase);
            (
                per_sample,
                activations,
                logits,
                subtotal,
                cpu_margin_bytes(subtotal),
            )
        }
    };
    MemoryPlan {
        inputs: inputs.clone(),
        replicas: 1,
        layers_per_device: layers,
        base_weights: ByteSize(base_weights),
        trainable_params: trainable_params(inputs, layers),
        trainable_state: ByteSize(trainable_state),
        activations_per_sample: ByteSize(per_sample),
        activations: ByteSize(activations),
        shared_tables: ByteSize(shared_tables),
        logits: ByteSize(logits),
        margin: ByteSize(margin),
        peak: ByteSize(subtotal + margin),
        micro_batch,
        accumulation: inputs.batch_size.max(1).div_ceil(micro_batch),
    }
}

/// The figures at micro-batch 1 and the nearest inputs that fit.
fn does_not_fit(inputs: &PlanInputs) -> DoesNotFit {
    let at_one = breakdown(inputs, 1);
    let memory = inputs.device.per_device.bytes();
    let fits_with_tokens = |tokens: u64| {
        let shorter = PlanInputs {
            max_tokens: tokens,
            ..inputs.clone()
        };
        peak_bytes(&shorter, 1) <= memory
    };
    // The peak grows with maxTokens, so the largest that fits is found by bisection.
    let fitting_max_tokens = if fits_with_tokens(1) {
        let (mut fitting, mut too_many) = (1, inputs.max_tokens);
        while too_many - fitting > 1 {
            let middle = fitting + (too_many - fitting) / 2;
            if fits_with_tokens(middle) {
                fitting = middle;
            } else {
                too_many = middle;
            }
        }
        Some(fitting)
    } else {
        None
    };
    let most_devices = DEVICES_SEARCH_MAX.min(inputs.shape.layers.try_into().unwrap_or(u32::MAX));
    let fitting_devices = match inputs.device.kind {
        DeviceKind::Gpu => (inputs.device.devices + 1..=most_devices).find(|&devices| {
            let spread = PlanInputs {
                device: inputs.device.with_devices(devices),
                ..inputs.clone()
            };
            peak_bytes(&spread, 1) <= memory
        }),
        DeviceKind::Cpu => None,
    };
    DoesNotFit {
        peak: at_one.peak,
        base_weights: at_one.base_weights,
        device: inputs.device,
        max_tokens: inputs.max_tokens,
        fitting_max_tokens,
        fitting_devices,
    }
}
