//! The LLM judge over every model's answers: for each judge metric, one request per
//! model and sample asking for a score by the rubric and, with `pairwise`, two per
//! non-baseline model and sample comparing its answer with the baseline's (its answer
//! first, then second); all of them asked of the judge in one batch, and the replies
//! read back into each model's [`Judged`]. A reply that cannot be read leaves that
//! sample unscored, and is kept in the report as the judge wrote it.

use anneal_crds::dataset::ChatMessage;
use anneal_eval::judge::{
    Rubric, pairwise_request, parse_preference, parse_score, score_request, swapped_outcome,
};
use anneal_eval::report::Judged;
use anneal_eval::samples::EvalSample;

/// Every request of one judge metric, in the order [`read_verdicts`] expects.
pub fn judge_requests(
    rubric: &Rubric,
    pairwise: bool,
    samples: &[EvalSample],
    answers: &[Vec<String>],
    baseline: usize,
) -> Vec<Vec<ChatMessage>> {
    let mut requests = Vec::new();
    for model_answers in answers {
        for (sample, answer) in samples.iter().zip(model_answers) {
            requests.push(score_request(
                rubric,
                &sample.prompt,
                sample.reference.as_deref(),
                answer,
            ));
        }
    }
    if pairwise {
        for (m, model_answers) in answers.iter().enumerate() {
            if m == baseline {
                continue;
            }
            for (i, sample) in samples.iter().enumerate() {
                let (ours, theirs) = (&model_answers[i], &answers[baseline][i]);
                let reference = sample.reference.as_deref();
                requests.push(pairwise_request(
                    rubric,
                    &sample.prompt,
                    reference,
                    ours,
                    theirs,
                ));
                requests.push(pairwise_request(
                    rubric,
                    &sample.prompt,
                    reference,
                    theirs,
                    ours,
                ));
            }
        }
    }
    requests
}

/// The judge's `replies` to [`judge_requests`] (same arguments), read into one
/// [`Judged`] per model.
pub fn read_verdicts(
    rubric: &Rubric,
    pairwise: bool,
    samples: usize,
    models: usize,
    baseline: usize,
    replies: Vec<String>,
) -> Vec<Judged> {
    let expected = models * samples
        + if pairwise {
            2 * (models - 1) * samples
        } else {
            0
        };
    assert_eq!(replies.len(), expected, "one reply a request");
    let mut replies = replies.into_iter();
    let mut judged: Vec<Judged> = (0..models)
        .map(|_| {
            let replies: Vec<String> = replies.by_ref().take(samples).collect();
            Judged {
                scores: replies
                    .iter()
                    .map(|reply| parse_score(reply, rubric.scale).map(f64::from))
                    .collect(),
                replies,
                pairwise: None,
            }
        })
        .collect();
    if pairwise {
        for (m, model) in judged.iter_mut().enumerate() {
            if m == baseline {
                continue;
            }
            let pairs = (0..samples)
                .map(|_| {
                    let first = replies.next().expect("counted");
                    let second = replies.next().expect("counted");
                    let outcome =
                        swapped_outcome(parse_preference(&first), parse_preference(&second));
                    (outcome, [first, second])
                })
                .collect();
            model.pairwise = Some(pairs);
        }
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;
    use anneal_crds::dataset::Role;
    use anneal_eval::judge::Outcome;

    #[test]
    fn every_answer_is_scored_and_compared_with_the_baselines_in_both_orders() {
        let rubric = Rubric {
            rubric: "Polite?".into(),
            scale: 5,
        };
        let samples: Vec<EvalSample> = (1..=2)
            .map(|line| EvalSample {
                line,
                prompt: vec![ChatMessage {
                    role: Role::User,
                    content: format!("q{line}"),
                }],
                reference: None,
            })
            .collect();
        let answers = vec![
            vec!["base 1".to_owned(), "base 2".to_owned()],
            vec!["tuned 1".to_owned(), "tuned 2".to_owned()],
        ];
        let requests = judge_requests(&rubric, true, &samples, &answers, 0);
        // 2 models x 2 samples scored, then tuned against base twice per sample.
        assert_eq!(requests.len(), 4 + 4);
        assert!(
            requests[2][1]
                .content
                .ends_with("## The answer to judge\ntuned 1\n")
        );
        assert!(
            requests[4][1]
                .content
                .ends_with("## Answer A\ntuned 1\n\n## Answer B\nbase 1\n")
        );
        assert!(
            requests[5][1]
                .content
                .ends_with("## Answer A\nbase 1\n\n## Answer B\ntuned 1\n")
        );

        let replies = [
            "Score: 2",
            "garbage",
            "Score: 5",
            "Score: 4", // scores
            "Winner: A",
            "Winner: B", // sample 1: tuned wins in both orders
            "Winner: A",
            "no idea", // sample 2: unreadable
        ];
        let judged = read_verdicts(
            &rubric,
            true,
            2,
            2,
            0,
            replies.iter().map(|r| r.to_string()).collect(),
        );
        assert_eq!(judged[0].scores, vec![Some(2.0), None]);
        assert_eq!(judged[0].pairwise, None);
        assert_eq!(judged[1].scores, vec![Some(5.0), Some(4.0)]);
        let pairs = judged[1].pairwise.as_ref().unwrap();
        assert_eq!(pairs[0].0, Some(Outcome::Win));
        assert_eq!(pairs[1].0, None);
        assert_eq!(pairs[1].1, ["Winner: A".to_owned(), "no idea".to_owned()]);
    }
}
