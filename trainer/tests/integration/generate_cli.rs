//! `trainer generate` as a user runs it, against the transformers reference:
//! the greedy continuation of a raw prompt and of a chat rendered with the model's
//! template are the token ids transformers produced.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{ids, last_json, qwen, reference, trainer_generate};
use anneal_model::chat::ModelTokenizer;
use serde_json::Value;

fn generate(args: &[&str]) -> Output {
    trainer_generate(&qwen(), args)
}

#[test]
fn a_raw_prompt_continues_as_in_transformers() {
    let tokenizer = ModelTokenizer::from_model_dir(&qwen(), "Qwen2ForCausalLM").unwrap();
    let case = &reference("qwen2-tiny")["greedy"][0];
    let prompt_ids = ids(&case["input_ids"]);
    let prompt = tokenizer.decode(&prompt_ids, false).unwrap();
    assert_eq!(
        tokenizer.encode(&prompt, false).unwrap(),
        prompt_ids,
        "the prompt text round-trips"
    );

    let result = last_json(&generate(&[
        "--prompt",
        &prompt,
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
    ]));
    assert_eq!(ids(&result["token_ids"]), ids(&case["output_ids"]));
    let text = tokenizer.decode(&ids(&case["output_ids"]), true).unwrap();
    assert_eq!(result["text"], Value::String(text));
}

#[test]
fn ids_past_the_tokenizer_vocabulary_do_not_break_decoding() {
    // The config's vocabulary (512) is larger than the tokenizer's (493), as with real
    // Qwen models; this greedy case produces ids 503 and 511 from those padding rows.
    let tokenizer = ModelTokenizer::from_model_dir(&qwen(), "Qwen2ForCausalLM").unwrap();
    let case = &reference("qwen2-tiny")["greedy"][2];
    assert!(
        ids(&case["output_ids"])
            .iter()
            .any(|&id| id as usize >= tokenizer.vocab_size())
    );
    let prompt = tokenizer.decode(&ids(&case["input_ids"]), false).unwrap();
    let result = last_json(&generate(&["--prompt", &prompt, "--max-new-tokens", "12"]));
    assert_eq!(ids(&result["token_ids"]), ids(&case["output_ids"]));
    let text = result["text"].as_str().unwrap();
    assert!(!text.is_empty() && !text.contains('\u{fffd}'), "{text:?}");
}

#[test]
fn messages_are_formatted_with_the_chat_template() {
    let reference = reference("qwen2-tiny");
    // The chat case with a generation prompt is the prompt of the last greedy case.
    let chat = reference["chat"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["add_generation_prompt"] == Value::Bool(true))
        .unwrap();
    let case = &reference["greedy"][3];
    assert_eq!(chat["input_ids"], case["input_ids"]);
    let dir = tempfile::tempdir().unwrap();
    let messages = dir.path().join("messages.json");
    std::fs::write(&messages, chat["messages"].to_string()).unwrap();

    // transformers' case stops at an ordinary token it was told is the end; take the tokens before it.
    let want: Vec<u32> = ids(&case["output_ids"]).into_iter().take(2).collect();
    let result = last_json(&generate(&[
        "--messages",
        messages.to_str().unwrap(),
        "--max-new-tokens",
        "2",
    ]));
    assert_eq!(ids(&result["token_ids"]), want);
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let tokenizer = ModelTokenizer::from_model_dir(&qwen(), "Qwen2ForCausalLM").unwrap();
    let case = &reference("qwen2-tiny")["greedy"][0];
    let prompt = tokenizer.decode(&ids(&case["input_ids"]), false).unwrap();
    let full = tokenizer.decode(&ids(&case["output_ids"]), true).unwrap();
    // Stop at the text of the fourth new token: generation ends with that token, the text before it.
    let upto = tokenizer
        .decode(&ids(&case["output_ids"])[..3], true)
        .unwrap();
    let stop = tokenizer
        .decode(&ids(&case["output_ids"])[3..4], true)
        .unwrap();
    assert!(
        full.starts_with(&format!("{upto}{stop}")) && !upto.contains(&stop),
        "{full:?}"
    );
    let result = last_json(&generate(&[
        "--prompt",
        &prompt,
        "--max-new-tokens",
        "12",
        "--stop",
        &stop,
    ]));
    assert_eq!(
        ids(&result["token_ids"]),
        ids(&case["output_ids"])[..4].to_vec()
    );
    assert_eq!(result["text"], Value::String(upto));
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let output = generate(&["--prompt", "hi", "--top-p", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "trainer generate: --top-p must be in (0, 1], got 0\n"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "generate",
            "--model",
            "/nonexistent",
            "--prompt",
            "hi",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .starts_with("trainer generate: /nonexistent/config.json: "),
    );
}

/// The bundled quick-start model answers as transformers does: this greedy answer is
/// the one examples/models/anneal-tiny/README.md records from transformers' generate.
#[test]
fn the_bundled_tiny_model_answers_as_transformers_did() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny");
    let dir = tempfile::tempdir().unwrap();
    let messages = dir.path().join("messages.json");
    std::fs::write(
        &messages,
        r#"[{"role": "user", "content": "Can I take a bike on the tram?"}]"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "generate",
            "--device",
            "cpu",
            "--max-new-tokens",
            "40",
            "--messages",
        ])
        .arg(&messages)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "It depends on the city and the line. Many trains allow bikes outside rush hour, sometimes with a separate ticket, so check the rules of your transport company before you travel.\n"
    );
}
