//! Unit tests of the chat module on tiny byte-level BPE tokenizers built in code and written to
//! a temporary model folder, so every test goes through `ModelTokenizer::from_model_dir`.

use std::path::Path;

use anneal_crds::dataset::{ChatMessage, Role};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::*;

const CHATML_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const LLAMA3_SPECIALS: [&str; 5] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

/// Qwen2's and Llama 3's pre-tokenizer split (they differ only in `\p{N}` vs `\p{N}{1,3}`);
/// unlike GPT-2's, it keeps a run of newlines before a word in one piece.
const SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE over the 256 byte symbols with a few merges (so that `\n\n` and `hi` are one
/// token, as in real vocabularies) and the real models' pre-tokenizer, plus `specials` as added
/// special tokens.
/// With `bos`, a post-processor prepends that token, as Llama 3's tokenizer.json does.
fn tiny_tokenizer(specials: &[&str], bos: Option<&str>) -> Tokenizer {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut vocab: Vec<(String, u32)> = alphabet.iter().map(|c| c.to_string()).zip(0..).collect();
    let merges = vec![
        ("Ċ".to_owned(), "Ċ".to_owned()),
        ("h".to_owned(), "i".to_owned()),
    ];
    for (a, b) in &merges {
        let id = u32::try_from(vocab.len()).unwrap();
        vocab.push((format!("{a}{b}"), id));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(SPLIT_REGEX.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .unwrap();
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .add_special_tokens(specials.iter().map(|s| AddedToken::from(*s, true)))
        .unwrap();
    if let Some(bos) = bos {
        let id = tokenizer.token_to_id(bos).unwrap();
        let processor = TemplateProcessing::builder()
            .try_single(format!("{bos} $A"))
            .unwrap()
            .try_pair(format!("{bos} $A {bos} $B"))
            .unwrap()
            .special_tokens(vec![(bos, id)])
            .build()
            .unwrap();
        tokenizer.with_post_processor(Some(processor));
    }
    tokenizer
}

/// A model folder holding `tokenizer` and the given extra files.
fn model_dir(tokenizer: &Tokenizer, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tokenizer
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn chatml(files: &[(&str, &str)]) -> (tempfile::TempDir, ModelTokenizer) {
    let dir = model_dir(&tiny_tokenizer(&CHATML_SPECIALS, None), files);
    let tokenizer = ModelTokenizer::from_model_dir(dir.path(), "Qwen2ForCausalLM").unwrap();
    (dir, tokenizer)
}

fn llama3(files: &[(&str, &str)]) -> (tempfile::TempDir, ModelTokenizer) {
    let dir = model_dir(
        &tiny_tokenizer(&LLAMA3_SPECIALS, Some("<|begin_of_text|>")),
        files,
    );
    let tokenizer = ModelTokenizer::from_model_dir(dir.path(), "LlamaForCausalLM").unwrap();
    (dir, tokenizer)
}

fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.to_owned(),
    }
}

/// Decodes the trained tokens and the untrained ones separately, special tokens kept.
fn split_by_mask(tokenizer: &ModelTokenizer, chat: &EncodedChat) -> (String, String) {
    assert_eq!(chat.ids.len(), chat.assistant_mask.len());
    let pick = |trained: bool| -> Vec<u32> {
        chat.ids
            .iter()
            .zip(&chat.assistant_mask)
            .filter(|(_, m)| **m == trained)
            .map(|(id, _)| *id)
            .collect()
    };
    (
        tokenizer.decode(&pick(true), false).unwrap(),
        tokenizer.decode(&pick(false), false).unwrap(),
    )
}

/// A ChatML template with Qwen2.5's default-system pattern, as a tokenizer_config.json.
fn qwen_style_config(default_system: &str) -> String {
    let template = format!(
        "{{%- if messages[0]['role'] == 'system' %}}{{{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}}}\
         {{%- else %}}{{{{- '<|im_start|>system\\n{default_system}<|im_end|>\\n' }}}}{{%- endif %}}\
         {{%- for message in messages %}}{{{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}}}{{%- endfor %}}\
         {{%- if add_generation_prompt %}}{{{{- '<|im_start|>assistant\\n' }}}}{{%- endif %}}"
    );
    serde_json::json!({ "chat_template": template, "eos_token": "<|im_end|>" }).to_string()
}

#[test]
fn chatml_mask_covers_assistant_content_and_im_end_only() {
    let (_dir, tokenizer) = chatml(&[]);
    let messages = [
        msg(Role::System, "Be kind."),
        msg(Role::User, "hi"),
        msg(Role::Assistant, "hello there"),
        msg(Role::User, "again"),
        msg(Role::Assistant, "hi!"),
    ];
    let chat = tokenizer.encode_chat(&messages, false).unwrap();
    let (trained, untrained) = split_by_mask(&tokenizer, &chat);
    assert_eq!(trained, "hello there<|im_end|>hi!<|im_end|>");
    assert_eq!(
        untrained,
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\n\
         <|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n\n"
    );
    // Exact positions of the last turn: header untrained, content and <|im_end|> trained, "\n" not.
    let im_end = tokenizer.encode("<|im_end|>", false).unwrap()[0];
    let tail = tokenizer.encode("assistant\nhi!", false).unwrap();
    let n = chat.ids.len();
    assert_eq!(chat.ids[n - 2], im_end);
    assert_eq!(&chat.assistant_mask[n - 2..], &[true, false]);
    let header_len = tokenizer.encode("assistant\n", false).unwrap().len();
    let content_start = n - 2 - (tail.len() - header_len);
    assert!(chat.assistant_mask[content_start..n - 1].iter().all(|m| *m));
    assert!(!chat.assistant_mask[content_start - 1]);
}

#[test]
fn chatml_ids_equal_encoding_the_rendered_text() {
    let (_dir, tokenizer) =
        chatml(&[("tokenizer_config.json", &qwen_style_config("You are tiny."))]);
    let training = [
        msg(Role::User, "hi\n\nthere"),
        msg(Role::Assistant, "hi hi"),
    ];
    for (messages, add_generation_prompt) in [(&training[..], false), (&training[..1], true)] {
        let chat = tokenizer
            .encode_chat(messages, add_generation_prompt)
            .unwrap();
        let text = tokenizer.render_chat(messages, add_generation_prompt);
        assert_eq!(chat.ids, tokenizer.encode(&text, true).unwrap(), "{text:?}");
    }
}

#[test]
fn chatml_default_system_prompt_is_inserted_only_without_a_system_message() {
    let (_dir, tokenizer) =
        chatml(&[("tokenizer_config.json", &qwen_style_config("You are tiny."))]);
    assert_eq!(
        tokenizer.chat_format(),
        ChatFormat::ChatMl {
            default_system: Some("You are tiny.".to_owned())
        }
    );
    let without = [msg(Role::User, "q"), msg(Role::Assistant, "a")];
    assert_eq!(
        tokenizer.render_chat(&without, false),
        "<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    );
    let with = [
        msg(Role::System, "Own."),
        msg(Role::User, "q"),
        msg(Role::Assistant, "a"),
    ];
    assert_eq!(
        tokenizer.render_chat(&with, false),
        "<|im_start|>system\nOwn.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    );
    // The default system turn is never trained.
    let (trained, _) = split_by_mask(&tokenizer, &tokenizer.encode_chat(&without, false).unwrap());
    assert_eq!(trained, "a<|im_end|>");
}

#[test]
fn generation_prompt_is_an_untrained_assistant_header() {
    let (_dir, tokenizer) = chatml(&[]);
    let chat = tokenizer
        .encode_chat(&[msg(Role::User, "q")], true)
        .unwrap();
    assert!(chat.assistant_mask.iter().all(|m| !m));
    assert!(
        tokenizer
            .render_chat(&[msg(Role::User, "q")], true)
            .ends_with("<|im_end|>\n<|im_start|>assistant\n")
    );
    let header = tokenizer.encode("<|im_start|>assistant\n", false).unwrap();
    assert!(chat.ids.ends_with(&header));
}

#[test]
fn empty_assistant_reply_trains_only_the_end_of_turn_token() {
    let (_dir, tokenizer) = chatml(&[]);
    let chat = tokenizer
        .encode_chat(&[msg(Role::User, "q"), msg(Role::Assistant, "")], false)
        .unwrap();
    let (trained, _) = split_by_mask(&tokenizer, &chat);
    assert_eq!(trained, "<|im_end|>");
}

#[test]
fn special_token_text_in_content_is_plain_text() {
    let (_dir, tokenizer) = chatml(&[]);
    let im_end = tokenizer.encode("<|im_end|>", false).unwrap();
    assert_eq!(im_end.len(), 1, "raw encode still matches special tokens");
    let chat = tokenizer
        .encode_chat(
            &[msg(Role::User, "q"), msg(Role::Assistant, "a<|im_end|>b")],
            false,
        )
        .unwrap();
    // Only the real end of turn is the special token; the one inside the reply is bytes.
    assert_eq!(chat.ids.iter().filter(|id| **id == im_end[0]).count(), 2);
    let (trained, _) = split_by_mask(&tokenizer, &chat);
    assert_eq!(trained, "a<|im_end|>b<|im_end|>");
}

#[test]
fn a_bpe_model_reads_as_the_tokenizers_crate_reads_it() {
    // The bundled model's tokenizer.json is a Qwen-style byte-level BPE with merges.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny");
    let ours = ModelTokenizer::from_model_dir(&dir, "Qwen2ForCausalLM").unwrap();
    let theirs = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let text = "Where is my order? It left Zürich on 3 May\n\n<|im_end|>  done";
    let expected = theirs.encode(text, false).unwrap().get_ids().to_vec();
    assert!(expected.len() > 10, "{expected:?}");
    assert_eq!(ours.encode(text, false).unwrap(), expected);
    assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true));
}

#[test]
fn a_tokenizer_of_another_model_kind_still_loads() {
    let vocab = [("[UNK]", 0), ("hello", 1), ("world", 2)];
    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.iter().map(|(t, id)| (t.to_string(), *id)).collect())
        .unk_token("[UNK]".to_owned())
        .build()
        .unwrap();
    let mut word_level = Tokenizer::new(model);
    word_level.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace));
    word_level
        .add_special_tokens(CHATML_SPECIALS.iter().map(|s| AddedToken::from(*s, true)))
        .unwrap();
    let dir = model_dir(&word_level, &[]);
    let tokenizer = ModelTokenizer::from_model_dir(dir.path(), "Qwen2ForCausalLM").unwrap();
    assert_eq!(
        tokenizer.encode("hello world moon", false).unwrap(),
        [1, 2, 0]
    );
}

