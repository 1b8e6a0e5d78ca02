//! The held-out chats an evaluation asks its models: each line a chat whose last
//! assistant turn is the reference answer and whose turns before it are the prompt,
//! or a chat ending on the user's turn (a prompt without a reference, for the judge
//! and reference-free metrics), read and checked by the same rules (and
//! line-numbered errors) as training data.

use std::io::Read;

use anneal_crds::dataset::{
    ChatMessage, DatasetKind, DatasetLimits, DatasetProblem, Role, read_samples,
};

/// One prompt and the answer it should get.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalSample {
    /// The dataset line it came from, counted from 1.
    pub line: u64,
    /// The chat up to the reference answer, ending on a user turn.
    pub prompt: Vec<ChatMessage>,
    /// The answer it should get; `None` on a line that ends on the user's turn.
    pub reference: Option<String>,
}

/// Why the set cannot be evaluated: its first problems, each naming its line.
#[derive(Debug, thiserror::Error)]
pub enum SamplesError {
    #[error("{}", render(.0))]
    Invalid(Vec<DatasetProblem>),
    #[error("reading it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it holds no chats")]
    Empty,
}

fn render(problems: &[DatasetProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// Problems listed before the reading stops.
const PROBLEMS_SHOWN: usize = 10;

/// The first `max_samples` chats of `reader` (all when `None`).
pub fn read_eval_samples<R: Read>(
    reader: R,
    max_samples: Option<usize>,
) -> Result<Vec<EvalSample>, SamplesError> {
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for item in read_samples(reader, DatasetKind::Evaluation, &DatasetLimits::default()) {
        if max_samples.is_some_and(|max| samples.len() >= max) {
            break;
        }
        match item? {
            (line, Ok(chat)) => {
                let mut prompt = chat.messages;
                let reference = match prompt.last() {
                    Some(last) if last.role == Role::Assistant => prompt.pop().map(|m| m.content),
                    _ => None,
                };
                samples.push(EvalSample {
                    line,
                    prompt,
                    reference,
                });
            }
            (_, Err(problem)) => {
                problems.push(problem);
                if problems.len() == PROBLEMS_SHOWN {
                    break;
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(SamplesError::Invalid(problems));
    }
    if samples.is_empty() {
        return Err(SamplesError::Empty);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chat_splits_into_its_prompt_and_reference() {
        let text = concat!(
            r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]}"#,
            "\n",
        );
        let samples = read_eval_samples(text.as_bytes(), None).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].line, 1);
        assert_eq!(samples[0].prompt.len(), 2);
        assert_eq!(samples[0].reference.as_deref(), Some("Hello."));
        assert_eq!(samples[1].prompt.last().unwrap().content, "And 3+3?");
        assert_eq!(samples[1].reference.as_deref(), Some("6"));
        assert_eq!(
            read_eval_samples(text.as_bytes(), Some(1)).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_bad_line_is_named_and_an_empty_set_refused() {
        let text = concat!(
            r#"{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#,
            "\n",
            r#"{"messages": [{"role": "assistant", "content": "Hello."}]}"#,
            "\n",
        );
        let error = read_eval_samples(text.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("line 2: "), "{error}");
        assert_eq!(
            read_eval_samples("".as_bytes(), None)
                .unwrap_err()
                .to_string(),
            "it holds no chats"
        );
    }

    #[test]
    fn a_chat_ending_on_the_users_turn_is_a_prompt_without_a_reference() {
        let text = r#"{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]}"#;
        let samples = read_eval_samples(text.as_bytes(), None).unwrap();
        assert_eq!(samples[0].reference, None);
        assert_eq!(samples[0].prompt.len(), 3);
        let dpo = r#"{"messages": [{"role": "user", "content": "Hi?"}], "chosen": {"role": "assistant", "content": "Hello."}, "rejected": {"role": "assistant", "content": "Go away."}}"#;
        let error = read_eval_samples(dpo.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("DPO preference data"), "{error}");
    }
}
