//! Several LoRA adapters of one base model in the same decoding step: rows of
//! different adapters, and rows with none, share the base's products, and each row
//! adds its own adapter's update.
//!
//! Per projection the adapters' A sit side by side, `[in, n * r]`, and their B one
//! above the other, `[n * r, out]`, each adapter padded with zeros to the largest
//! rank `r`. A step computes `x * A_all` for every row, keeps in each row only its own
//! adapter's block, times that adapter's scale (a `[rows, n * r]` mask of scales and
//! zeros, built once per step), and multiplies by `B_all`. That is two products and
//! a mask per projection whatever the mix of adapters, and no adapter weight is
//! copied per row (as a gather of each row's matrices would). Each step reads every
//! loaded adapter once, so the cost grows with how many are loaded: a handful is
//! what this is for; hundreds would want a kernel that reads only the rows' own
//! (punica's BGMV). Each projection's stack lives on that projection's device, as
//! its adapters do (see `llm::placement`).

use anneal_crds::hyperparameters::TargetModule;
use burn::prelude::*;
use burn::tensor::DType;

use super::projections;
use crate::llm::CausalLm;

/// The adapters' matrices stacked per projection, and each adapter's scale.
#[derive(Clone, Debug)]
pub struct AdapterBank<B: Backend> {
    /// Per layer, per module in [`TargetModule::ALL`]'s order; `None` where no
    /// adapter targets that projection.
    layers: Vec<Vec<Option<Stacked<B>>>>,
    scales: Vec<f64>,
    /// The block width: the largest rank.
    rank: usize,
    /// Each layer's device, where its stacks are and its rows' mask goes.
    devices: Vec<B::Device>,
}

#[derive(Clone, Debug)]
struct Stacked<B: Backend> {
    /// `[in, n * rank]`, f32.
    a: Tensor<B, 2>,
    /// `[n * rank, out]`, f32.
    b: Tensor<B, 2>,
}

impl<B: Backend> AdapterBank<B> {
    /// From models that are each the same base with one adapter attached (as
    /// `trainer serve` loads them); adapter `i` is `adapters[i]`. `None` without any.
    pub fn new(adapters: &[&CausalLm<B>]) -> Option<Self> {
        let first = adapters.first()?;
        let per_model: Vec<_> = adapters.iter().map(|m| projections(m)).collect();
        let rank = per_model
            .iter()
            .flatten()
            .filter_map(|(_, _, p)| p.lora.as_ref().map(|l| l.a.dims()[1]))
            .max()?;
        let scales = per_model
            .iter()
            .map(|ps| {
                ps.iter()
                    .find_map(|(_, _, p)| p.lora.as_ref().map(|l| l.scale))
                    .unwrap_or(0.0)
            })
            .collect();
        let devices: Vec<B::Device> = first.layers.iter().map(|l| l.device()).collect();
        let mut layers: Vec<Vec<Option<Stacked<B>>>> = (0..first.layers.len())
            .map(|_| vec![None; TargetModule::ALL.len()])
            .collect();
        for (index, (layer, module, base)) in projections(first).into_iter().enumerate() {
            let [input, output] = base.base.weight.dims();
            let device = &devices[layer];
            let blocks: Vec<_> = per_model
                .iter()
                .map(|ps| ps[index].2.lora.as_ref())
                .collect();
            if blocks.iter().all(Option::is_none) {
                continue;
            }
            // Each adapter's block padded to `rank` with zeros: a zero block adds nothing.
            let (a, b): (Vec<_>, Vec<_>) = blocks
                .iter()
                .map(|lora| {
                    let zeros_a = Tensor::zeros([input, rank], (device, DType::F32));
                    let zeros_b = Tensor::zeros([rank, output], (device, DType::F32));
                    match lora {
                        Some(l) => {
                            let r = l.a.dims()[1];
                            (
                                zeros_a.slice_assign([0..input, 0..r], l.a.val()),
                                zeros_b.slice_assign([0..r, 0..output], l.b.val()),
                            )
                        }
                        None => (zeros_a, zeros_b),
                    }
                })
                .unzip();
            layers[layer][module_index(module)] = Some(Stacked {
                a: Tensor::cat(a, 1),
                b: Tensor::cat(b, 0),
            });
        }
        Some(Self {
            layers,
            scales,
            rank,
            devices,
        })
    }

    /// How many adapters the bank holds.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// One step's rows: row `i` runs adapter `adapter_of_row[i]` (`None`: the base
    /// alone). `None` when no row has an adapter, so the step skips them all.
    pub fn rows(&self, adapter_of_row: &[Option<usize>]) -> Option<RowAdapters<'_, B>> {
        if adapter_of_row.iter().all(Option::is_none) {
            return None;
        }
        let width = self.len() * self.rank;
        let mut mask = vec![0f32; adapter_of_row.len() * width];
        for (row, adapter) in adapter_of_row.iter().enumerate() {
            if let Some(a) = *adapter {
                let start = row * width + a * self.rank;
                // f32 as the adapter's own path scales (`LoraAdapter::forward`).
                mask[start..start + self.rank].fill(self.scales[a] as f32);
            }
        }
        let mask = TensorData::new(mask, [adapter_of_row.len(), width]);
        // One copy per device, shared by that device's layers.
        let mut masks: Vec<Tensor<B, 2>> = Vec::with_capacity(self.devices.len());
        for (layer, device) in self.devices.iter().enumerate() {
            let same = layer > 0 && self.devices[layer - 1] == *device;
            masks.push(match same {
                true => masks[layer - 1].clone(),
                false => Tensor::from_data(mask.clone(), (device, DType::F32)),
            });
        }
        Some(RowAdapters { bank: self, masks })
    }
}

