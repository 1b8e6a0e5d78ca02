//! The LLM judge: what a judge model is asked about one answer (a score from 1 to the
//! rubric's scale) or about two answers to the same prompt (which is better), and how
//! its replies are read.
//!
//! Judges prefer whichever answer they read first (or second) more often than the
//! answers warrant, so a pairwise comparison is asked twice with the answers' places
//! swapped, and counts as a win or a loss only when both orders agree; any other pair
//! of verdicts is a tie. A reply that does not end on the asked-for line is not
//! guessed at: the sample is counted as unscored for that model.

use std::sync::OnceLock;

use anneal_crds::dataset::{ChatMessage, Role};
use regex::Regex;
use serde::Serialize;

/// What a good answer is and the scale of a score.
#[derive(Clone, Debug, PartialEq)]
pub struct Rubric {
    pub rubric: String,
    /// Scores run from 1 to `scale`.
    pub scale: u32,
}

/// The judge's request to score `answer`, given as the reply to `prompt` (with the
/// reference answer when the sample has one).
pub fn score_request(
    rubric: &Rubric,
    prompt: &[ChatMessage],
    reference: Option<&str>,
    answer: &str,
) -> Vec<ChatMessage> {
    let system = format!(
        "You judge an AI assistant's answer to a conversation. The rubric: {}\n\
         Score the answer by the rubric alone, from 1 (worst) to {} (best). Give your \
         reasons in one or two sentences, then end with a last line of exactly the \
         form `Score: N`.",
        rubric.rubric, rubric.scale
    );
    let mut question = conversation_section(prompt, reference);
    question.push_str(&format!("## The answer to judge\n{answer}\n"));
    request(system, question)
}

/// The judge's request to compare answer A and answer B, both replies to `prompt`.
pub fn pairwise_request(
    rubric: &Rubric,
    prompt: &[ChatMessage],
    reference: Option<&str>,
    first: &str,
    second: &str,
) -> Vec<ChatMessage> {
    let system = format!(
        "You compare two AI assistants' answers to the same conversation. The rubric: {}\n\
         Decide which answer is better by the rubric alone; neither their order nor \
         their length is a reason. Give your reasons in one or two sentences, then end \
         with a last line of exactly one of `Winner: A`, `Winner: B` or `Winner: tie`.",
        rubric.rubric
    );
    let mut question = conversation_section(prompt, reference);
    question.push_str(&format!("## Answer A\n{first}\n\n## Answer B\n{second}\n"));
    request(system, question)
}

fn request(system: String, user: String) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: system,
        },
        ChatMessage {
            role: Role::User,
            content: user,
        },
    ]
}

/// The conversation as the judge reads it: each turn with its role, then the
/// reference answer where there is one.
fn conversation_section(prompt: &[ChatMessage], reference: Option<&str>) -> String {
    let mut text = String::from("## The conversation\n");
    for message in prompt {
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        text.push_str(&format!("{role}: {}\n", message.content));
    }
    if let Some(reference) = reference {
        text.push_str(&format!("\n## A reference answer\n{reference}\n"));
    }
    text.push('\n');
    text
}

/// The score of the reply's last `Score: N` (anywhere on a line, as in `Final score:
/// 8`), when it is within 1..=`scale`.
pub fn parse_score(reply: &str, scale: u32) -> Option<u32> {
    static SCORE: OnceLock<Regex> = OnceLock::new();
    let pattern = SCORE
        .get_or_init(|| Regex::new(r"(?i)\bscore\b[\s*_]*[:=][\s*_]*(\d{1,3})\b").expect("valid"));
    let last = pattern.captures_iter(reply).last()?;
    let score: u32 = last[1].parse().ok()?;
    (1..=scale).contains(&score).then_some(score)
}

/// Which answer a pairwise reply prefers, by its places in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    First,
    Second,
    Tie,
}

/// The verdict of the reply's last `Winner: A|B|tie`.
pub fn parse_preference(reply: &str) -> Option<Preference> {
    static WINNER: OnceLock<Regex> = OnceLock::new();
    let pattern = WINNER.get_or_init(|| {
        Regex::new(r"(?i)\bwinner\b[\s*_]*[:=][\s*_]*(answer\s+)?(a|b|tie)\b").expect("valid")
    });
    let last = pattern.captures_iter(reply).last()?;
    Some(match last[2].to_ascii_lowercase().as_str() {
        "a" => Preference::First,
        "b" => Preference::Second,
        _ => Preference::Tie,
    })
}

/// A model's answer against the baseline's, both orders asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Win,
    Tie,
    Loss,
}

/// The outcome for the model from the verdicts with its answer first (`model_first`)
/// and second (`model_second`): a win or loss when both agree, a tie otherwise, and
/// `None` when either reply could not be read.
pub fn swapped_outcome(
    model_first: Option<Preference>,
    model_second: Option<Preference>,
) -> Option<Outcome> {
    use Preference::*;
    Some(match (model_first?, model_second?) {
        (First, Second) => Outcome::Win,
        (Second, First) => Outcome::Loss,
        _ => Outcome::Tie,
    })
}

