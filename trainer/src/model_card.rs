//! The model card (`README.md`) a published checkpoint carries: the base model, the
//! datasets and their sizes, the hyperparameters, the validation losses and the sample
//! answers, all read from the checkpoint folder (`trainer_state.json`, `samples.json`),
//! with Hugging Face's metadata block on top. Nothing in it depends on when or where it
//! is written, so publishing the same checkpoint twice writes the same card.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

/// What the card says about the files beside it.
pub struct CardFacts<'a> {
    /// The checkpoint's name (`ckpt-81`, `final`), for the title.
    pub checkpoint: &'a str,
    /// An adapter (PEFT) or a whole model (merged, or fully trained).
    pub adapter: bool,
    pub merged: bool,
}

/// The card of the checkpoint in `dir`.
pub fn model_card(dir: &Path, facts: &CardFacts<'_>) -> String {
    let read = |name: &str| -> Value {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null)
    };
    let state = read("trainer_state.json");
    let samples = read("samples.json");
    let adapter = read("adapter_config.json");
    let base = state["baseModel"]
        .as_str()
        .or(adapter["base_model_name_or_path"].as_str())
        .unwrap_or("unknown");
    let method = state["method"].as_str().unwrap_or("sft");
    let job = state["job"].as_str().unwrap_or("anneal");

    let mut card = String::new();
    let library = if facts.adapter {
        "peft"
    } else {
        "transformers"
    };
    let _ = writeln!(card, "---\nbase_model: {base}\nlibrary_name: {library}");
    let _ = writeln!(card, "tags:\n- anneal\n- {method}\n- lora");
    if facts.merged {
        let _ = writeln!(card, "- merged");
    }
    let _ = writeln!(card, "---\n\n# {job}: {}\n", facts.checkpoint);
    let what = match (facts.adapter, facts.merged) {
        (true, _) => "a LoRA adapter (PEFT format) for",
        (false, true) => "a LoRA adapter merged into",
        (false, false) => "a fine-tuned copy of",
    };
    let _ = writeln!(
        card,
        "This is {what} `{base}`, trained with Anneal ({} {}).\n",
        method.to_uppercase(),
        if facts.adapter || facts.merged {
            "with LoRA"
        } else {
            ""
        }
        .trim_end()
    );

    data_section(&mut card, &state);
    training_section(&mut card, &state);
    loss_section(&mut card, &state);
    samples_section(&mut card, &samples);
    card
}

/// The datasets and their sizes.
fn data_section(card: &mut String, state: &Value) {
    let h = &state["hyperparameters"];
    let data = &state["data"];
    let datasets = &state["datasets"];
    let _ = writeln!(card, "## Data\n\n| dataset | samples |\n|---|---|");
    let train = datasets["train"].as_str().unwrap_or("training data");
    let _ = writeln!(
        card,
        "| train: `{train}` | {} |",
        number(&data["trainSamples"])
    );
    let validation = match datasets["validation"].as_str() {
        Some(file) => format!("validation: `{file}`"),
        None => "validation: held out of the training data".to_owned(),
    };
    let _ = writeln!(
        card,
        "| {validation} | {} |",
        number(&data["validationSamples"])
    );
    if let Some(dropped) = data["droppedTooLong"].as_u64().filter(|d| *d > 0) {
        let _ = writeln!(
            card,
            "\n{dropped} samples longer than maxTokens ({}) were left out.",
            number(&h["maxTokens"])
        );
    }
}

/// The hyperparameters and how far training went.
fn training_section(card: &mut String, state: &Value) {
    let h = &state["hyperparameters"];
    let _ = writeln!(card, "\n## Training\n\n| setting | value |\n|---|---|");
    for (label, key) in [
        ("learning rate", "learningRate"),
        ("epochs", "epochs"),
        ("batch size", "batchSize"),
        ("max tokens", "maxTokens"),
        ("LoRA rank", "loraRank"),
        ("LoRA alpha", "loraAlpha"),
        ("LoRA dropout", "loraDropout"),
        ("warmup ratio", "warmupRatio"),
        ("weight decay", "weightDecay"),
        ("seed", "seed"),
    ] {
        if !h[key].is_null() {
            let _ = writeln!(card, "| {label} | {} |", number(&h[key]));
        }
    }
    if let Some(modules) = h["targetModules"].as_array() {
        let names: Vec<&str> = modules.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(card, "| LoRA target modules | {} |", names.join(", "));
    }
    let _ = writeln!(
        card,
        "\nSteps: {} of {} (epoch {}).",
        number(&state["step"]),
        number(&state["totalSteps"]),
        number(&state["epoch"])
    );
}

