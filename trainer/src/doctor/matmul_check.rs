//! A matmul on the device against a host reference: bf16 on CUDA (the dtype the
//! frozen base of a real model is in), f32 on the CPU backend (which computes in f32).
//! The reference multiplies the same f32 inputs with f64 sums, so the error measured
//! is everything the device path adds: rounding the inputs to the dtype, its
//! summation order and its output rounding.

use std::time::Instant;

use anneal_model::backend::{BackendJob, DeviceChoice, run_on};
use burn::prelude::*;
use burn::tensor::DType;

use super::CheckResult;

const NAME: &str = "matmul";

/// The size, dtype and tolerance of the check on one backend.
#[derive(Debug, Clone, Copy)]
pub struct MatmulSpec {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub dtype: DType,
    pub dtype_name: &'static str,
    /// Largest `max |device - reference| / max |reference|` accepted.
    pub tolerance: f64,
}

impl MatmulSpec {
    pub fn for_backend(cuda: bool) -> Self {
        if cuda {
            // bf16 keeps 8 bits of mantissa: each input is off by up to 2^-9 relative, and
            // over k = 1024 terms of random sign those errors add up to about 1e-3 of the
            // largest output; the output's own bf16 rounding is 2^-9 = 2e-3. 1e-2 leaves
            // room for split-k orderings and fails a kernel that is wrong.
            Self {
                m: 1024,
                k: 1024,
                n: 1024,
                dtype: DType::BF16,
                dtype_name: "bf16",
                tolerance: 1e-2,
            }
        } else {
            // f32 sums of 256 terms round to about 1e-6 of the largest output.
            Self {
                m: 256,
                k: 256,
                n: 256,
                dtype: DType::F32,
                dtype_name: "f32",
                tolerance: 1e-5,
            }
        }
    }

    /// The start check's size: the same dtype and tolerance at 256 a side, whose host
    /// reference takes milliseconds (k = 256 sums fewer rounding errors than 1024).
    pub fn quick(cuda: bool) -> Self {
        Self {
            m: 256,
            k: 256,
            n: 256,
            ..Self::for_backend(cuda)
        }
    }
}

pub fn check(cuda: bool) -> CheckResult {
    check_spec(cuda, MatmulSpec::for_backend(cuda))
}

/// The product of `spec`'s size on the backend against the host reference.
pub fn check_spec(cuda: bool, spec: MatmulSpec) -> CheckResult {
    let choice = if cuda {
        DeviceChoice::Cuda
    } else {
        DeviceChoice::Cpu
    };
    let a = inputs(spec.m * spec.k, 1);
    let b = inputs(spec.k * spec.n, 2);
    let (device_result, seconds) = match run_on(
        choice,
        MatmulJob {
            spec,
            a: a.clone(),
            b: b.clone(),
        },
    ) {
        Ok(Ok(result)) => result,
        Ok(Err(message)) => return CheckResult::fail(NAME, message),
        Err(error) => return CheckResult::fail(NAME, error.to_string()),
    };
    let reference = host_matmul(&a, &b, spec.m, spec.k, spec.n);
    let max_error = device_result
        .iter()
        .zip(&reference)
        .map(|(&d, &r)| (f64::from(d) - r).abs())
        .fold(0.0, f64::max);
    let max_reference = reference.iter().map(|r| r.abs()).fold(0.0, f64::max);
    let relative = max_error / max_reference;
    let detail = format!(
        "{} [{}x{}] @ [{}x{}] in {:.2} ms: max |error| {max_error:.2e} of max |reference| {max_reference:.1} = {relative:.1e} relative (limit {:.0e})",
        spec.dtype_name,
        spec.m,
        spec.k,
        spec.k,
        spec.n,
        seconds * 1e3,
        spec.tolerance
    );
    // NaN fails too: `relative <= tolerance` is false for it.
    if relative <= spec.tolerance {
        CheckResult::ok(NAME, detail)
    } else {
        CheckResult::fail(NAME, detail)
    }
}

struct MatmulJob {
    spec: MatmulSpec,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl BackendJob for MatmulJob {
    /// The product as f32, and the seconds of the second run (the first compiles and
    /// tunes kernels on CUDA), reading the result back included.
    type Output = Result<(Vec<f32>, f64), String>;

    fn run<B: Backend>(self, device: B::Device, _dtype: DType) -> Self::Output {
        let MatmulSpec { m, k, n, dtype, .. } = self.spec;
        let a = Tensor::<B, 2>::from_data(TensorData::new(self.a, [m, k]), &device).cast(dtype);
        let b = Tensor::<B, 2>::from_data(TensorData::new(self.b, [k, n]), &device).cast(dtype);
        let product = || {
            a.clone()
                .matmul(b.clone())
                .cast(DType::F32)
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| format!("reading the product back: {e:?}"))
        };
        product()?;
        let start = Instant::now();
        let result = product()?;
        Ok((result, start.elapsed().as_secs_f64()))
    }
}

/// `len` values in [-1, 1) from a fixed sequence (splitmix64): the same inputs on
/// every machine, no RNG crate's stream to depend on.
fn inputs(len: usize, stream: u64) -> Vec<f32> {
    let mut state = stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 24 bits, exactly representable in f32.
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// `a [m, k] @ b [k, n]` with f64 sums, its rows split over the machine's cores
/// (1024^3 multiply-adds take about a second on one core).
fn host_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let rows_per_thread = m.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in out.chunks_mut(rows_per_thread * n).enumerate() {
            scope.spawn(move || {
                let first_row = chunk_index * rows_per_thread;
                for (r, row) in chunk.chunks_mut(n).enumerate() {
                    let a_row = &a[(first_row + r) * k..(first_row + r + 1) * k];
                    for (p, &a_value) in a_row.iter().enumerate() {
                        let a_value = f64::from(a_value);
                        for (o, &b_value) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                            *o += a_value * f64::from(b_value);
                        }
                    }
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_reference_multiplies() {
        // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]]
        let product = host_matmul(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], 2, 2, 2);
        assert_eq!(product, vec![19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn inputs_are_in_range_and_fixed() {
        let values = inputs(10_000, 1);
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_eq!(values, inputs(10_000, 1));
        assert_ne!(values, inputs(10_000, 2));
    }
}