/// Shares of wins, ties and losses over the comparisons the judge answered, and how
/// many it did not.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairwiseSummary {
    pub wins: f64,
    pub ties: f64,
    pub losses: f64,
    pub unscored: u64,
}

/// The shares of `outcomes` (one per sample, `None` unscored).
pub fn pairwise_summary(outcomes: &[Option<Outcome>]) -> PairwiseSummary {
    let scored: Vec<Outcome> = outcomes.iter().flatten().copied().collect();
    let share = |kind: Outcome| {
        let count = scored.iter().filter(|o| **o == kind).count();
        match scored.len() {
            0 => f64::NAN,
            n => count as f64 / n as f64,
        }
    };
    PairwiseSummary {
        wins: share(Outcome::Win),
        ties: share(Outcome::Tie),
        losses: share(Outcome::Loss),
        unscored: (outcomes.len() - scored.len()) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rubric() -> Rubric {
        Rubric {
            rubric: "Is it in the house style?".into(),
            scale: 10,
        }
    }

    fn user(text: &str) -> Vec<ChatMessage> {
        vec![ChatMessage {
            role: Role::User,
            content: text.into(),
        }]
    }

    #[test]
    fn a_score_request_holds_the_rubric_the_conversation_the_reference_and_the_answer() {
        let request = score_request(&rubric(), &user("Why?"), Some("Because."), "No idea.");
        assert_eq!(request.len(), 2);
        assert_eq!(request[0].role, Role::System);
        assert!(
            request[0]
                .content
                .contains("The rubric: Is it in the house style?")
        );
        assert!(request[0].content.contains("from 1 (worst) to 10 (best)"));
        assert_eq!(
            request[1].content,
            "## The conversation\nuser: Why?\n\n## A reference answer\nBecause.\n\n## The answer to judge\nNo idea.\n"
        );
        let without = score_request(&rubric(), &user("Why?"), None, "No idea.");
        assert!(!without[1].content.contains("reference"));
        let pair = pairwise_request(&rubric(), &user("Why?"), None, "one", "two");
        assert!(
            pair[1]
                .content
                .ends_with("## Answer A\none\n\n## Answer B\ntwo\n")
        );
    }

    #[test]
    fn scores_are_read_from_the_last_score_line_within_the_scale() {
        assert_eq!(parse_score("Clear and kind.\nScore: 8", 10), Some(8));
        assert_eq!(parse_score("**Score:** 7/10", 10), Some(7));
        assert_eq!(parse_score("score = 3", 5), Some(3));
        assert_eq!(parse_score("Clear.\nFinal score: 8", 10), Some(8));
        // The last one counts: a judge that corrects itself.
        assert_eq!(
            parse_score("Score: 2\nOn reflection:\nScore: 9", 10),
            Some(9)
        );
        // Outside the scale, missing, or not on a line of its own: unscored.
        assert_eq!(parse_score("Score: 11", 10), None);
        assert_eq!(parse_score("Score: 0", 10), None);
        assert_eq!(parse_score("I would give it a high score", 10), None);
        assert_eq!(parse_score("I'd score it 9", 10), None);
        assert_eq!(parse_score("The score: nine", 10), None);
        assert_eq!(parse_score("", 10), None);
    }

    #[test]
    fn verdicts_are_read_from_the_last_winner_line() {
        assert_eq!(
            parse_preference("A is warmer.\nWinner: A"),
            Some(Preference::First)
        );
        assert_eq!(parse_preference("**Winner:** B"), Some(Preference::Second));
        assert_eq!(parse_preference("winner: Tie"), Some(Preference::Tie));
        assert_eq!(
            parse_preference("Winner: Answer B"),
            Some(Preference::Second)
        );
        assert_eq!(
            parse_preference("Final verdict, winner: tie"),
            Some(Preference::Tie)
        );
        assert_eq!(parse_preference("Both are fine."), None);
        assert_eq!(parse_preference("Winner: C"), None);
    }

    #[test]
    fn only_verdicts_that_survive_the_swap_are_wins_or_losses() {
        use Preference::*;
        // The model's answer is A in the first request and B in the second.
        assert_eq!(
            swapped_outcome(Some(First), Some(Second)),
            Some(Outcome::Win)
        );
        assert_eq!(
            swapped_outcome(Some(Second), Some(First)),
            Some(Outcome::Loss)
        );
        // A judge that always picks A (order bias) says nothing: a tie.
        assert_eq!(
            swapped_outcome(Some(First), Some(First)),
            Some(Outcome::Tie)
        );
        assert_eq!(swapped_outcome(Some(Tie), Some(Second)), Some(Outcome::Tie));
        assert_eq!(swapped_outcome(None, Some(Second)), None);

        let summary = pairwise_summary(&[
            Some(Outcome::Win),
            Some(Outcome::Win),
            Some(Outcome::Tie),
            Some(Outcome::Loss),
            None,
        ]);
        assert_eq!(
            summary,
            PairwiseSummary {
                wins: 0.5,
                ties: 0.25,
                losses: 0.25,
                unscored: 1
            }
        );
        assert!(pairwise_summary(&[None]).wins.is_nan());
    }
}
