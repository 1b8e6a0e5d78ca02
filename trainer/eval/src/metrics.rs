//! Per-sample scores of an answer, each in [0, 1]: exact match (after trimming and
//! collapsing whitespace), contains (a given text, or the reference), a regular
//! expression, ROUGE-L (F-measure of the longest common word subsequence, as
//! Google's rouge-score computes it without stemming: lower-cased, punctuation
//! dropped) and chrF ([`crate::chrf`]). A mean over samples is the metric's score.

use std::sync::OnceLock;

use regex::Regex;
use rougers::RougeScorer;

/// A metric an evaluation computes for every sample.
#[derive(Clone, Debug)]
pub enum Metric {
    ExactMatch,
    /// The answer contains this text, or the reference when `None` (case-sensitive).
    Contains(Option<String>),
    /// The answer matches this regular expression somewhere.
    Regex(Regex),
    RougeL,
    Chrf,
}

/// A metric that needs a reference answer, scored on a sample without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{metric} compares the answer with a reference answer, and this sample has none")]
pub struct MissingReference {
    pub metric: &'static str,
}

impl Metric {
    /// The name reports and status use (`exactMatch`, `contains`, `regex`, `rougeL`, `chrf`).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::ExactMatch => "exactMatch",
            Metric::Contains(_) => "contains",
            Metric::Regex(_) => "regex",
            Metric::RougeL => "rougeL",
            Metric::Chrf => "chrf",
        }
    }

    /// Whether it compares the answer with a reference answer (and so cannot score a
    /// prompt-only sample).
    pub fn needs_reference(&self) -> bool {
        !matches!(self, Metric::Contains(Some(_)) | Metric::Regex(_))
    }

    /// The score of `answer`, in [0, 1].
    pub fn score(&self, answer: &str, reference: Option<&str>) -> Result<f64, MissingReference> {
        let reference = || {
            reference.ok_or(MissingReference {
                metric: self.name(),
            })
        };
        Ok(match self {
            Metric::ExactMatch => exact_match(answer, reference()?),
            Metric::Contains(Some(text)) => contains(answer, text),
            Metric::Contains(None) => contains(answer, reference()?),
            Metric::Regex(pattern) => f64::from(u8::from(pattern.is_match(answer))),
            Metric::RougeL => rouge_l(answer, reference()?),
            Metric::Chrf => crate::chrf::chrf(answer, reference()?),
        })
    }
}

/// 1 when the two texts are the same once trimmed and with runs of whitespace as one
/// space, else 0.
pub fn exact_match(answer: &str, reference: &str) -> f64 {
    let normal = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    f64::from(u8::from(normal(answer) == normal(reference)))
}

/// 1 when `answer` contains `text`, else 0.
pub fn contains(answer: &str, text: &str) -> f64 {
    f64::from(u8::from(answer.contains(text)))
}

/// ROUGE-L F-measure of `answer` against `reference`.
pub fn rouge_l(answer: &str, reference: &str) -> f64 {
    static SCORER: OnceLock<RougeScorer> = OnceLock::new();
    let scorer = SCORER.get_or_init(|| {
        RougeScorer::new(["rougeL"], false).expect("rougeL is a rouge-score variant")
    });
    scorer
        .score(reference, answer)
        .iter()
        .map(|(_, score)| score.fmeasure)
        .next()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_ignores_surrounding_and_repeated_whitespace_only() {
        assert_eq!(exact_match("  Paris \n", "Paris"), 1.0);
        assert_eq!(exact_match("in  short:\tyes", "in short: yes"), 1.0);
        assert_eq!(exact_match("paris", "Paris"), 0.0);
        assert_eq!(exact_match("Paris.", "Paris"), 0.0);
    }

    #[test]
    fn rouge_l_is_rouge_scores() {
        // rouge-score 0.1.2, RougeScorer(["rougeL"], use_stemmer=False).score(reference, answer).
        let cases = [
            (
                "the cat sat on the mat",
                "the cat is on the mat",
                0.8333333333333334,
            ),
            (
                "Good question! Wear layers. In short: layers.",
                "Good question! Dress in layers and a windproof jacket. In short: layers and a shell.",
                0.5454545454545455,
            ),
            ("Hello, world!", "hello world", 1.0),
            ("aoeu33", "axeu33", 0.0),
        ];
        for (answer, reference, expected) in cases {
            assert!(
                (rouge_l(answer, reference) - expected).abs() < 1e-12,
                "{answer:?}"
            );
        }
        // By hand: "a b c d" against "a c e": the longest common subsequence is "a c",
        // precision 2/4, recall 2/3, F = 2·(1/2)(2/3) / (1/2 + 2/3) = 4/7.
        assert!((rouge_l("a b c d", "a c e") - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn each_metric_scores_a_sample_and_says_when_it_needs_a_reference() {
        let answer = "Good question! Wear a coat.\nIn short: a coat.";
        let regex = Metric::Regex(Regex::new(r"(?m)^In short: ").unwrap());
        assert_eq!(regex.score(answer, None), Ok(1.0));
        assert_eq!(regex.score("In short", None), Ok(0.0));
        let opener = Metric::Contains(Some("Good question!".into()));
        assert_eq!(opener.score(answer, None), Ok(1.0));
        assert_eq!(
            Metric::Contains(None).score(answer, Some("a coat")),
            Ok(1.0)
        );
        assert_eq!(
            Metric::RougeL.score(answer, None),
            Err(MissingReference { metric: "rougeL" })
        );
        assert_eq!(
            Metric::Chrf.score(answer, None).unwrap_err().to_string(),
            "chrf compares the answer with a reference answer, and this sample has none"
        );
        assert_eq!(Metric::ExactMatch.score("x", Some(" x ")), Ok(1.0));
        assert_eq!(Metric::Chrf.score("abc", Some("abc")), Ok(1.0));
    }
}
