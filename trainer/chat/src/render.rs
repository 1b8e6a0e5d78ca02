//! Lays a conversation out as the pieces of its chat format, each marked trained or not, and
//! turns the pieces into token ids plus the loss mask, or into the template's text.

use std::borrow::Cow;

use anneal_crds::dataset::{ChatMessage, Role};

use super::template::DatedSystem;

/// A conversation as token ids, with `assistant_mask[i]` true where token `i` is trained on:
/// assistant content and the assistant turn's end-of-turn token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChat {
    pub ids: Vec<u32>,
    pub assistant_mask: Vec<bool>,
}

/// A special token: its id, and its text for rendering.
#[derive(Debug, Clone, Copy)]
pub(super) struct Special {
    pub id: u32,
    pub text: &'static str,
}

/// The special tokens a format is built from, resolved against the tokenizer once.
#[derive(Debug, Clone)]
pub(super) enum FormatTokens {
    ChatMl {
        im_start: Special,
        im_end: Special,
        default_system: Option<String>,
    },
    Llama3 {
        begin_of_text: Special,
        start_header: Special,
        end_header: Special,
        eot: Special,
        dated_system: Option<DatedSystem>,
    },
}

impl FormatTokens {
    /// The token that ends a turn; training on it is what teaches the model to stop.
    pub fn end_of_turn(&self) -> Special {
        match self {
            Self::ChatMl { im_end, .. } => *im_end,
            Self::Llama3 { eot, .. } => *eot,
        }
    }
}

/// One piece of a rendered conversation: a special token (by id, never through the tokenizer)
/// or text to tokenize on its own.
#[derive(Debug)]
pub(super) enum Piece<'a> {
    Special(Special),
    Text(Cow<'a, str>),
}

/// A piece and whether the loss is computed on its tokens.
pub(super) type MaskedPiece<'a> = (Piece<'a>, bool);

/// The pieces of `messages` in the chat format `tokens` belongs to.
///
/// Role headers are pieces of their own, apart from the content, so the mask boundary is exact;
/// it also means a trained reply starts from the same header tokens the generation prompt gives
/// at inference. Llama 3 starts with `<|begin_of_text|>` exactly once: encoding never runs the
/// tokenizer's post-processor (which adds its own BOS), unlike rendering the template to text and
/// tokenizing that with special tokens, which doubles it.
pub(super) fn pieces<'a>(
    tokens: &'a FormatTokens,
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
) -> Vec<MaskedPiece<'a>> {
    let mut out = Vec::new();
    match *tokens {
        FormatTokens::ChatMl {
            im_start,
            im_end,
            ref default_system,
        } => {
            let mut turn = |role: Role, content: &'a str| {
                let trained = role == Role::Assistant;
                out.push((Piece::Special(im_start), false));
                out.push((Piece::Text(Cow::Owned(format!("{role}\n"))), false));
                out.push((Piece::Text(Cow::Borrowed(content)), trained));
                out.push((Piece::Special(im_end), trained));
                // The newline after `<|im_end|>` is not part of what the model must produce.
                out.push((Piece::Text(Cow::Borrowed("\n")), false));
            };
            // Qwen2.5's template checks only the first message for a system turn.
            let has_system = messages.first().is_some_and(|m| m.role == Role::System);
            if let (false, Some(system)) = (has_system, default_system) {
                turn(Role::System, system);
            }
            for message in messages {
                turn(message.role, &message.content);
            }
            if add_generation_prompt {
                out.push((Piece::Special(im_start), false));
                out.push((Piece::Text(Cow::Borrowed("assistant\n")), false));
            }
        }
        FormatTokens::Llama3 {
            begin_of_text,
            start_header,
            end_header,
            eot,
            ref dated_system,
        } => {
            out.push((Piece::Special(begin_of_text), false));
            let header = |out: &mut Vec<MaskedPiece<'a>>, role: Role| {
                out.push((Piece::Special(start_header), false));
                out.push((Piece::Text(Cow::Borrowed(role.as_str())), false));
                out.push((Piece::Special(end_header), false));
                out.push((Piece::Text(Cow::Borrowed("\n\n")), false));
            };
            let mut messages = messages;
            if let Some(dated) = dated_system {
                // Llama 3.1+: the dated block always comes first, the system message (if the
                // conversation starts with one) inside it, as one text like the template's.
                let system = match messages.first() {
                    Some(first) if first.role == Role::System => {
                        messages = &messages[1..];
                        jinja_trim(&first.content)
                    }
                    _ => "",
                };
                header(&mut out, Role::System);
                let text = format!("{}{system}", dated.preamble());
                out.push((Piece::Text(Cow::Owned(text)), false));
                out.push((Piece::Special(eot), false));
            }
            for message in messages {
                let trained = message.role == Role::Assistant;
                header(&mut out, message.role);
                out.push((
                    Piece::Text(Cow::Borrowed(jinja_trim(&message.content))),
                    trained,
                ));
                out.push((Piece::Special(eot), trained));
            }
            if add_generation_prompt {
                header(&mut out, Role::Assistant);
            }
        }
    }
    out
}

/// Jinja's `trim` is Python's `str.strip()`, whose whitespace also covers the ASCII separators
/// U+001C..U+001F that Rust's `char::is_whitespace` leaves out.
fn jinja_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Token ids and mask of the pieces, each text piece encoded on its own by `encode`.
pub(super) fn encode_pieces<E>(
    pieces: &[MaskedPiece<'_>],
    mut encode: impl FnMut(&str) -> Result<Vec<u32>, E>,
) -> Result<EncodedChat, E> {
    let mut chat = EncodedChat {
        ids: Vec::new(),
        assistant_mask: Vec::new(),
    };
    for (piece, trained) in pieces {
        match piece {
            Piece::Special(special) => chat.ids.push(special.id),
            Piece::Text(text) if text.is_empty() => {}
            Piece::Text(text) => chat.ids.extend(encode(text)?),
        }
        chat.assistant_mask.resize(chat.ids.len(), *trained);
    }
    Ok(chat)
}

/// The text the chat template renders for the pieces.
pub(super) fn render_pieces(pieces: &[MaskedPiece<'_>]) -> String {
    pieces
        .iter()
        .map(|(piece, _)| match piece {
            Piece::Special(special) => special.text,
            Piece::Text(text) => text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jinja_trim_matches_python_strip() {
        assert_eq!(jinja_trim(" \t\n hi there \u{1f}\u{a0}\r\n"), "hi there");
        assert_eq!(jinja_trim("\u{1c}x\u{1d}"), "x");
        assert_eq!(jinja_trim(""), "");
    }
}
