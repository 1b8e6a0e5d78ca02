//! Turning generated token ids into text a piece at a time, for streamed replies.
//!
//! Byte-level BPE tokens can split a UTF-8 character, and a stop string can arrive
//! across several tokens, so a token's text cannot simply be decoded alone and sent:
//! [`TextStream`] decodes a short window of recent tokens (as text-generation-inference
//! does), holds back an incomplete character, and holds back any tail that could still
//! become a stop string. Streamed pieces always add up to the non-streamed reply.

/// The state of one reply's text.
pub struct TextStream {
    tokens: Vec<u32>,
    /// `tokens[prefix..read]` is the window whose text was already sent; decoding from
    /// `prefix` keeps the tokenizer's context (leading spaces) without redecoding it all.
    prefix: usize,
    read: usize,
    /// Text decoded but not sent yet: a possible start of a stop string.
    held: String,
    stop: Vec<String>,
}

/// What a new token changed.
#[derive(Debug, PartialEq, Eq)]
pub enum TextDelta {
    /// Text to send now (may be empty).
    More(String),
    /// A stop string appeared: send this last text, then finish with reason `stop`.
    Stopped(String),
}

impl TextStream {
    pub fn new(stop: Vec<String>) -> Self {
        Self {
            tokens: Vec::new(),
            prefix: 0,
            read: 0,
            held: String::new(),
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Tokens taken so far.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Adds a generated token; `decode` is the tokenizer's decode without special tokens.
    pub fn push(&mut self, token: u32, decode: impl Fn(&[u32]) -> String) -> TextDelta {
        self.tokens.push(token);
        let before = decode(&self.tokens[self.prefix..self.read]);
        let now = decode(&self.tokens[self.prefix..]);
        // An unfinished character decodes to U+FFFD: wait for the token that completes it.
        if now.len() <= before.len() || now.ends_with('\u{fffd}') || !now.starts_with(&before) {
            return TextDelta::More(String::new());
        }
        self.held.push_str(&now[before.len()..]);
        self.prefix = self.read;
        self.read = self.tokens.len();
        self.release()
    }

    /// The text still held back once generation ends without a stop string.
    pub fn finish(&mut self, decode: impl Fn(&[u32]) -> String) -> String {
        let before = decode(&self.tokens[self.prefix..self.read]);
        let now = decode(&self.tokens[self.prefix..]);
        if let Some(rest) = now.strip_prefix(before.as_str()) {
            self.held.push_str(rest);
        }
        self.read = self.tokens.len();
        self.prefix = self.read;
        match self.release() {
            TextDelta::More(text) | TextDelta::Stopped(text) => {
                text + &std::mem::take(&mut self.held)
            }
        }
    }

    /// Sends what cannot be part of a stop string any more.
    fn release(&mut self) -> TextDelta {
        if let Some(cut) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(cut);
            return TextDelta::Stopped(std::mem::take(&mut self.held));
        }
        // Keep the longest tail that is the start of some stop string.
        let keep = self
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let send = self.held.len() - keep;
        let rest = self.held.split_off(send);
        TextDelta::More(std::mem::replace(&mut self.held, rest))
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, cut at a
/// character boundary of both.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy tokenizer: token i is `PIECES[i]` as bytes; invalid UTF-8 shows as U+FFFD.
    const PIECES: &[&[u8]] = &[
        b"Hello", b" wor", b"ld", b"\xc3", b"\xa9", b"!", b"EN", b"D",
    ];

    fn decode(ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| PIECES[i as usize].to_vec())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn run(ids: &[u32], stop: &[&str]) -> (Vec<String>, Option<String>, String) {
        let mut stream = TextStream::new(stop.iter().map(|s| s.to_string()).collect());
        let mut pieces = Vec::new();
        for &id in ids {
            match stream.push(id, decode) {
                TextDelta::More(text) => pieces.push(text),
                TextDelta::Stopped(text) => return (pieces, Some(text), String::new()),
            }
        }
        let rest = stream.finish(decode);
        (pieces, None, rest)
    }

    #[test]
    fn pieces_add_up_to_the_whole_text() {
        let (pieces, stopped, rest) = run(&[0, 1, 2, 5], &[]);
        assert_eq!(pieces, ["Hello", " wor", "ld", "!"]);
        assert_eq!((stopped, rest), (None, String::new()));
    }

    #[test]
    fn a_split_character_waits_for_its_second_byte() {
        let (pieces, _, _) = run(&[0, 3, 4, 5], &[]);
        assert_eq!(pieces, ["Hello", "", "é", "!"]);
    }

    #[test]
    fn a_stop_string_across_tokens_is_held_back_then_cut() {
        let (pieces, stopped, _) = run(&[0, 5, 6, 7, 1], &["END"]);
        // "EN" could start "END": it is not sent until "D" settles it.
        assert_eq!(pieces, ["Hello", "!", ""]);
        assert_eq!(stopped.as_deref(), Some(""));
    }

    #[test]
    fn held_text_that_never_became_a_stop_string_is_sent() {
        let (pieces, stopped, rest) = run(&[0, 6, 5], &["END"]);
        assert_eq!(pieces, ["Hello", "", "EN!"]);
        assert_eq!(stopped, None);
        assert_eq!(rest, "");
        // Ending while something is held sends it at the finish.
        let (pieces, _, rest) = run(&[0, 6], &["END"]);
        assert_eq!((pieces.concat(), rest.as_str()), ("Hello".to_owned(), "EN"));
    }

    #[test]
    fn a_stop_string_inside_one_token_cuts_the_text_before_it() {
        // "o" and then "or" could start "orl", so they wait.
        let (pieces, stopped, _) = run(&[0, 1, 2], &["orl"]);
        assert_eq!(pieces, ["Hell", "o w"]);
        assert_eq!(stopped.as_deref(), Some(""));
        let (_, stopped, _) = run(&[0, 1, 2], &["ld"]);
        assert_eq!(stopped.as_deref(), Some(""));
    }

    #[test]
    fn suffix_prefix_respects_character_boundaries() {
        assert_eq!(longest_suffix_prefix("abcE", "END"), 1);
        assert_eq!(longest_suffix_prefix("abcEN", "END"), 2);
        assert_eq!(longest_suffix_prefix("abc", "END"), 0);
        assert_eq!(longest_suffix_prefix("xé", "éa"), 2);
    }
}
