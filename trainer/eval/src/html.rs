//! The report as one self-contained HTML page (no scripts, no outside styles or
//! fonts, so it opens from object storage or a laptop alike): the comparison table,
//! then every sample with its prompt, its reference and each model's answer side by
//! side, each answer with its scores. Every text is escaped.

use std::fmt::Write;

use crate::report::Report;

/// Escapes `&`, `<`, `>` and `"` for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:.4em .6em;vertical-align:top;text-align:left}\
th{background:#f3f3f3}.best{font-weight:bold}.diff{color:#555;font-size:.9em}\
pre{white-space:pre-wrap;margin:0;font-family:inherit}.scores{color:#555;font-size:.85em}\
.ref{background:#f7fbf7}";

/// The page for `report`, titled `title`.
pub fn report_html(report: &Report, title: &str) -> String {
    let mut page = String::new();
    let _ = writeln!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>",
        escape(title),
        escape(title)
    );
    let _ = writeln!(
        page,
        "<p>{} samples; baseline <b>{}</b>; best by {}: <b>{}</b>. Scores are means with their 95% bootstrap interval; below each, the paired difference from the baseline.</p>",
        report.samples.len(),
        escape(&report.baseline),
        escape(&report.metrics[0]),
        escape(&report.best)
    );
    comparison(&mut page, report);
    samples(&mut page, report);
    page.push_str("</body></html>\n");
    page
}

fn comparison(page: &mut String, report: &Report) {
    page.push_str("<table><tr><th>model</th>");
    for metric in &report.metrics {
        let _ = write!(page, "<th>{}</th>", escape(metric));
    }
    page.push_str("</tr>\n");
    for model in &report.models {
        let class = if model.model == report.best {
            " class=\"best\""
        } else {
            ""
        };
        let _ = write!(page, "<tr><td{class}>{}</td>", escape(&model.model));
        for score in &model.scores {
            let s = score.score;
            let _ = write!(page, "<td>{:.3} [{:.3}, {:.3}]", s.mean, s.low, s.high);
            if let Some(p) = score.perplexity {
                let _ = write!(page, "<div class=\"diff\">perplexity {:.2}</div>", p.mean);
            }
            if let Some(d) = score.vs_baseline {
                let _ = write!(
                    page,
                    "<div class=\"diff\">{:+.3} [{:+.3}, {:+.3}]</div>",
                    d.mean, d.low, d.high
                );
            }
            if let Some(p) = score.pairwise {
                let _ = write!(
                    page,
                    "<div class=\"diff\">win/tie/loss {:.2}/{:.2}/{:.2}</div>",
                    p.wins, p.ties, p.losses
                );
            }
            if score.unscored > 0 {
                let _ = write!(
                    page,
                    "<div class=\"diff\">{} unscored</div>",
                    score.unscored
                );
            }
            page.push_str("</td>");
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

fn samples(page: &mut String, report: &Report) {
    page.push_str("<table><tr><th>line</th><th>prompt</th><th>reference</th>");
    for model in &report.models {
        let _ = write!(page, "<th>{}</th>", escape(&model.model));
    }
    page.push_str("</tr>\n");
    for sample in &report.samples {
        let prompt: Vec<String> = sample
            .prompt
            .iter()
            .map(|m| format!("{:?}: {}", m.role, m.content))
            .collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td><pre>{}</pre></td><td class=\"ref\"><pre>{}</pre></td>",
            sample.line,
            escape(&prompt.join("\n")),
            escape(sample.reference.as_deref().unwrap_or("(none)"))
        );
        for answer in &sample.answers {
            let scores: Vec<String> = report
                .metrics
                .iter()
                .zip(&answer.scores)
                .map(|(metric, score)| match score {
                    Some(score) => format!("{} {score:.3}", escape(metric)),
                    None => format!("{} unscored", escape(metric)),
                })
                .collect();
            let _ = write!(
                page,
                "<td><pre>{}</pre><div class=\"scores\">{}</div>",
                escape(&answer.answer),
                scores.join(" · ")
            );
            for judge in &answer.judge {
                let _ = write!(
                    page,
                    "<details><summary>{}: the judge's reasons</summary><pre>{}</pre></details>",
                    escape(&judge.metric),
                    escape(&judge.reply)
                );
            }
            page.push_str("</td>");
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metric;
    use crate::report::{ModelAnswers, NamedMetric, Scorer, build_report};
    use crate::samples::EvalSample;
    use anneal_crds::dataset::{ChatMessage, Role};

    #[test]
    fn the_page_shows_each_answer_beside_the_reference_escaped() {
        let samples = vec![EvalSample {
            line: 7,
            prompt: vec![ChatMessage {
                role: Role::User,
                content: "Is 1 < 2?".into(),
            }],
            reference: Some("Yes & always.".into()),
        }];
        let answers = [
            ModelAnswers {
                model: "base".into(),
                answers: vec!["<script>alert(1)</script>".into()],
                reference_losses: None,
                judged: Vec::new(),
            },
            ModelAnswers {
                model: "tuned".into(),
                answers: vec!["Yes & always.".into()],
                reference_losses: None,
                judged: Vec::new(),
            },
        ];
        let metrics = [NamedMetric {
            label: "exactMatch".into(),
            scorer: Scorer::Text(Metric::ExactMatch),
        }];
        let report = build_report(&samples, &answers, &metrics, "base", 1).unwrap();
        let page = report_html(&report, "house <style>");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>house &lt;style&gt;</title>"));
        assert!(!page.contains("<script>"), "answers are escaped");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<pre>User: Is 1 &lt; 2?</pre>"));
        assert!(page.contains("<td class=\"ref\"><pre>Yes &amp; always.</pre></td>"));
        assert!(page.contains("<td class=\"best\">tuned</td><td>1.000 [1.000, 1.000]<div class=\"diff\">+1.000 [+1.000, +1.000]</div></td>"));
        assert!(page.contains("exactMatch 0.000") && page.contains("exactMatch 1.000"));
        assert!(!page.contains("http"), "self-contained: nothing fetched");
    }
}