/// Each checkpoint's validation loss, this one marked.
fn loss_section(card: &mut String, state: &Value) {
    if let Some(checkpoints) = state["checkpoints"].as_array().filter(|c| !c.is_empty()) {
        let _ = writeln!(
            card,
            "\n## Validation loss\n\n| checkpoint | step | validation loss |\n|---|---|---|"
        );
        let step = state["step"].as_u64();
        for checkpoint in checkpoints {
            let this = checkpoint["step"].as_u64() == step;
            let _ = writeln!(
                card,
                "| {}{} | {} | {} |",
                checkpoint["name"].as_str().unwrap_or("?"),
                if this { " (this one)" } else { "" },
                number(&checkpoint["step"]),
                loss(&checkpoint["validLoss"])
            );
        }
    }
}

/// The answers to the job's sample prompts.
fn samples_section(card: &mut String, samples: &Value) {
    if let Some(samples) = samples.as_array().filter(|s| !s.is_empty()) {
        let _ = writeln!(card, "\n## Sample answers\n");
        for sample in samples {
            let question = sample["prompt"]["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            let answer = sample["answer"].as_str().unwrap_or("");
            let _ = writeln!(
                card,
                "**{}**\n\n> {}\n",
                question.trim(),
                answer.trim().replace('\n', "\n> ")
            );
        }
    }
}

fn number(value: &Value) -> String {
    match value {
        Value::Null => "n/a".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn loss(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "n/a".to_owned(), |loss| format!("{loss:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_says_what_the_checkpoint_learned_from_and_how_well() {
        let dir = tempfile::tempdir().unwrap();
        let state = serde_json::json!({
            "job": "support-bot", "baseModel": "Qwen/Qwen2.5-7B-Instruct", "method": "sft",
            "step": 8, "totalSteps": 8, "epoch": 2.0,
            "hyperparameters": {"learningRate": 0.0001, "epochs": 2, "batchSize": 8, "maxTokens": 4096,
                                "loraRank": 8, "loraAlpha": 32, "loraDropout": 0.05,
                                "targetModules": ["q_proj", "v_proj"], "seed": 42},
            "data": {"trainSamples": 216, "validationSamples": 24, "droppedTooLong": 3},
            "datasets": {"train": "support.jsonl"},
            "checkpoints": [{"name": "ckpt-4", "step": 4, "validLoss": 1.23456},
                            {"name": "ckpt-8", "step": 8, "validLoss": 0.98765}],
        });
        std::fs::write(dir.path().join("trainer_state.json"), state.to_string()).unwrap();
        let samples = serde_json::json!([{"prompt": {"messages": [{"role": "user", "content": "Hi?"}]},
                                          "answer": "Hello.\nBye."}]);
        std::fs::write(dir.path().join("samples.json"), samples.to_string()).unwrap();
        let facts = CardFacts {
            checkpoint: "ckpt-8",
            adapter: false,
            merged: true,
        };
        let card = model_card(dir.path(), &facts);
        assert!(
            card.starts_with(
                "---\nbase_model: Qwen/Qwen2.5-7B-Instruct\nlibrary_name: transformers\n"
            ),
            "{card}"
        );
        for line in [
            "This is a LoRA adapter merged into `Qwen/Qwen2.5-7B-Instruct`, trained with Anneal (SFT with LoRA).",
            "| train: `support.jsonl` | 216 |",
            "| validation: held out of the training data | 24 |",
            "3 samples longer than maxTokens (4096) were left out.",
            "| learning rate | 0.0001 |",
            "| LoRA target modules | q_proj, v_proj |",
            "| ckpt-4 | 4 | 1.2346 |",
            "| ckpt-8 (this one) | 8 | 0.9877 |",
            "**Hi?**\n\n> Hello.\n> Bye.",
        ] {
            assert!(card.contains(line), "missing {line:?} in\n{card}");
        }
        assert_eq!(
            card,
            model_card(dir.path(), &facts),
            "the same card every time"
        );
    }
}
