//! The text encoders and T5's position buckets, against transformers.

use anneal_image::text::clip::load_clip_text;
use anneal_image::text::t5::{load_t5_encoder, relative_bucket};
use anneal_image::text::tokenize::PromptTokenizer;
use burn::tensor::DType;

use super::fixtures::*;

#[test]
fn clip_text_states_and_pooled_output_match_transformers() {
    let r = reference();
    let (_, clip) = load_clip_text::<B>(
        &fixtures().join("text_encoder"),
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    let out = clip.forward(&ids(&r, "clip.ids"));
    let hidden = relative_error(&values(out.last_hidden), &r["clip.last_hidden"].0);
    let pooled = relative_error(&values(out.pooled), &r["clip.pooled"].0);
    eprintln!("clip: last hidden {hidden:e}, pooled {pooled:e}");
    assert!(hidden < 1e-5 && pooled < 1e-5);
}

#[test]
fn t5_encoder_states_match_transformers() {
    let r = reference();
    let (config, t5) = load_t5_encoder::<B>(
        &fixtures().join("text_encoder_2"),
        &Default::default(),
        DType::F32,
    )
    .unwrap();
    // 30 tokens reach past the buckets' max distance of 20.
    assert_eq!(config.relative_attention_max_distance, 20);
    let states = t5.forward(&ids(&r, "t5.ids"));
    assert_eq!(states.dims(), [4, 30, 24]);
    let error = relative_error(&values(states), &r["t5.last_hidden"].0);
    eprintln!("t5: last hidden {error:e}");
    assert!(error < 1e-5);
}

#[test]
fn t5_buckets_are_transformers_buckets() {
    // transformers' T5Attention._relative_position_bucket(bidirectional, 32, 128) for
    // relative positions -200, -128, -20, -8, -7, 0, 1, 7, 8, 20, 127, 128, 500.
    let relative = [-200i64, -128, -20, -8, -7, 0, 1, 7, 8, 20, 127, 128, 500];
    let expected = [15usize, 15, 10, 8, 7, 0, 17, 23, 24, 26, 31, 31, 31];
    let ours: Vec<usize> = relative
        .iter()
        .map(|&r| relative_bucket(r, 32, 128))
        .collect();
    assert_eq!(ours, expected);
}

/// The prompts and the ids transformers' tokenizers gave them, from `reference.json`.
fn tokens() -> (Vec<String>, Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
            .unwrap();
    let t = &json["tokens"];
    let rows = |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(t[key].clone()).unwrap() };
    let prompts = serde_json::from_value(t["prompts"].clone()).unwrap();
    (prompts, rows("clip_ids"), rows("t5_ids"))
}

#[test]
fn prompts_tokenize_as_transformers_tokenizes_them() {
    let (prompts, clip_ids, t5_ids) = tokens();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    // CLIP from vocab.json and merges.txt (FLUX.1-dev ships no tokenizer.json for it),
    // 16 ids as its tokenizer_config.json says.
    assert!(!fixtures().join("tokenizer/tokenizer.json").exists());
    let clip = PromptTokenizer::load_clip(&fixtures().join("tokenizer")).unwrap();
    assert_eq!(clip.max_length, 16);
    assert_eq!(clip.encode(&prompts).unwrap(), clip_ids);
    let t5 = PromptTokenizer::load_t5(&fixtures().join("tokenizer_2"), 30).unwrap();
    assert_eq!(t5.encode(&prompts).unwrap(), t5_ids);
    // The long prompt was cut to end on the end token, not padded.
    assert_eq!(*clip_ids[3].last().unwrap(), *clip_ids[0].last().unwrap());
    assert_eq!(t5_ids[3][29], 1);
}

#[test]
fn a_tokenizer_folder_without_files_says_what_it_needs() {
    let empty = tempfile::tempdir().unwrap();
    let error = PromptTokenizer::load_clip(empty.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("vocab.json") && error.contains("tokenizer.json"),
        "{error}"
    );
}
