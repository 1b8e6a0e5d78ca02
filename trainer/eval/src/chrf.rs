//! chrF, the character n-gram F-score, as sacreBLEU computes it (and so Hugging Face
//! evaluate's `chrf`): whitespace removed, character n-grams of orders 1 to 6,
//! precision and recall averaged over the orders both texts have n-grams of, then
//! F-beta with beta 2 (recall weighs twice). The `chrf` crate averages the per-order
//! F-scores instead, which differs from sacreBLEU in the third decimal.

use std::collections::HashMap;

/// sacreBLEU's defaults: character orders 1 to 6, beta 2, no word n-grams.
pub const CHAR_ORDER: usize = 6;
pub const BETA: f64 = 2.0;

/// The chrF score of `hypothesis` against `reference`, in [0, 1] (sacreBLEU prints
/// it times 100).
pub fn chrf(hypothesis: &str, reference: &str) -> f64 {
    let hypothesis: Vec<char> = hypothesis.chars().filter(|c| !c.is_whitespace()).collect();
    let reference: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let (mut precision, mut recall, mut orders) = (0.0, 0.0, 0usize);
    for order in 1..=CHAR_ORDER {
        let (ours, theirs) = (ngrams(&hypothesis, order), ngrams(&reference, order));
        let (in_ours, in_theirs): (usize, usize) = (ours.values().sum(), theirs.values().sum());
        if in_ours == 0 || in_theirs == 0 {
            continue;
        }
        let matched: usize = ours
            .iter()
            .map(|(gram, count)| (*count).min(theirs.get(gram).copied().unwrap_or(0)))
            .sum();
        precision += matched as f64 / in_ours as f64;
        recall += matched as f64 / in_theirs as f64;
        orders += 1;
    }
    if orders == 0 {
        return 0.0;
    }
    let (precision, recall) = (precision / orders as f64, recall / orders as f64);
    let factor = BETA * BETA;
    if precision + recall == 0.0 {
        return 0.0;
    }
    (1.0 + factor) * precision * recall / (factor * precision + recall)
}

/// The n-grams of `order` characters in `text`, counted.
fn ngrams(text: &[char], order: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    for gram in text.windows(order) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_sacrebleus() {
        // sacrebleu 2.6.0: sentence_chrf(hypothesis, [reference]).score / 100.
        let cases = [
            (
                "the cat sat on the mat",
                "the cat is on the mat",
                0.645779420625287,
            ),
            (
                "Good question! Wear layers. In short: layers.",
                "Good question! Dress in layers and a windproof jacket. In short: layers and a shell.",
                0.4407747525056038,
            ),
            ("aoeu33", "axeu33", 0.3777777777777778),
            ("Hello, world!", "hello world", 0.46123358414818775),
            ("", "something", 0.0),
        ];
        for (hypothesis, reference, expected) in cases {
            let score = chrf(hypothesis, reference);
            assert!(
                (score - expected).abs() < 1e-12,
                "{hypothesis:?}: {score} against sacreBLEU's {expected}"
            );
        }
    }

    #[test]
    fn worked_by_hand() {
        // "ab" against "abc": order 1 matches a, b (precision 2/2, recall 2/3); order 2
        // matches ab (1/1, 1/2); orders 3 and up: "ab" has none and they are skipped.
        // Mean precision 1, mean recall (2/3 + 1/2) / 2 = 7/12; F2 = 5·p·r / (4p + r).
        let (p, r) = (1.0, 7.0 / 12.0);
        let expected = 5.0 * p * r / (4.0 * p + r);
        assert!((chrf("ab", "abc") - expected).abs() < 1e-15);
        // Whitespace does not count; identical texts score 1.
        assert_eq!(chrf("a b c", "abc"), 1.0);
        assert_eq!(chrf("xyz", "abc"), 0.0);
    }
}