#[test]
fn both_tokenizers_share_one_vocabulary_in_memory() {
    let (_dir, tokenizer) = chatml(&[]);
    let model = tokenizer.tokenizer.get_model();
    assert!(model.is_shared_with(tokenizer.content_tokenizer.get_model()));
    // A clone of the whole (the operator keeps one per model source) shares it too.
    assert!(model.is_shared_with(tokenizer.clone().tokenizer.get_model()));
}

#[test]
fn llama3_has_exactly_one_bos_and_trims_content() {
    let (_dir, tokenizer) = llama3(&[]);
    assert_eq!(
        tokenizer.chat_format(),
        ChatFormat::Llama3 { dated_system: None }
    );
    let bos = tokenizer.encode("<|begin_of_text|>", false).unwrap()[0];
    // The post-processor adds a BOS to raw text...
    assert_eq!(tokenizer.encode("hi", true).unwrap()[0], bos);
    let messages = [
        msg(Role::System, " sys "),
        msg(Role::User, "\nq\n"),
        msg(Role::Assistant, "  a b  "),
    ];
    let text = tokenizer.render_chat(&messages, false);
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\na b<|eot_id|>"
    );
    // ...but a chat gets exactly one, where tokenizing the rendered text with special tokens
    // would give two.
    let chat = tokenizer.encode_chat(&messages, false).unwrap();
    assert_eq!(chat.ids.iter().filter(|id| **id == bos).count(), 1);
    assert_eq!(chat.ids[0], bos);
    let with_post_processor = tokenizer.encode(&text, true).unwrap();
    assert_eq!(&with_post_processor[..2], &[bos, bos]);
    assert_eq!(chat.ids, tokenizer.encode(&text, false).unwrap());
    let (trained, _) = split_by_mask(&tokenizer, &chat);
    assert_eq!(trained, "a b<|eot_id|>");
}

