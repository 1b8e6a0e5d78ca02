//! The figures a training step logs (loss sums, reward vectors, the gradient norm),
//! gathered on the device and read to the host together once the step is done: the
//! host waits on the device once per step instead of once per figure. On a GPU each
//! read is a synchronisation that drains the queue of kernels, so reading the loss of
//! every micro-batch as it comes would stall the next micro-batch's launch.

use burn::prelude::*;

/// Tensors to read back, each `[n]`, in the order they were kept.
pub struct Readback<B: Backend> {
    parts: Vec<Tensor<B, 1>>,
}

/// Where a kept tensor's values are in what [`Readback::read`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept(usize);

impl<B: Backend> Default for Readback<B> {
    fn default() -> Self {
        Self { parts: Vec::new() }
    }
}

impl<B: Backend> Readback<B> {
    /// Keeps `values` `[n]` (any float dtype, any device) for the read.
    pub fn keep(&mut self, values: Tensor<B, 1>) -> Kept {
        self.parts.push(values);
        Kept(self.parts.len() - 1)
    }

    /// Every kept tensor's values, in one transfer.
    pub fn read(self) -> ReadValues {
        let lengths: Vec<usize> = self.parts.iter().map(|t| t.dims()[0]).collect();
        let Some(first) = self.parts.first() else {
            return ReadValues {
                values: Vec::new(),
                starts: Vec::new(),
            };
        };
        let device = first.device();
        let parts: Vec<Tensor<B, 1>> = self
            .parts
            .into_iter()
            .map(|t| t.to_device(&device).cast(burn::tensor::DType::F32))
            .collect();
        let values = Tensor::cat(parts, 0)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 values");
        let mut starts = Vec::with_capacity(lengths.len() + 1);
        starts.push(0);
        for len in lengths {
            starts.push(starts.last().unwrap() + len);
        }
        ReadValues { values, starts }
    }
}

/// What [`Readback::read`] brought back.
pub struct ReadValues {
    values: Vec<f32>,
    /// Where each kept tensor starts, then the end.
    starts: Vec<usize>,
}

impl ReadValues {
    /// The values of `kept`, widened to f64.
    pub fn get(&self, kept: Kept) -> Vec<f64> {
        self.values[self.starts[kept.0]..self.starts[kept.0 + 1]]
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    }

    /// The one value of `kept` (a `[1]` tensor).
    pub fn scalar(&self, kept: Kept) -> f64 {
        f64::from(self.values[self.starts[kept.0]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_model::backend::CpuBackend;

    fn tensor(values: &[f32]) -> Tensor<CpuBackend, 1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )
    }

    #[test]
    fn each_kept_tensor_reads_back_as_its_own_values() {
        let mut readback = Readback::default();
        let a = readback.keep(tensor(&[1.5]));
        let b = readback.keep(tensor(&[2.0, -3.0, 4.25]));
        let c = readback.keep(tensor(&[]));
        let d = readback.keep(tensor(&[7.0]).cast(burn::tensor::DType::BF16));
        let values = readback.read();
        assert_eq!(values.scalar(a), 1.5);
        assert_eq!(values.get(b), vec![2.0, -3.0, 4.25]);
        assert_eq!(values.get(c), Vec::<f64>::new());
        assert_eq!(values.scalar(d), 7.0);
    }
}
