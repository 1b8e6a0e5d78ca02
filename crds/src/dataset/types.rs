//! The shapes a dataset line takes once it has passed the rules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which line shape a dataset must have; follows the job's `spec.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// Supervised fine-tuning: `messages` ending on an assistant reply.
    Sft,
    /// Preference pairs: `messages` ending on a user turn, plus `chosen` and `rejected`.
    Dpo,
    /// An evaluation's held-out chats: `messages` ending on an assistant reply (the
    /// reference answer) or on a user turn (a prompt without one).
    Evaluation,
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sft => "sft",
            Self::Dpo => "dpo",
            Self::Evaluation => "evaluation",
        })
    }
}

/// Who speaks a message. Also the schema of sample prompts in the CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The name used in the data, e.g. `"assistant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// Only the exact lowercase names are roles; near misses get their own message in the rules.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        match name {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One turn of a conversation. Also the schema of sample prompts in the CRD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    /// Who speaks: `system` (only first), `user` or `assistant`.
    pub role: Role,
    /// The message text.
    #[schemars(length(max = crate::limits::PROMPT_CONTENT_MAX))]
    pub content: String,
}

/// One valid dataset line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSample {
    /// The conversation; for SFT it ends on an assistant reply, for DPO on a user turn.
    pub messages: Vec<ChatMessage>,
    /// DPO only: the preferred assistant reply to the last user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<ChatMessage>,
    /// DPO only: the dispreferred assistant reply to the last user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<ChatMessage>,
}

impl ChatSample {
    /// Characters (not bytes) of all content, `chosen` and `rejected` included.
    pub fn characters(&self) -> u64 {
        self.messages
            .iter()
            .chain(&self.chosen)
            .chain(&self.rejected)
            .map(|message| message.content.chars().count() as u64)
            .sum()
    }
}
