//! The DPO objective (Rafailov et al. 2023): for a pair with summed reply
//! log-probabilities `πc`, `πr` under the trained model and `refc`, `refr` under the
//! reference, `Δ = (πc − πr) − (refc − refr)` and the loss is
//! `−(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)` (ε, label smoothing, is conservative DPO; 0 is
//! plain DPO). With an SFT weight `w > 0` each pair also adds `w · NLL(chosen)`, the
//! trained model's negative log-likelihood of the chosen reply (RPO, TRL's
//! `rpo_alpha`), which keeps a small model fluent while DPO moves it. The implicit rewards `β(π − ref)` of each reply, their margin and how
//! often the chosen one wins are what a run reports.

use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;

use super::data::PreferencePair;
use crate::tensor_batch::Batch;
use crate::tokenized::TokenizedSample;

/// The objective's settings, from `spec.hyperparameters.dpo`.
#[derive(Config, Debug)]
pub struct DpoConfig {
    /// How far the trained model may move from the reference: larger keeps it closer.
    #[config(default = 0.1)]
    pub beta: f64,
    /// The assumed share of flipped preference labels.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// The weight `w` of the chosen reply's negative log-likelihood added to each
    /// pair's loss; 0 is plain DPO.
    #[config(default = 0.0)]
    pub sft_weight: f64,
}

/// A micro-batch of pairs as one batch of sequences, so one forward pass scores
/// both replies: rows `0..pairs` hold the chosen sides, `pairs..2·pairs` the rejected.
pub struct PairBatch<B: Backend> {
    pub sequences: Batch<B>,
    pub pairs: usize,
}

impl<B: Backend> PairBatch<B> {
    pub fn new(pairs: &[&PreferencePair], device: &B::Device) -> Self {
        let rows: Vec<&TokenizedSample> = pairs
            .iter()
            .map(|p| &p.chosen)
            .chain(pairs.iter().map(|p| &p.rejected))
            .collect();
        Self {
            sequences: Batch::new(&rows, device),
            pairs: pairs.len(),
        }
    }
}

/// Each row's summed log-probability of its scored (reply) tokens, `[rows]`, from
/// the per-position `log_probs` `[rows, len]`
/// ([`crate::chunked_loss::batch_scores`]).
pub fn sequence_log_probs<B: Backend>(log_probs: Tensor<B, 2>, batch: &Batch<B>) -> Tensor<B, 1> {
    let [rows, _] = log_probs.dims();
    log_probs
        .mul(batch.weights.clone())
        .sum_dim(1)
        .reshape([rows]) // [rows]
}

/// The loss of a batch of pairs and the rewards behind it.
pub struct DpoOutput<B: Backend> {
    /// Summed over the pairs (a step divides by its own pair count), `[1]`.
    pub loss: Tensor<B, 1>,
    /// `β(πc − refc)` per pair, `[pairs]`, without gradient.
    pub chosen_rewards: Tensor<B, 1>,
    /// `β(πr − refr)` per pair, `[pairs]`, without gradient.
    pub rejected_rewards: Tensor<B, 1>,
}

impl DpoConfig {
    /// The loss from the scores of a [`PairBatch`]'s rows, `[2·pairs]` each: chosen
    /// sides first, then rejected; `sequences` is that batch's, for the number of
    /// scored tokens in each chosen reply.
    pub fn pair_loss<B: Backend>(
        &self,
        policy_rows: Tensor<B, 1>,
        reference_rows: Tensor<B, 1>,
        sequences: &Batch<B>,
    ) -> DpoOutput<B> {
        let n = policy_rows.dims()[0] / 2;
        let chosen_tokens = sequences
            .weights
            .clone()
            .narrow(0, 0, n)
            .sum_dim(1)
            .reshape([n]); // [pairs]
        self.loss(
            policy_rows.clone().narrow(0, 0, n),
            policy_rows.narrow(0, n, n),
            reference_rows.clone().narrow(0, 0, n),
            reference_rows.narrow(0, n, n),
            chosen_tokens,
        )
    }

