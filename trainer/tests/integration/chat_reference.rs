//! Checks `anneal_model::chat` against what Hugging Face transformers gives for the same model
//! folders: tokenizer.json encodings and `apply_chat_template` ids and text, recorded in
//! tests/fixtures/reference/{qwen2-tiny,llama3-tiny}/reference.json.

use std::path::{Path, PathBuf};

use anneal_crds::dataset::{ChatMessage, Role};
use anneal_model::chat::{ChatFormat, ModelTokenizer};
use serde::Deserialize;

/// The parts of reference.json these tests read; the rest is for the model tests.
#[derive(Debug, Deserialize)]
struct Reference {
    tokenizer_size: usize,
    encode: Vec<EncodeCase>,
    chat: Vec<ChatCase>,
}

#[derive(Debug, Deserialize)]
struct EncodeCase {
    text: String,
    ids: Vec<u32>,
    add_special_tokens: bool,
    decoded: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatCase {
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    input_ids: Vec<u32>,
    text: String,
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(name)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} does not parse: {e}", path.display()))
}

/// The tokenizer of a fixture folder, loaded with config.json's architecture as the trainer does,
/// and the folder's reference outputs.
fn load(name: &str) -> (ModelTokenizer, Reference) {
    let dir = model_dir(name);
    #[derive(Deserialize)]
    struct Config {
        architectures: Vec<String>,
    }
    let config: Config = read_json(&dir.join("config.json"));
    let tokenizer = ModelTokenizer::from_model_dir(&dir, &config.architectures[0])
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (tokenizer, read_json(&dir.join("reference.json")))
}

fn token_id(tokenizer: &ModelTokenizer, token: &str) -> u32 {
    let ids = tokenizer.encode(token, false).unwrap();
    assert_eq!(ids.len(), 1, "{token} is not one token");
    ids[0]
}

fn check_encode(name: &str) {
    let (tokenizer, reference) = load(name);
    assert!(!reference.encode.is_empty());
    for case in &reference.encode {
        let ids = tokenizer
            .encode(&case.text, case.add_special_tokens)
            .unwrap();
        assert_eq!(
            ids, case.ids,
            "{name}: encode({:?}, add_special_tokens={})",
            case.text, case.add_special_tokens
        );
        if let Some(decoded) = &case.decoded {
            assert_eq!(
                &tokenizer.decode(&ids, false).unwrap(),
                decoded,
                "{name}: decode of {:?}",
                case.text
            );
        }
    }
}

/// Our chat ids must equal transformers' `apply_chat_template` ids, except that where those
/// start with a doubled BOS (some tokenizers and transformers versions add the template's BOS
/// and the post-processor's), ours has it once.
fn check_chat_ids(name: &str, bos: Option<&str>) {
    let (tokenizer, reference) = load(name);
    assert!(!reference.chat.is_empty());
    let bos = bos.map(|token| token_id(&tokenizer, token));
    for case in &reference.chat {
        let ours = tokenizer
            .encode_chat(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(ours.ids.len(), ours.assistant_mask.len());
        let mut expected = case.input_ids.clone();
        if let Some(bos) = bos {
            if expected.starts_with(&[bos, bos]) {
                expected.remove(0);
            }
            assert_eq!(
                ours.ids.iter().filter(|id| **id == bos).count(),
                1,
                "{name}: one BOS in {:?}",
                case.text
            );
            assert_eq!(ours.ids.first(), Some(&bos), "{name}: the BOS comes first");
        }
        assert_eq!(ours.ids, expected, "{name}: chat ids of {:?}", case.text);
    }
}

fn check_chat_text(name: &str) {
    let (tokenizer, reference) = load(name);
    for case in &reference.chat {
        assert_eq!(
            tokenizer.render_chat(&case.messages, case.add_generation_prompt),
            case.text,
            "{name}"
        );
    }
}

/// The trained tokens are exactly each assistant reply (trimmed where the template trims)
/// followed by its end-of-turn token; everything else is untrained.
fn check_chat_mask(name: &str, end_of_turn: &str, trims: bool) {
    let (tokenizer, reference) = load(name);
    for case in &reference.chat {
        let ours = tokenizer
            .encode_chat(&case.messages, case.add_generation_prompt)
            .unwrap();
        let trained: Vec<u32> = ours
            .ids
            .iter()
            .zip(&ours.assistant_mask)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect();
        let expected: String = case
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| {
                format!(
                    "{}{end_of_turn}",
                    if trims { m.content.trim() } else { &m.content }
                )
            })
            .collect();
        assert_eq!(
            tokenizer.decode(&trained, false).unwrap(),
            expected,
            "{name}: trained part of {:?}",
            case.text
        );
        // Piecewise: each assistant reply's tokens are its content encoded alone, then the end token.
        let eot = token_id(&tokenizer, end_of_turn);
        let mut expected_trained = Vec::new();
        for message in case.messages.iter().filter(|m| m.role == Role::Assistant) {
            let content = if trims {
                message.content.trim()
            } else {
                &message.content
            };
            expected_trained.extend(tokenizer.encode(content, false).unwrap());
            expected_trained.push(eot);
        }
        assert_eq!(trained, expected_trained, "{name}");
        if case.add_generation_prompt {
            assert!(
                !ours.assistant_mask.last().copied().unwrap_or(true),
                "{name}: generation prompt is untrained"
            );
        }
    }
}

