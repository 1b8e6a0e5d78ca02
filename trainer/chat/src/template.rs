//! Tells a model's chat format from its template text (or its architecture when there is no
//! template), and finds the default system prompt a ChatML template inserts.

use super::ChatError;
use super::model_files::ChatTemplate;

/// How a conversation is laid out in tokens. We render these ourselves instead of running Jinja,
/// so that the loss mask falls exactly on assistant tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` (Qwen). `default_system` is the system turn
    /// the template inserts when a conversation has none (Qwen2.5-Instruct does this).
    ChatMl { default_system: Option<String> },
    /// `<|begin_of_text|>` then `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`
    /// per turn, with content trimmed (Llama 3). `dated_system` is the system block Llama 3.1,
    /// 3.2 and 3.3 templates write before every conversation, system message or not.
    Llama3 { dated_system: Option<DatedSystem> },
}

/// The system block of Llama 3.1+ templates: `Cutting Knowledge Date: {cutoff}\nToday
/// Date: {date}\n\n` and then the (trimmed) system message, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedSystem {
    /// As the template writes it, e.g. `December 2023`.
    pub knowledge_cutoff: String,
    pub today: TodayDate,
}

/// What a Llama 3.1+ template writes as "Today Date".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TodayDate {
    /// The template's default `date_string` (Llama 3.1 and 3.3: `26 Jul 2024`): transformers
    /// and vLLM pass no date, so every conversation gets this one.
    Fixed(String),
    /// `strftime_now(FORMAT)` (Llama 3.2): the day the conversation is rendered, as
    /// transformers gives it, so the tokens of the same conversation change with the date.
    Now { format: String },
}

impl DatedSystem {
    /// The block's text before the system message.
    pub fn preamble(&self) -> String {
        let today = match &self.today {
            TodayDate::Fixed(date) => date.clone(),
            TodayDate::Now { format } => {
                anneal_crds::jiff::Zoned::now().strftime(format).to_string()
            }
        };
        format!(
            "Cutting Knowledge Date: {}\nToday Date: {today}\n\n",
            self.knowledge_cutoff
        )
    }
}

/// Finds the dated system block of a Llama 3.1+ template; `None` for templates without one
/// (Llama 3), or whose date this does not recognize.
pub(super) fn dated_system(template: &str) -> Option<DatedSystem> {
    const CUTOFF: &str = "Cutting Knowledge Date: ";
    let after = &template[template.find(CUTOFF)? + CUTOFF.len()..];
    // The literal ends at its `\n` escape (or a real newline, or its closing quote).
    let knowledge_cutoff = after[..after.find(['\\', '\n', '"', '\''])?].to_owned();
    let today = if let Some(at) = template.find("strftime_now(") {
        TodayDate::Now {
            format: quoted_after(&template[at + "strftime_now(".len()..])?,
        }
    } else {
        let at = template.find("set date_string =")?;
        TodayDate::Fixed(quoted_after(&template[at + "set date_string =".len()..])?)
    };
    Some(DatedSystem {
        knowledge_cutoff,
        today,
    })
}

/// The first quoted string (`"..."` or `'...'`) at the start of `text`, after spaces.
fn quoted_after(text: &str) -> Option<String> {
    let text = text.trim_start();
    let quote = text.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &text[1..];
    Some(body[..body.find(quote)?].to_owned())
}

impl ChatFormat {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ChatMl { .. } => "ChatML",
            Self::Llama3 { .. } => "Llama-3",
        }
    }
}

pub(super) const IM_START: &str = "<|im_start|>";
pub(super) const IM_END: &str = "<|im_end|>";
pub(super) const BEGIN_OF_TEXT: &str = "<|begin_of_text|>";
pub(super) const START_HEADER: &str = "<|start_header_id|>";
pub(super) const END_HEADER: &str = "<|end_header_id|>";
pub(super) const EOT: &str = "<|eot_id|>";

/// The template decides when there is one: its markers are unambiguous. Only a folder without a
/// template falls back on the architecture name from config.json.
pub(super) fn detect_format(
    template: Option<&ChatTemplate>,
    architecture: &str,
) -> Result<ChatFormat, ChatError> {
    match template {
        Some(template) if template.text.contains(IM_START) => {
            Ok(ChatFormat::ChatMl { default_system: default_system_prompt(&template.text) })
        }
        Some(template) if template.text.contains(START_HEADER) => Ok(ChatFormat::Llama3 {
            dated_system: dated_system(&template.text),
        }),
        Some(template) => Err(ChatError::UnknownFormat {
            architecture: architecture.to_owned(),
            template: format!("the chat template in {}", template.source),
        }),
        None if architecture.starts_with("Qwen2") || architecture.starts_with("Qwen3") => {
            Ok(ChatFormat::ChatMl { default_system: None })
        }
        None if architecture.starts_with("Llama") => Ok(ChatFormat::Llama3 { dated_system: None }),
        None => Err(ChatError::UnknownFormat {
            architecture: architecture.to_owned(),
            template: "a model folder without a chat template (no chat_template.jinja, no chat_template in \
                       tokenizer_config.json)"
                .to_owned(),
        }),
    }
}

