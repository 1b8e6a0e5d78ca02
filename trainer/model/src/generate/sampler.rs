//! Picking one row's next token: greedy, or sampling at a temperature from the
//! nucleus (the most likely tokens whose probabilities add up to top_p) with a seeded
//! generator. The pick walks the row's tokens from the most likely down and stops as
//! soon as it is settled, so it needs only the row's first few tokens in that order
//! (see [`super::pick`]), and gives the same token as walking the whole sorted row.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::SamplingParams;

/// A row's sampling settings and its random generator.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: StdRng,
}

/// The most likely tokens of a row, in order: by logit, highest first, equal logits
/// by lower id first (the order a stable sort of the whole row gives); and what the
/// whole row contributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    /// The row's largest logit.
    pub max: f32,
    /// The softmax's normaliser over the whole row: the sum of
    /// `exp((logit - max) / temperature)` over every token.
    pub total: f64,
    /// Whether `ids` is the whole row.
    pub complete: bool,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            temperature: params.temperature,
            top_p: params.top_p,
            rng: StdRng::seed_from_u64(params.seed),
        }
    }

    /// Greedy: the most likely token every step, no random draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The uniform number in [0, 1) one sampled token uses: one draw per token, before
    /// it is known how many candidates the pick needs, so the seed alone decides.
    pub fn draw(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// An unnormalised probability: `exp((logit - max) / temperature)`, the
    /// difference in f32, the rest in f64 so that small tails do not vanish.
    pub fn weight(&self, logit: f32, max: f32) -> f64 {
        (f64::from(logit - max) / f64::from(self.temperature)).exp()
    }

    /// The token `u` (from [`Self::draw`]) picks among `candidates`, or `None` when
    /// the pick reaches past them and needs more of the row. Sampling only.
    ///
    /// The nucleus is the shortest run of tokens from the most likely whose mass
    /// (weight / total) reaches `top_p`, all of them when `top_p` is 1; the token is
    /// where `u` times the nucleus's weight falls, walking it in order.
    pub fn pick_among(&self, candidates: &Candidates, u: f64) -> Option<u32> {
        let weights: Vec<f64> = candidates
            .logits
            .iter()
            .map(|&l| self.weight(l, candidates.max))
            .collect();
        let (kept, nucleus_weight) = if self.top_p >= 1.0 {
            // Every token: its weight is the normaliser, known without the rest.
            (weights.len(), candidates.total)
        } else {
            let mut mass = 0.0;
            let mut kept_weight = 0.0;
            let mut kept = 0;
            for w in &weights {
                mass += w / candidates.total;
                kept_weight += w;
                kept += 1;
                if mass >= f64::from(self.top_p) {
                    break;
                }
            }
            if mass < f64::from(self.top_p) && !candidates.complete {
                return None;
            }
            (kept, kept_weight)
        };
        let mut target = u * nucleus_weight;
        for (&id, &w) in candidates.ids.iter().zip(&weights).take(kept) {
            if target < w {
                return Some(id);
            }
            target -= w;
        }
        // Past the last one by rounding: the nucleus's last token, when it is known.
        let settled = candidates.complete || self.top_p < 1.0;
        settled.then(|| candidates.ids[kept - 1])
    }

    /// The next token from a whole row of logits on the host.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() {
            return argmax(logits);
        }
        let u = self.draw();
        pick_on_host(self, logits, argmax_value(logits), None, u)
    }
}

/// Samples from a whole row on the host: its `n` most likely tokens first, four times
/// as many while the pick needs more (O(vocab) each, never a sort of the whole row
/// unless the nucleus is most of it). `total`: the row's normaliser when it is
/// already known (from the device), so every try uses the same; else summed here.
pub fn pick_on_host(
    sampler: &Sampler,
    logits: &[f32],
    max: f32,
    total: Option<f64>,
    u: f64,
) -> u32 {
    let total = total.unwrap_or_else(|| logits.iter().map(|&l| sampler.weight(l, max)).sum());
    let mut n = super::pick::CANDIDATES;
    loop {
        let candidates = host_candidates(logits, n, max, total);
        if let Some(token) = sampler.pick_among(&candidates, u) {
            return token;
        }
        assert!(
            !candidates.complete,
            "a complete row always settles the pick"
        );
        n *= 4;
    }
}

/// The `n` most likely tokens of `logits` in [`Candidates`]' order.
pub fn host_candidates(logits: &[f32], n: usize, max: f32, total: f64) -> Candidates {
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let complete = n >= ids.len();
    if !complete {
        // Partitions around the n-th in O(vocab): the first n are the n most likely.
        ids.select_nth_unstable_by(n, order);
        ids.truncate(n);
    }
    ids.sort_unstable_by(order);
    Candidates {
        logits: ids.iter().map(|&i| logits[i as usize]).collect(),
        ids,
        max,
        total,
        complete,
    }
}

/// The index of the largest value; the first one on ties, as torch's argmax.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn argmax_value(values: &[f32]) -> f32 {
    values[argmax(values) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut sampler = Sampler::new(&SamplingParams::default());
        assert_eq!(sampler.pick(&[0.0, 1.0, 5.0]), 2);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities at T=1: ~0.867, ~0.117, ~0.016. With top_p 0.5 only token 0 survives.
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        let mut sampler = Sampler::new(&params);
        for _ in 0..200 {
            assert_eq!(sampler.pick(&[2.0, 0.0, -2.0]), 0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut sampler = Sampler::new(params);
            (0..4000)
                .map(|_| sampler.pick(&[0.0, 2f32.ln()]))
                .collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params), "same seed, same tokens");
        // Token 1 has twice the probability of token 0: 2/3.
        let share = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.03, "{share}");
        let other = SamplingParams { seed: 8, ..params };
        assert_ne!(a, draw(&other));
    }

    /// Candidates come most likely first, equal logits by lower id, and the first n
    /// of a row are the first n of the whole row in that order.
    #[test]
    fn candidates_are_the_start_of_the_sorted_row() {
        let logits = [0.5, 2.0, -1.0, 2.0, 0.5, 3.0, 0.5];
        let whole = host_candidates(&logits, 7, 3.0, 1.0);
        assert_eq!(whole.ids, vec![5, 1, 3, 0, 4, 6, 2]);
        assert!(whole.complete);
        for n in 1..7 {
            let part = host_candidates(&logits, n, 3.0, 1.0);
            assert_eq!(part.ids, whole.ids[..n], "n = {n}");
            assert!(!part.complete);
        }
    }
}
