//! Data parallelism: with several GPUs and a model that fits one, each GPU holds a copy
//! of the model (a replica) and trains on its share of a step's micro-batches; their
//! gradients are summed onto the first GPU, clipped and applied there once, and the
//! updated trained weights are copied back to every replica. The step's loss,
//! gradient and update are those of one device taking every micro-batch in turn
//! (up to the order of the sums).
//!
//! One host thread drives every replica, micro-batch after micro-batch, in the order
//! one device would take them. GPU kernels are launched asynchronously and a step
//! reads the device once at its end ([`crate::readback`]), so the GPUs compute
//! side by side while the host queues the next replica's work. It also keeps
//! dropout deterministic: burn 0.21 has one random generator per backend, not per
//! device, and the masks are drawn in the single-device order, so a run resumes bit
//! for bit and gives the same masks on any number of GPUs.
//!
//! Bytes moved per step: each replica's gradients to the first GPU and the updated
//! trained weights back, 4 bytes per trained parameter each way (LoRA r8 on Qwen2.5-7B:
//! 20.2M parameters, 81 MB; full training: the whole model in f32).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::CausalLm;

/// The devices a step's micro-batches run on, and the model copies on all but the first.
pub struct Replicas<B: AutodiffBackend> {
    /// The trained model's device first.
    devices: Vec<B::Device>,
    /// The copies on `devices[1..]`, whose trained weights equal the model's.
    copies: Vec<CausalLm<B>>,
}

impl<B: AutodiffBackend> Replicas<B> {
    /// The model alone on `device`: every micro-batch there.
    pub fn single(device: B::Device) -> Self {
        Self {
            devices: vec![device],
            copies: Vec::new(),
        }
    }

    /// A copy of `model` (on `devices[0]`) on each of the other `devices`: its frozen
    /// base moved once, its trained weights with gradients of their own.
    pub fn new(model: &CausalLm<B>, devices: &[B::Device]) -> Self {
        let copies = devices[1..]
            .iter()
            .map(|device| model.clone().fork(device))
            .collect();
        Self {
            devices: devices.to_vec(),
            copies,
        }
    }

    /// How many devices train.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device of replica `replica`.
    pub fn device(&self, replica: usize) -> &B::Device {
        &self.devices[replica]
    }

    /// The replica each of a step's `micro_batches` runs on: consecutive runs, one per
    /// replica, the first ones a micro-batch longer when they do not divide evenly.
    pub fn assign(&self, micro_batches: usize) -> Vec<usize> {
        let replicas = self.len();
        let (base, longer) = (micro_batches / replicas, micro_batches % replicas);
        (0..replicas)
            .flat_map(|replica| std::iter::repeat_n(replica, base + usize::from(replica < longer)))
            .collect()
    }

    /// `values` of replica `replica` on the first device, where the step's figures are
    /// read.
    pub fn onto_first<const D: usize>(
        &self,
        values: Tensor<B::InnerBackend, D>,
        replica: usize,
    ) -> Tensor<B::InnerBackend, D> {
        match replica {
            0 => values,
            _ => values.to_device(&self.devices[0]),
        }
    }

    /// Replica `replica`'s model: `trained` itself for the first.
    pub fn model<'m>(&'m self, trained: &'m CausalLm<B>, replica: usize) -> &'m CausalLm<B> {
        match replica {
            0 => trained,
            _ => &self.copies[replica - 1],
        }
    }

    /// The gradients each replica accumulated, summed on the first device, keyed by
    /// `trained`'s parameters.
    pub fn gather(
        &self,
        trained: &CausalLm<B>,
        mut accumulators: Vec<GradientsAccumulator<CausalLm<B>>>,
    ) -> GradientsParams {
        let first = accumulators[0].grads();
        if self.copies.is_empty() {
            return first;
        }
        let mut total = GradientsAccumulator::<CausalLm<B>>::new();
        total.accumulate(trained, first);
        for (copy, accumulator) in self.copies.iter().zip(&mut accumulators[1..]) {
            let grads = accumulator.grads().to_device(&self.devices[0], copy);
            total.accumulate(trained, grads);
        }
        total.grads()
    }

    /// After the update: `trained`'s trained weights copied onto every replica.
    pub fn sync(&mut self, trained: &CausalLm<B>) {
        if self.copies.is_empty() {
            return;
        }
        let mut values = TrainedValues::<B> {
            values: HashMap::new(),
        };
        trained.visit(&mut values);
        for (copy, device) in self.copies.iter_mut().zip(&self.devices[1..]) {
            let mut onto = CopyOnto {
                values: &values.values,
                device,
            };
            *copy = copy.clone().map(&mut onto);
        }
    }
}

/// The values of every parameter that trains, flattened, by id.
struct TrainedValues<B: AutodiffBackend> {
    values: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TrainedValues<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        if value.is_require_grad() {
            let elements = value.shape().num_elements();
            self.values
                .insert(param.id, value.inner().reshape([elements]));
        }
    }
}

/// Replaces each trained parameter of a replica with the trained model's value on the
/// replica's device, a fresh leaf that will get its own gradient.
struct CopyOnto<'a, B: AutodiffBackend> {
    values: &'a HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> ModuleMapper<B> for CopyOnto<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(value) = self.values.get(&param.id) else {
            return param;
        };
        param.map(|old| {
            let dims = old.dims();
            Tensor::from_inner(value.clone().to_device(self.device).reshape(dims)).require_grad()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_backend::CpuTrainBackend;

    #[test]
    fn micro_batches_go_to_replicas_in_consecutive_runs() {
        let replicas = Replicas::<CpuTrainBackend> {
            devices: vec![Default::default(); 3],
            copies: Vec::new(),
        };
        assert_eq!(replicas.assign(3), [0, 1, 2]);
        assert_eq!(replicas.assign(7), [0, 0, 0, 1, 1, 2, 2]);
        // Fewer micro-batches than replicas: the last ones idle.
        assert_eq!(replicas.assign(2), [0, 1]);
        assert_eq!(
            Replicas::<CpuTrainBackend>::single(Default::default()).assign(4),
            [0; 4]
        );
    }
}