/// Finds the system prompt a ChatML template writes when the conversation has no system message.
///
/// Real templates (Qwen2, Qwen2.5) write it as a literal right after the system header, either in
/// the same string literal, `'<|im_start|>system\nYou are ...<|im_end|>\n'`, or as the next
/// concatenated literal, `'<|im_start|>system\n' + 'You are ...'`. The branch that copies the
/// user's system message instead (`'<|im_start|>system\n' + messages[0]['content']`) yields
/// nothing, so the first header followed by a literal is the default. Templates without one
/// (Qwen3) give `None`.
pub(super) fn default_system_prompt(template: &str) -> Option<String> {
    let header = format!("{IM_START}system");
    let mut search_from = 0;
    while let Some(found) = template[search_from..].find(&header) {
        let start = search_from + found;
        search_from = start + header.len();
        // Jinja string literals write the newline as `\n`; raw template text has a real one.
        let rest = &template[search_from..];
        let Some(rest) = rest.strip_prefix("\\n").or_else(|| rest.strip_prefix('\n')) else {
            continue;
        };
        let quote = template[..start]
            .chars()
            .next_back()
            .filter(|c| *c == '\'' || *c == '"');
        let literal = match quote {
            Some(quote) => literal_after_header(rest, quote),
            None => raw_text_until_end(rest),
        };
        if let Some(prompt) = literal.filter(|prompt| !prompt.is_empty()) {
            return Some(prompt);
        }
    }
    None
}

/// Inside a literal opened by `quote`: either the literal goes on to `<|im_end|>` (the prompt is
/// what lies between), or it closes right after the header and `+` joins the next literal.
fn literal_after_header(rest: &str, quote: char) -> Option<String> {
    let (body, after) = read_literal_body(rest, quote)?;
    if let Some(end) = body.find(IM_END) {
        return Some(body[..end].to_owned());
    }
    if !body.is_empty() {
        // The literal closed on something else after the header: not a default prompt.
        return None;
    }
    let next = after.trim_start().strip_prefix('+')?.trim_start();
    let next_quote = next.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let (body, _) = read_literal_body(&next[1..], next_quote)?;
    // `'<|im_start|>system\n' + 'prompt<|im_end|>\n'` and `... + 'prompt' + '<|im_end|>\n'` both occur.
    Some(
        body.find(IM_END)
            .map_or(body.as_str(), |end| &body[..end])
            .to_owned(),
    )
}

/// The unescaped body of a Jinja string literal whose opening quote is already consumed, and the
/// text after its closing quote. `None` when the literal does not close.
fn read_literal_body(text: &str, quote: char) -> Option<(String, &str)> {
    let mut body = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, escaped) = chars.next()?;
                match escaped {
                    'n' => body.push('\n'),
                    't' => body.push('\t'),
                    'r' => body.push('\r'),
                    '\\' | '\'' | '"' => body.push(escaped),
                    // Python keeps unknown escapes as written.
                    other => {
                        body.push('\\');
                        body.push(other);
                    }
                }
            }
            c if c == quote => return Some((body, &text[i + c.len_utf8()..])),
            c => body.push(c),
        }
    }
    None
}