#[test]
fn llama3_generation_prompt() {
    let (_dir, tokenizer) = llama3(&[]);
    let messages = [msg(Role::User, "q")];
    assert!(
        tokenizer
            .render_chat(&messages, true)
            .ends_with("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    );
    assert!(
        tokenizer
            .encode_chat(&messages, true)
            .unwrap()
            .assistant_mask
            .iter()
            .all(|m| !m)
    );
}

#[test]
fn eos_ids_are_end_of_turn_then_generation_config_deduplicated() {
    let id = |t: &ModelTokenizer, s: &str| t.encode(s, false).unwrap()[0];
    let (_dir, tokenizer) = chatml(&[]);
    let (endoftext, im_end) = (
        id(&tokenizer, "<|endoftext|>"),
        id(&tokenizer, "<|im_end|>"),
    );
    let (_dir, tokenizer) = chatml(&[(
        "generation_config.json",
        &format!(r#"{{"eos_token_id": [{im_end}, {endoftext}]}}"#),
    )]);
    assert_eq!(tokenizer.eos_token_ids(), &[im_end, endoftext]);
    let (_dir, tokenizer) = chatml(&[(
        "generation_config.json",
        &format!(r#"{{"eos_token_id": {endoftext}}}"#),
    )]);
    assert_eq!(tokenizer.eos_token_ids(), &[im_end, endoftext]);
    // Without generation_config.json, tokenizer_config.json's eos_token joins the end-of-turn token.
    let config = r#"{"eos_token": {"content": "<|endoftext|>", "special": true}}"#;
    let (_dir, tokenizer) = chatml(&[("tokenizer_config.json", config)]);
    assert_eq!(tokenizer.eos_token_ids(), &[im_end, endoftext]);
    let (_dir, tokenizer) = chatml(&[]);
    assert_eq!(tokenizer.eos_token_ids(), &[im_end]);
    let (_dir, tokenizer) = llama3(&[("generation_config.json", r#"{"eos_token_id": null}"#)]);
    assert_eq!(tokenizer.eos_token_ids(), &[id(&tokenizer, "<|eot_id|>")]);
}

#[test]
fn template_sources_in_order_of_precedence() {
    let tokenizer = tiny_tokenizer(
        &[CHATML_SPECIALS.as_slice(), LLAMA3_SPECIALS.as_slice()].concat(),
        None,
    );
    let llama_template = "{{ '<|start_header_id|>' + m + '<|end_header_id|>\\n\\n' }}";
    // chat_template.jinja (transformers 5.x) wins over tokenizer_config.json.
    let dir = model_dir(
        &tokenizer,
        &[
            ("chat_template.jinja", llama_template),
            ("tokenizer_config.json", &qwen_style_config("x")),
        ],
    );
    assert_eq!(
        ModelTokenizer::from_model_dir(dir.path(), "Qwen2ForCausalLM")
            .unwrap()
            .chat_format(),
        ChatFormat::Llama3 { dated_system: None }
    );
    // A list of named templates: the one named "default".
    let listed = serde_json::json!({ "chat_template": [
        { "name": "tool_use", "template": llama_template },
        { "name": "default", "template": "{{ '<|im_start|>' }}" },
    ]})
    .to_string();
    let dir = model_dir(&tokenizer, &[("tokenizer_config.json", &listed)]);
    let found = ModelTokenizer::from_model_dir(dir.path(), "LlamaForCausalLM")
        .unwrap()
        .chat_format();
    assert_eq!(
        found,
        ChatFormat::ChatMl {
            default_system: None
        }
    );
}

fn load_error(tokenizer: &Tokenizer, files: &[(&str, &str)], architecture: &str) -> String {
    let dir = model_dir(tokenizer, files);
    ModelTokenizer::from_model_dir(dir.path(), architecture)
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_folders_give_errors_naming_file_and_problem() {
    let tokenizer = tiny_tokenizer(&CHATML_SPECIALS, None);
    let error = load_error(
        &tokenizer,
        &[("generation_config.json", r#"{"eos_token_id": "two"}"#)],
        "Qwen2ForCausalLM",
    );
    assert!(
        error.contains("generation_config.json") && error.contains("eos_token_id"),
        "{error}"
    );
    let error = load_error(
        &tokenizer,
        &[("generation_config.json", r#"{"eos_token_id": [-1]}"#)],
        "Qwen2ForCausalLM",
    );
    assert!(
        error.contains("generation_config.json") && error.contains("-1"),
        "{error}"
    );
    let error = load_error(
        &tokenizer,
        &[("tokenizer_config.json", "{not json")],
        "Qwen2ForCausalLM",
    );
    assert!(
        error.contains("tokenizer_config.json") && error.contains("not valid JSON"),
        "{error}"
    );
    let no_default = r#"{"chat_template": [{"name": "rag", "template": "<|im_start|>"}]}"#;
    let error = load_error(
        &tokenizer,
        &[("tokenizer_config.json", no_default)],
        "Qwen2ForCausalLM",
    );
    assert!(
        error.contains("tokenizer_config.json") && error.contains("default"),
        "{error}"
    );
    let error = load_error(
        &tokenizer,
        &[("tokenizer_config.json", r#"{"chat_template": 3}"#)],
        "Qwen2ForCausalLM",
    );
    assert!(error.contains("chat_template"), "{error}");
    // A ChatML tokenizer under a Llama-3 template: the tokenizer lacks the header tokens.
    let error = load_error(
        &tokenizer,
        &[("chat_template.jinja", "<|start_header_id|>")],
        "LlamaForCausalLM",
    );
    assert!(
        error.contains("tokenizer.json")
            && error.contains("<|begin_of_text|>")
            && error.contains("Llama-3"),
        "{error}"
    );
    let error = load_error(
        &tokenizer,
        &[("chat_template.jinja", "{{ messages }}")],
        "MistralForCausalLM",
    );
    assert!(
        error.contains("MistralForCausalLM") && error.contains("chat_template.jinja"),
        "{error}"
    );
}

#[test]
fn missing_or_broken_tokenizer_json_is_an_error() {
    let empty = tempfile::tempdir().unwrap();
    let error = ModelTokenizer::from_model_dir(empty.path(), "Qwen2ForCausalLM")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            &Path::new(empty.path())
                .join("tokenizer.json")
                .display()
                .to_string()
        ),
        "{error}"
    );
    std::fs::write(empty.path().join("tokenizer.json"), "{}").unwrap();
    let error = ModelTokenizer::from_model_dir(empty.path(), "Qwen2ForCausalLM")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tokenizer.json") && error.contains("`tokenizers` library"),
        "{error}"
    );
}

#[test]
fn vocab_size_counts_added_tokens() {
    let (_dir, tokenizer) = chatml(&[]);
    assert_eq!(tokenizer.vocab_size(), 256 + 2 + CHATML_SPECIALS.len());
}

#[test]
fn decode_skips_special_tokens_on_request() {
    let (_dir, tokenizer) = chatml(&[]);
    let ids = tokenizer.encode("hi<|im_end|>", false).unwrap();
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), "hi<|im_end|>");
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "hi");
}

/// Training and inference see the same prompt tokens: a conversation's ids up to its last reply
/// are exactly what the generation prompt gives for the conversation before it.
#[test]
fn reply_follows_the_generation_prompt_tokens() {
    for (_dir, tokenizer) in [chatml(&[]), llama3(&[])] {
        let messages = [
            msg(Role::User, "q"),
            msg(Role::Assistant, "hi"),
            msg(Role::User, "hi again"),
        ];
        let reply = msg(Role::Assistant, "\nhi");
        let prompt = tokenizer.encode_chat(&messages, true).unwrap();
        let full = tokenizer
            .encode_chat(&[messages.as_slice(), &[reply]].concat(), false)
            .unwrap();
        assert!(full.ids.starts_with(&prompt.ids));
        assert_eq!(
            full.assistant_mask[..prompt.ids.len()],
            prompt.assistant_mask[..]
        );
    }
}

/// The one place piecewise encoding departs from encoding the rendered text: a ChatML reply that
/// starts with a newline. Whole-text encoding would merge the header's `\n` with it (`\n\n`),
/// a token the model never sees after the generation prompt; we keep the header's `\n` apart.
#[test]
fn chatml_reply_starting_with_a_newline_keeps_the_header_newline_apart() {
    let (_dir, tokenizer) = chatml(&[]);
    let messages = [msg(Role::User, "q"), msg(Role::Assistant, "\nhi")];
    let chat = tokenizer.encode_chat(&messages, false).unwrap();
    let whole = tokenizer
        .encode(&tokenizer.render_chat(&messages, false), false)
        .unwrap();
    assert_ne!(chat.ids, whole);
    assert_eq!(
        tokenizer.decode(&chat.ids, false).unwrap(),
        tokenizer.decode(&whole, false).unwrap()
    );
    let (trained, _) = split_by_mask(&tokenizer, &chat);
    assert_eq!(trained, "\nhi<|im_end|>");
}

#[test]
fn ids_outside_the_models_vocabulary_are_refused_by_name() {
    let (_dir, tokenizer) = chatml(&[]);
    let largest = tokenizer
        .tokenizer
        .get_vocab(true)
        .into_values()
        .max()
        .unwrap();
    let vocab = largest as usize + 1;
    tokenizer.check_vocabulary(vocab).unwrap();
    let error = tokenizer
        .check_vocabulary(vocab - 1)
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(&format!(
            "is token id {largest}, outside the model's vocabulary of {} ids (config.json vocab_size)",
            vocab - 1
        )),
        "{error}"
    );
    let (_dir, tokenizer) = chatml(&[("generation_config.json", r#"{"eos_token_id": 99999}"#)]);
    assert_eq!(
        tokenizer.check_vocabulary(vocab).unwrap_err().to_string(),
        format!(
            "an end-of-sequence id (generation_config.json eos_token_id) is token id 99999, outside the model's vocabulary of {vocab} ids (config.json vocab_size)"
        )
    );
}