#[test]
fn qwen2_encode_matches_transformers() {
    check_encode("qwen2-tiny");
}

#[test]
fn llama3_encode_matches_transformers() {
    check_encode("llama3-tiny");
}

#[test]
fn qwen2_chat_ids_match_transformers() {
    check_chat_ids("qwen2-tiny", None);
}

#[test]
fn llama3_chat_ids_match_transformers_with_a_single_bos() {
    check_chat_ids("llama3-tiny", Some("<|begin_of_text|>"));
}

#[test]
fn qwen2_chat_text_matches_transformers() {
    check_chat_text("qwen2-tiny");
}

#[test]
fn llama3_chat_text_matches_transformers() {
    check_chat_text("llama3-tiny");
}

#[test]
fn qwen2_chat_mask_is_assistant_content_and_im_end() {
    check_chat_mask("qwen2-tiny", "<|im_end|>", false);
}

#[test]
fn llama3_chat_mask_is_assistant_content_and_eot() {
    check_chat_mask("llama3-tiny", "<|eot_id|>", true);
}

/// Tokenizing the rendered Llama 3 text with special tokens (what `tokenizer(text)` does after
/// `apply_chat_template(tokenize=False)`) gives the double BOS that `encode_chat` avoids.
#[test]
fn llama3_rendered_text_with_special_tokens_would_double_the_bos() {
    let (tokenizer, reference) = load("llama3-tiny");
    let bos = token_id(&tokenizer, "<|begin_of_text|>");
    for case in &reference.chat {
        let ours = tokenizer
            .encode_chat(&case.messages, case.add_generation_prompt)
            .unwrap();
        let doubled = tokenizer.encode(&case.text, true).unwrap();
        assert_eq!(doubled[..2], [bos, bos]);
        assert_eq!(doubled[1..], ours.ids[..]);
    }
}

#[test]
fn qwen2_folder_format_eos_and_vocab() {
    let (tokenizer, reference) = load("qwen2-tiny");
    // The fixture's template inserts "You are a helpful assistant." when there is no system turn.
    let default_system = Some("You are a helpful assistant.".to_owned());
    assert_eq!(
        tokenizer.chat_format(),
        ChatFormat::ChatMl { default_system }
    );
    // <|im_end|> then generation_config.json's [<|im_end|>, <|endoftext|>], deduplicated.
    let expected = [
        token_id(&tokenizer, "<|im_end|>"),
        token_id(&tokenizer, "<|endoftext|>"),
    ];
    assert_eq!(tokenizer.eos_token_ids(), expected);
    assert_eq!(tokenizer.vocab_size(), reference.tokenizer_size);
}

#[test]
fn llama3_folder_format_eos_and_vocab() {
    let (tokenizer, reference) = load("llama3-tiny");
    assert_eq!(
        tokenizer.chat_format(),
        ChatFormat::Llama3 { dated_system: None }
    );
    // <|eot_id|> then generation_config.json's [<|end_of_text|>, <|eot_id|>], deduplicated.
    let expected = [
        token_id(&tokenizer, "<|eot_id|>"),
        token_id(&tokenizer, "<|end_of_text|>"),
    ];
    assert_eq!(tokenizer.eos_token_ids(), expected);
    assert_eq!(tokenizer.vocab_size(), reference.tokenizer_size);
}

/// The chat template meta-llama/Llama-3.1-8B-Instruct ships (on llama3-tiny's tokenizer),
/// with transformers' `apply_chat_template` text and ids for it: the system block with
/// "Cutting Knowledge Date" and "Today Date" comes first in every conversation, so training,
/// `trainer generate` and serving give the model what transformers and vLLM give it.
#[test]
fn the_llama31_template_renders_its_dated_system_block_as_transformers_does() {
    let dir = model_dir("llama31-template");
    let tokenizer = ModelTokenizer::from_model_dir(&dir, "LlamaForCausalLM").unwrap();
    let ChatFormat::Llama3 {
        dated_system: Some(dated),
    } = tokenizer.chat_format()
    else {
        panic!("not a dated Llama-3 format: {:?}", tokenizer.chat_format());
    };
    assert_eq!(dated.knowledge_cutoff, "December 2023");
    #[derive(Deserialize)]
    struct Llama31Reference {
        chat: Vec<ChatCase>,
    }
    let reference: Llama31Reference = read_json(&dir.join("reference.json"));
    assert_eq!(reference.chat.len(), 4);
    let eot = token_id(&tokenizer, "<|eot_id|>");
    for case in &reference.chat {
        assert_eq!(
            tokenizer.render_chat(&case.messages, case.add_generation_prompt),
            case.text
        );
        let ours = tokenizer
            .encode_chat(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(ours.ids, case.input_ids, "chat ids of {:?}", case.text);
        // The dated block is never trained; each reply and its <|eot_id|> is.
        let trained: Vec<u32> = ours
            .ids
            .iter()
            .zip(&ours.assistant_mask)
            .filter_map(|(id, trained)| trained.then_some(*id))
            .collect();
        let replies = case
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count();
        assert_eq!(trained.iter().filter(|id| **id == eot).count(), replies);
    }
}
