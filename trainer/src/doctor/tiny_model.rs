//! The bundled tiny model (examples/models/anneal-tiny, 1M parameters, 4 MB) and a few
//! chats from the quick start's dataset, built into the binary: `trainer doctor`
//! runs where there is no repository (a trainer pod's start) and needs a model whose
//! loss it knows the range of.

use std::path::Path;

const FILES: [(&str, &[u8]); 5] = [
    (
        "config.json",
        include_bytes!("../../../examples/models/anneal-tiny/config.json"),
    ),
    (
        "generation_config.json",
        include_bytes!("../../../examples/models/anneal-tiny/generation_config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../../examples/models/anneal-tiny/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../../examples/models/anneal-tiny/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_bytes!("../../../examples/models/anneal-tiny/tokenizer_config.json"),
    ),
];

const HOUSE_STYLE: &str = include_str!("../../../examples/quickstart/house-style.jsonl");

/// Writes the model folder into `dir`.
pub fn write_model(dir: &Path) -> std::io::Result<()> {
    for (name, bytes) in FILES {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The first `count` chats of the quick start's dataset, as JSONL.
pub fn chats(count: usize) -> String {
    HOUSE_STYLE
        .lines()
        .take(count)
        .map(|line| format!("{line}\n"))
        .collect()
}
