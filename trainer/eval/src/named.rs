//! A manifest's metrics (`spec.metrics` of a ModelEvaluation, or
//! `spec.checkpoints.evaluation.metrics` of a FineTuneJob) as the report computes and
//! names them, and the check that a set without reference answers is only scored by
//! metrics that need none.

use anneal_crds::modelevaluation::MetricSpec;

use crate::metrics::Metric;
use crate::report::{NamedMetric, Scorer};
use crate::samples::EvalSample;

/// A metric the manifest asks for that cannot be computed on these samples, by its
/// field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MetricRefused {
    pub field: String,
    pub message: String,
}

/// The metrics at `path` (`spec.metrics`) as the report computes them, labelled as
/// reports and status name them (`regex /^A/`, `contains "In short:"`).
pub fn named_metrics(
    path: &str,
    metrics: &[MetricSpec],
) -> Result<Vec<NamedMetric>, MetricRefused> {
    metrics
        .iter()
        .enumerate()
        .map(|(index, spec)| named_metric(&format!("{path}[{index}]"), spec, &metrics[..index]))
        .collect()
}

/// One metric; `earlier` are the metrics before it (a judge's verdicts are kept in
/// the order of the judges).
fn named_metric(
    field: &str,
    spec: &MetricSpec,
    earlier: &[MetricSpec],
) -> Result<NamedMetric, MetricRefused> {
    let text = |label: String, metric| NamedMetric {
        label,
        scorer: Scorer::Text(metric),
    };
    Ok(if spec.exact_match.is_some() {
        text("exactMatch".to_owned(), Metric::ExactMatch)
    } else if let Some(contains) = &spec.contains {
        let label = match &contains.text {
            Some(text) => format!("contains {text:?}"),
            None => "contains reference".to_owned(),
        };
        text(label, Metric::Contains(contains.text.clone()))
    } else if let Some(regex) = &spec.regex {
        // The manifest's validation compiled it already.
        let compiled = regex::Regex::new(&regex.pattern).map_err(|e| MetricRefused {
            field: format!("{field}.regex.pattern"),
            message: e.to_string(),
        })?;
        text(
            format!("regex /{}/", regex.pattern),
            Metric::Regex(compiled),
        )
    } else if spec.rouge_l.is_some() {
        text("rougeL".to_owned(), Metric::RougeL)
    } else if spec.chrf.is_some() {
        text("chrf".to_owned(), Metric::Chrf)
    } else if spec.reference_loss.is_some() {
        NamedMetric {
            label: "referenceLoss".to_owned(),
            scorer: Scorer::ReferenceLoss,
        }
    } else if let Some(judge) = &spec.judge {
        NamedMetric {
            label: format!("judge 1-{}", judge.scale),
            scorer: Scorer::Judge {
                judged: earlier.iter().filter(|m| m.judge.is_some()).count(),
            },
        }
    } else {
        return Err(MetricRefused {
            field: field.to_owned(),
            message: "names no metric".to_owned(),
        });
    })
}

/// A metric that compares answers with references (at `path[index]`), on a set with a
/// prompt-only line: refused by the metric's field and the line, before any model
/// answers.
pub fn check_references(
    path: &str,
    metrics: &[NamedMetric],
    samples: &[EvalSample],
) -> Result<(), MetricRefused> {
    let Some(sample) = samples.iter().find(|s| s.reference.is_none()) else {
        return Ok(());
    };
    let needs_reference = |scorer: &Scorer| match scorer {
        Scorer::Text(metric) => metric.needs_reference(),
        Scorer::ReferenceLoss => true,
        Scorer::Judge { .. } => false,
    };
    match metrics.iter().position(|m| needs_reference(&m.scorer)) {
        Some(index) => Err(MetricRefused {
            field: format!("{path}[{index}]"),
            message: format!(
                "{} compares each answer with a reference answer, and dataset line {} has none (it ends on the user's turn); give every line a reference, or score prompt-only sets with judge, regex or contains with a text",
                metrics[index].label, sample.line
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::dataset::{ChatMessage, Role};

    fn metrics(json: &str) -> Vec<MetricSpec> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn labels_name_each_metric_as_reports_show_it() {
        let specs = metrics(
            r#"[{"contains": {"text": "In short:"}}, {"regex": {"pattern": "^Good"}},
                {"judge": {"model": {"evaluatedModel": "a"}, "rubric": "r", "scale": 5}},
                {"referenceLoss": {}}, {"contains": {}},
                {"judge": {"model": {"evaluatedModel": "a"}, "rubric": "r"}}]"#,
        );
        let named = named_metrics("spec.metrics", &specs).unwrap();
        let labels: Vec<&str> = named.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "contains \"In short:\"",
                "regex /^Good/",
                "judge 1-5",
                "referenceLoss",
                "contains reference",
                "judge 1-10"
            ]
        );
        assert!(matches!(named[5].scorer, Scorer::Judge { judged: 1 }));
    }

    #[test]
    fn a_prompt_only_line_is_refused_by_the_first_metric_needing_a_reference() {
        let specs = metrics(r#"[{"regex": {"pattern": "^Good"}}, {"rougeL": {}}]"#);
        let path = "spec.checkpoints.evaluation.metrics";
        let named = named_metrics(path, &specs).unwrap();
        let user = ChatMessage {
            role: Role::User,
            content: "Hi?".into(),
        };
        let samples = [
            EvalSample {
                line: 1,
                prompt: vec![user.clone()],
                reference: Some("Hello.".into()),
            },
            EvalSample {
                line: 2,
                prompt: vec![user],
                reference: None,
            },
        ];
        assert_eq!(check_references(path, &named, &samples[..1]), Ok(()));
        let refused = check_references(path, &named, &samples).unwrap_err();
        assert_eq!(refused.field, "spec.checkpoints.evaluation.metrics[1]");
        assert!(
            refused.message.starts_with(
                "rougeL compares each answer with a reference answer, and dataset line 2 has none"
            ),
            "{}",
            refused.message
        );
        assert_eq!(check_references(path, &named[..1], &samples), Ok(()));
    }
}