/// Template text outside any Jinja tag (`{{ }}`, `{% %}`) up to `<|im_end|>` is written as is.
fn raw_text_until_end(rest: &str) -> Option<String> {
    let end = rest.find(IM_END)?;
    let body = &rest[..end];
    (!body.contains('{') && !body.contains('}')).then(|| body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> ChatTemplate {
        ChatTemplate {
            text: text.to_owned(),
            source: "tokenizer_config.json".to_owned(),
        }
    }

    /// Qwen2.5-Instruct's template (abridged: the tool-call parts are shortened), as it reads
    /// once tokenizer_config.json's JSON string is decoded: `\n` inside literals stays an escape.
    const QWEN25_TEMPLATE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query." }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    /// Qwen2-Instruct's one-line template.
    const QWEN2_TEMPLATE: &str = r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// A Qwen3-like template: ChatML without a default system prompt.
    const QWEN3_LIKE_TEMPLATE: &str = r"{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";

    /// Llama-3-Instruct's template.
    const LLAMA3_TEMPLATE: &str = r"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    #[test]
    fn qwen25_template_is_chatml_with_its_default_system_prompt() {
        let format = detect_format(Some(&template(QWEN25_TEMPLATE)), "Qwen2ForCausalLM").unwrap();
        let expected = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
        assert_eq!(
            format,
            ChatFormat::ChatMl {
                default_system: Some(expected.to_owned())
            }
        );
    }

    #[test]
    fn qwen2_template_default_system_prompt() {
        assert_eq!(
            default_system_prompt(QWEN2_TEMPLATE).as_deref(),
            Some("You are a helpful assistant.")
        );
    }

    #[test]
    fn template_without_default_system_prompt_gives_none() {
        let format =
            detect_format(Some(&template(QWEN3_LIKE_TEMPLATE)), "Qwen3ForCausalLM").unwrap();
        assert_eq!(
            format,
            ChatFormat::ChatMl {
                default_system: None
            }
        );
    }

    #[test]
    fn concatenated_literal_and_escapes_and_raw_text_forms() {
        let joined = r#"{{ '<|im_start|>system\n' + "It\'s \"me\".\tHi" + '<|im_end|>\n' }}"#;
        assert_eq!(
            default_system_prompt(joined).as_deref(),
            Some("It's \"me\".\tHi")
        );
        let joined_with_end = r"{{ '<|im_start|>system\n' + 'Be brief.<|im_end|>\n' }}";
        assert_eq!(
            default_system_prompt(joined_with_end).as_deref(),
            Some("Be brief.")
        );
        let raw = "{% if not system %}<|im_start|>system\nRaw prompt.<|im_end|>\n{% endif %}";
        assert_eq!(default_system_prompt(raw).as_deref(), Some("Raw prompt."));
        let raw_variable = "<|im_start|>system\n{{ system }}<|im_end|>\n";
        assert_eq!(default_system_prompt(raw_variable), None);
        let unterminated = r"{{ '<|im_start|>system\nno end";
        assert_eq!(default_system_prompt(unterminated), None);
    }

    #[test]
    fn llama3_template_is_llama3_whatever_the_architecture() {
        assert_eq!(
            detect_format(Some(&template(LLAMA3_TEMPLATE)), "SomethingElse").unwrap(),
            ChatFormat::Llama3 { dated_system: None }
        );
    }

    #[test]
    fn llama31_and_32_templates_write_a_dated_system_block() {
        let llama31 = concat!(
            r#"{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}"#,
            r#"{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}"#,
            r#"{{- "Cutting Knowledge Date: December 2023\n" }}"#,
            r#"{{- "Today Date: " + date_string + "\n\n" }}"#
        );
        let found = dated_system(llama31).unwrap();
        assert_eq!(
            found,
            DatedSystem {
                knowledge_cutoff: "December 2023".to_owned(),
                today: TodayDate::Fixed("26 Jul 2024".to_owned()),
            }
        );
        assert_eq!(
            found.preamble(),
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        );
        let llama32 = llama31.replace(
            r#"{%- set date_string = "26 Jul 2024" %}"#,
            r#"{%- set date_string = strftime_now("%d %b %Y") %}"#,
        );
        let found = dated_system(&llama32).unwrap();
        assert_eq!(
            found.today,
            TodayDate::Now {
                format: "%d %b %Y".to_owned()
            }
        );
        let today = anneal_crds::jiff::Zoned::now()
            .strftime("%d %b %Y")
            .to_string();
        assert!(
            found
                .preamble()
                .ends_with(&format!("Today Date: {today}\n\n"))
        );
        assert_eq!(dated_system(LLAMA3_TEMPLATE), None);
    }

    #[test]
    fn no_template_falls_back_on_the_architecture() {
        assert_eq!(
            detect_format(None, "Qwen2ForCausalLM").unwrap(),
            ChatFormat::ChatMl {
                default_system: None
            }
        );
        assert_eq!(
            detect_format(None, "LlamaForCausalLM").unwrap(),
            ChatFormat::Llama3 { dated_system: None }
        );
        let error = detect_format(None, "GPT2LMHeadModel")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("GPT2LMHeadModel") && error.contains("without a chat template"),
            "{error}"
        );
    }

    #[test]
    fn unknown_template_is_an_error_naming_architecture_and_file() {
        let mistral =
            "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
        let error = detect_format(Some(&template(mistral)), "LlamaForCausalLM")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("LlamaForCausalLM") && error.contains("tokenizer_config.json"),
            "{error}"
        );
    }
}