    /// The loss from the four log-probabilities, each `[pairs]`, and the number of
    /// scored tokens in each chosen reply, `[pairs]`. Only the policy's carry
    /// gradients; the reference's are constants.
    pub fn loss<B: Backend>(
        &self,
        policy_chosen: Tensor<B, 1>,
        policy_rejected: Tensor<B, 1>,
        reference_chosen: Tensor<B, 1>,
        reference_rejected: Tensor<B, 1>,
        chosen_tokens: Tensor<B, 1>,
    ) -> DpoOutput<B> {
        let chosen_rewards =
            (policy_chosen.clone() - reference_chosen.clone()).detach() * self.beta;
        let rejected_rewards =
            (policy_rejected.clone() - reference_rejected.clone()).detach() * self.beta;
        let policy_chosen_for_nll = policy_chosen.clone();
        let delta = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected); // [pairs]
        let scaled = delta * self.beta;
        let eps = self.label_smoothing;
        let mut losses =
            log_sigmoid(scaled.clone()) * -(1.0 - eps) - log_sigmoid(scaled.neg()) * eps; // [pairs]
        if self.sft_weight > 0.0 {
            // The SFT term's NLL is each chosen reply's mean over its own scored tokens
            // (−πc / tokens), and these per-pair means are then averaged over the pairs
            // like the DPO term. A per-reply mean keeps `w` independent of reply length
            // (a summed NLL would dwarf the DPO term, which is O(1) per pair), and a
            // per-pair quantity keeps the step's loss a plain mean over pairs, so it does
            // not change with how a batch is split into micro-batches. (TRL's
            // `rpo_alpha` averages over all chosen tokens of its batch instead, which
            // weights long replies more; for replies of similar length the two agree.)
            let nll = policy_chosen_for_nll.neg() / chosen_tokens.clamp_min(1.0); // [pairs]
            losses = losses + nll * self.sft_weight;
        }
        DpoOutput {
            loss: losses.sum(),
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// Sums over micro-batches, on the host, for a step's or an evaluation's report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PreferenceTally {
    pub pairs: usize,
    loss: f64,
    chosen: f64,
    rejected: f64,
    wins: f64,
}

/// What a run reports about preferences: means over the pairs seen.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceScores {
    pub loss: f64,
    pub rewards_chosen: f64,
    pub rewards_rejected: f64,
    /// Mean of chosen minus rejected reward.
    pub reward_margin: f64,
    /// Share of pairs whose chosen reward is strictly above the rejected one.
    pub reward_accuracy: f64,
}

impl PreferenceTally {
    pub fn add<B: Backend>(&mut self, output: &DpoOutput<B>) {
        let values = |t: &Tensor<B, 1>| -> Vec<f64> {
            t.to_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .expect("rewards as f64")
        };
        let chosen = values(&output.chosen_rewards);
        let rejected = values(&output.rejected_rewards);
        self.add_values(values(&output.loss)[0], &chosen, &rejected);
    }

    /// Adds a micro-batch's summed loss and its pairs' rewards, read to the host.
    pub fn add_values(&mut self, loss: f64, chosen: &[f64], rejected: &[f64]) {
        self.pairs += chosen.len();
        self.loss += loss;
        self.chosen += chosen.iter().sum::<f64>();
        self.rejected += rejected.iter().sum::<f64>();
        self.wins += chosen.iter().zip(rejected).filter(|(c, r)| c > r).count() as f64;
    }