/// The adapters of one decoding step's rows.
pub struct RowAdapters<'a, B: Backend> {
    bank: &'a AdapterBank<B>,
    /// Per layer, on its device, `[rows, n * rank]`: a row's own adapter's block holds
    /// its scale, the rest zeros.
    masks: Vec<Tensor<B, 2>>,
}

impl<B: Backend> RowAdapters<'_, B> {
    /// The rows' updates of projection `module` in `layer` for `x` `[rows, in]`:
    /// `[rows, out]` in f32, or `None` when no adapter targets that projection.
    pub fn update(
        &self,
        layer: usize,
        module: TargetModule,
        x: Tensor<B, 2>,
    ) -> Option<Tensor<B, 2>> {
        let stacked = self.bank.layers[layer][module_index(module)].as_ref()?;
        // In f32, where the adapters' weights are, as `Projection::forward` runs them.
        let x = crate::llm::precision::cast(x, DType::F32);
        let down = x.matmul(stacked.a.clone()) * self.masks[layer].clone(); // [rows, n * rank]
        Some(down.matmul(stacked.b.clone())) // [rows, out]
    }
}

fn module_index(module: TargetModule) -> usize {
    TargetModule::ALL
        .iter()
        .position(|m| *m == module)
        .expect("a module of ALL")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use anneal_crds::hyperparameters::TargetModule;
    use burn::module::Param;

    use super::*;
    use crate::backend::CpuBackend;
    use crate::llm::load_model;
    use crate::lora::{LoraSettings, attach, projections_mut};

    type B = CpuBackend;

    fn adapted(
        base: CausalLm<B>,
        rank: usize,
        modules: Vec<TargetModule>,
        seed: u64,
    ) -> CausalLm<B> {
        let settings = LoraSettings {
            rank,
            alpha: 2.0 * rank as f64 + 1.0,
            dropout: 0.0,
            target_modules: modules,
            use_rslora: false,
            seed,
        };
        let mut model = attach(base, &settings);
        for (_, _, p) in projections_mut(&mut model) {
            if let Some(lora) = p.lora.as_mut() {
                let [r, out] = lora.b.dims();
                let values: Vec<f32> = (0..r * out)
                    .map(|i| ((i * 7 + seed as usize) % 11) as f32 * 0.01)
                    .collect();
                lora.b = Param::from_tensor(Tensor::from_data(
                    TensorData::new(values, [r, out]),
                    &Default::default(),
                ));
            }
        }
        model
    }

    /// Each row gets its own adapter's update, as that adapter alone computes it,
    /// and a row without an adapter gets exactly zero.
    #[test]
    fn each_row_gets_its_own_adapters_update() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/qwen2-tiny");
        let base = load_model::<B>(&dir, &Default::default(), DType::F32)
            .unwrap()
            .1;
        let one = adapted(base.clone(), 4, TargetModule::ALL.to_vec(), 1);
        let two = adapted(
            base.clone(),
            2,
            vec![TargetModule::QProj, TargetModule::DownProj],
            2,
        );
        let bank = AdapterBank::new(&[&one, &two]).unwrap();
        assert_eq!((bank.len(), bank.rank), (2, 4));
        assert!(bank.rows(&[None, None]).is_none(), "no adapter, no work");
        let rows = bank.rows(&[Some(1), None, Some(0)]).unwrap();
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(
                (0..3 * 64)
                    .map(|i| (i % 13) as f32 * 0.1 - 0.6)
                    .collect::<Vec<_>>(),
                [3, 64],
            ),
            &Default::default(),
        );
        let row = |t: &Tensor<B, 2>, i: usize| {
            t.clone()
                .narrow(0, i, 1)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let alone = |m: &CausalLm<B>, i: usize| {
            let lora = m.layers[1].self_attn.q_proj.lora.as_ref().unwrap();
            row(&lora.forward(x.clone().narrow(0, i, 1)), 0)
        };
        let got = rows.update(1, TargetModule::QProj, x.clone()).unwrap(); // [3, 64]
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&row(&got, 0), &alone(&two, 0)));
        assert!(row(&got, 1).iter().all(|v| *v == 0.0));
        assert!(close(&row(&got, 2), &alone(&one, 2)));
        assert!(row(&got, 0).iter().any(|v| *v != 0.0));
        // Adapter 1 leaves k_proj alone: its rows get nothing there, adapter 0's do.
        let k = rows.update(0, TargetModule::KProj, x.clone()).unwrap();
        assert!(row(&k, 0).iter().all(|v| *v == 0.0));
        assert!(row(&k, 2).iter().any(|v| *v != 0.0));
    }
}