    pub fn scores(&self) -> PreferenceScores {
        let n = self.pairs.max(1) as f64;
        PreferenceScores {
            loss: self.loss / n,
            rewards_chosen: self.chosen / n,
            rewards_rejected: self.rejected / n,
            reward_margin: (self.chosen - self.rejected) / n,
            reward_accuracy: self.wins / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunked_loss::TargetScores;
    use anneal_model::backend::CpuBackend;

    type B = CpuBackend;

    fn vector(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Default::default(),
        )
    }

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-5, "{actual} vs {expected}");
    }

    /// Two pairs worked by hand, β = 0.1:
    /// - pair 1: πc −10, πr −14, refc −12, refr −12: Δ = 4 − 0 = 4, βΔ = 0.4,
    ///   loss = ln(1 + e^−0.4) = ln 1.670320 = 0.513015; rewards 0.1·2 = 0.2 and
    ///   0.1·(−2) = −0.2; the chosen one wins.
    /// - pair 2: πc −8, πr −5, refc −8, refr −6: Δ = −3 − (−2) = −1, βΔ = −0.1,
    ///   loss = ln(1 + e^0.1) = ln 2.105171 = 0.744397; rewards 0 and 0.1; it loses.
    ///
    /// Means: loss 0.628706, chosen 0.1, rejected −0.05, margin 0.15, accuracy 0.5.
    #[test]
    fn loss_and_rewards_match_the_formula_by_hand() {
        let dpo = DpoConfig::new();
        let out = dpo.loss(
            vector(&[-10.0, -8.0]),
            vector(&[-14.0, -5.0]),
            vector(&[-12.0, -8.0]),
            vector(&[-12.0, -6.0]),
            vector(&[4.0, 2.0]),
        );
        close(
            f64::from(out.loss.clone().into_scalar()),
            0.513015 + 0.744397,
        );
        let mut tally = PreferenceTally::default();
        tally.add(&out);
        let s = tally.scores();
        assert_eq!(tally.pairs, 2);
        close(s.loss, (0.513015 + 0.744397) / 2.0);
        close(s.rewards_chosen, 0.1);
        close(s.rewards_rejected, -0.05);
        close(s.reward_margin, 0.15);
        close(s.reward_accuracy, 0.5);
    }

    /// Pair 1 with ε = 0.2: 0.8·ln(1 + e^−0.4) + 0.2·ln(1 + e^0.4)
    /// = 0.8·0.513015 + 0.2·0.913015 = 0.593015.
    #[test]
    fn label_smoothing_mixes_in_the_flipped_label() {
        let dpo = DpoConfig::new().with_label_smoothing(0.2);
        let out = dpo.loss(
            vector(&[-10.0]),
            vector(&[-14.0]),
            vector(&[-12.0]),
            vector(&[-12.0]),
            vector(&[4.0]),
        );
        close(f64::from(out.loss.into_scalar()), 0.593015);
    }

    /// The two pairs above with SFT weight w = 0.5, their chosen replies 4 and 2
    /// scored tokens long: the chosen replies' per-token NLLs are 10/4 = 2.5 and
    /// 8/2 = 4, so the summed loss gains 0.5·2.5 + 0.5·4 = 3.25:
    /// 0.513015 + 0.744397 + 3.25 = 4.507412 (mean 2.253706). The rewards do not
    /// change: the SFT term only adds to the loss.
    #[test]
    fn sft_weight_adds_the_chosen_replies_per_token_nll() {
        let dpo = DpoConfig::new().with_sft_weight(0.5);
        let out = dpo.loss(
            vector(&[-10.0, -8.0]),
            vector(&[-14.0, -5.0]),
            vector(&[-12.0, -8.0]),
            vector(&[-12.0, -6.0]),
            vector(&[4.0, 2.0]),
        );
        close(f64::from(out.loss.clone().into_scalar()), 4.507412);
        let mut tally = PreferenceTally::default();
        tally.add(&out);
        let s = tally.scores();
        close(s.loss, 2.253706);
        close(s.reward_margin, 0.15);
        close(s.reward_accuracy, 0.5);
    }

    /// `pair_loss` counts each chosen reply's scored tokens from the batch: with
    /// uniform logits over 4 tokens the chosen reply (2 scored tokens) has NLL ln 4 a
    /// token, Δ = 0 (policy and reference agree), so the loss is ln 2 + w·ln 4.
    #[test]
    fn pair_loss_normalizes_the_nll_by_the_chosen_replys_tokens() {
        let sample = |ids: Vec<u32>, mask: Vec<bool>| TokenizedSample { line: 1, ids, mask };
        let pair = PreferencePair {
            line: 1,
            chosen: sample(vec![0, 1, 2, 3], vec![false, false, true, true]),
            rejected: sample(vec![0, 1, 2], vec![false, true, true]),
        };
        let batch = PairBatch::<B>::new(&[&pair], &Default::default());
        let logits = Tensor::<B, 3>::zeros([2, 3, 4], &Default::default());
        let log_probs = TargetScores::from_logits(logits, batch.sequences.targets.clone());
        let scores = sequence_log_probs(log_probs.log_probs, &batch.sequences);
        let out = DpoConfig::new().with_sft_weight(2.0).pair_loss(
            scores.clone(),
            scores,
            &batch.sequences,
        );
        close(
            f64::from(out.loss.into_scalar()),
            2f64.ln() + 2.0 * 4f64.ln(),
        );
    }

    /// Uniform logits over 4 tokens: every scored token costs ln 4 and padding nothing.
    #[test]
    fn sequence_scores_sum_each_rows_reply_tokens() {
        let sample = |ids: Vec<u32>, mask: Vec<bool>| TokenizedSample { line: 1, ids, mask };
        let pair = PreferencePair {
            line: 1,
            chosen: sample(vec![0, 1, 2, 3], vec![false, false, true, true]),
            rejected: sample(vec![0, 1, 2], vec![false, true, true]),
        };
        let batch = PairBatch::<B>::new(&[&pair], &Default::default());
        assert_eq!(batch.pairs, 1);
        let logits = Tensor::<B, 3>::zeros([2, 3, 4], &Default::default());
        let log_probs = TargetScores::from_logits(logits, batch.sequences.targets.clone());
        let scores = sequence_log_probs(log_probs.log_probs, &batch.sequences)
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        let ln4 = 4f64.ln();
        close(f64::from(scores[0]), -2.0 * ln4);
        close(f64::from(scores[1]), -2.0 * ln4);
    }
}
