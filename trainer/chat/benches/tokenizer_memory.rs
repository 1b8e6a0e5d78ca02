//! The memory a model's tokenizer takes in the operator, whose `status.estimate` loads
//! it beside the rest of the controller within the chart's 512 MiB limit: byte-level
//! BPE tokenizers built here at Qwen2.5's size (151,643 tokens and their merges, the
//! bundled tiny model's pre-tokenizer and chat format) and at the largest
//! `tokenizer.json` the operator reads, loaded as the operator loads them (the files
//! read into memory, the tokenizer from them, the files dropped), then an
//! 8 MiB dataset counted through them, as `status.estimate` counts. The reference, in
//! the same run: the `tokenizers` crate's own reading (`Tokenizer::from_bytes`) and a
//! second copy for content, as `ModelTokenizer` held them before.
//!
//! Memory is counted by the bench's allocator: the bytes live and their peak, not the
//! process's RSS, which also holds what the heap keeps after a free.
//!
//! `cargo bench -p anneal-chat --bench tokenizer_memory [-- --write]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anneal_chat::dataset_tokens::count_tokens;
use anneal_chat::{ModelFolder, ModelTokenizer};
use anneal_crds::dataset::DatasetKind;
use serde_json::{Map, Value, json};

#[path = "../../../benches/results_section.rs"]
mod results_section;

/// Qwen2.5's vocabulary without its added tokens.
const QWEN_VOCAB: usize = 151_643;
/// The largest tokenizer file the operator reads (`TOKENIZER_BYTES_MAX` in
/// operator/src/finetunejob/job_estimate.rs).
const LARGEST_FILE: usize = 32 * 1024 * 1024;
/// The share of a dataset the operator counts (`COUNTED_BYTES_MAX`).
const COUNTED_BYTES: usize = 8 * 1024 * 1024;

/// The system allocator, counting the bytes live and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let write = std::env::args().any(|arg| arg == "--write");
    let tiny = repository().join("examples/models/anneal-tiny");
    let template: Value =
        serde_json::from_slice(&std::fs::read(tiny.join("tokenizer.json")).unwrap()).unwrap();
    let dataset = chat_dataset(COUNTED_BYTES);

    let qwen = synthesized_tokenizer(&template, QWEN_VOCAB);
    // The vocabulary whose file is the largest read: entries scale the file linearly.
    let per_entry = serde_json::to_vec(&qwen).unwrap().len() as f64 / QWEN_VOCAB as f64;
    // 2% under the limit: longer tokens come later, so entries grow a little.
    let largest =
        synthesized_tokenizer(&template, (0.98 * LARGEST_FILE as f64 / per_entry) as usize);

    let mut rows = Vec::new();
    for (name, tokenizer) in [("Qwen2.5 size", &qwen), ("largest file read", &largest)] {
        let folder = tempfile::tempdir().unwrap();
        lay_out(folder.path(), &tiny, tokenizer);
        let reference = measure_reference(folder.path());
        let row = measure(name, folder.path(), &dataset, reference);
        println!("{row:?}");
        rows.push(row);
    }
    let section = results(&rows);
    println!("{section}");
    if write {
        results_section::write_section(&repository().join("benches/RESULTS.md"), &section);
    }
}

#[derive(Debug)]
struct Row {
    name: &'static str,
    vocab: usize,
    file_mib: f64,
    load_peak_mib: f64,
    held_mib: f64,
    count_peak_mib: f64,
    tokens: u64,
    count_seconds: f64,
    reference: Reference,
}

/// The load's peak and what stays held, in MiB, of the reference reading.
#[derive(Debug, Clone, Copy)]
struct Reference {
    load_peak_mib: f64,
    held_mib: f64,
}

/// The `tokenizers` crate's reading of the folder's `tokenizer.json`, and a clone with
/// special-token matching off.
fn measure_reference(folder: &Path) -> Reference {
    let before = reset_peak();
    let bytes = std::fs::read(folder.join("tokenizer.json")).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
    drop(bytes);
    let mut content = tokenizer.clone();
    content.set_encode_special_tokens(true);
    let reference = Reference {
        load_peak_mib: mib((PEAK.load(Ordering::Relaxed) - before) as u64),
        held_mib: mib((LIVE.load(Ordering::Relaxed) - before) as u64),
    };
    drop((tokenizer, content));
    reference
}

/// Loads the tokenizer in `folder` and counts `dataset` through it, reading the memory
/// each takes above what the process held before.
fn measure(name: &'static str, folder: &Path, dataset: &[u8], reference: Reference) -> Row {
    let file_mib = mib(std::fs::metadata(folder.join("tokenizer.json"))
        .unwrap()
        .len());
    let before = reset_peak();
    // As the operator reads a model's files: into memory, then the tokenizer from them.
    let files: Vec<(String, Vec<u8>)> = ["config.json", "tokenizer.json", "tokenizer_config.json"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(folder.join(name)).unwrap()))
        .collect();
    let tokenizer =
        ModelTokenizer::from_folder(ModelFolder::Files(&files), "Qwen2ForCausalLM").unwrap();
    drop(files);
    let load_peak = PEAK.load(Ordering::Relaxed) - before;
    let held = LIVE.load(Ordering::Relaxed) - before;
    let vocab = tokenizer.vocab_size();

    let before_count = reset_peak();
    let started = std::time::Instant::now();
    let tokens = count_tokens(dataset, DatasetKind::Sft, &tokenizer, 4096);
    let count_seconds = started.elapsed().as_secs_f64();
    let count_peak = PEAK.load(Ordering::Relaxed) - before_count;
    drop(tokenizer);
    Row {
        name,
        vocab,
        file_mib,
        load_peak_mib: mib(load_peak as u64),
        held_mib: mib(held as u64),
        count_peak_mib: mib((count_peak + held) as u64),
        tokens: tokens.positions,
        count_seconds,
        reference,
    }
}

fn results(rows: &[Row]) -> String {
    let mut text = String::from(
        "## tokenizer memory in the operator (CPU)\n\n\
         Command: `cargo bench -p anneal-chat --bench tokenizer_memory -- --write`.\n\
         Byte-level BPE tokenizers built by the bench (the tiny model's pre-tokenizer and chat format, random merges of its 256 byte tokens, at most 16 characters a token), read into memory and loaded from there (`ModelTokenizer::from_folder`) as `status.estimate` loads them, then an 8 MiB SFT dataset of quick-start chats counted through them (`count_tokens`, as the operator counts the head of a dataset). Memory above what the process held before each step: the load's peak, what the loaded tokenizer holds, and the peak while counting (held included).\n\n\
         | tokenizer | vocabulary | tokenizer.json (MiB) | load peak (MiB) | held (MiB) | counting peak (MiB) | tokens counted | counting (s) | reference load peak (MiB) | reference held (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        text.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {:.0} | {:.0} |\n",
            row.name,
            row.vocab,
            row.file_mib,
            row.load_peak_mib,
            row.held_mib,
            row.count_peak_mib,
            row.tokens,
            row.count_seconds,
            row.reference.load_peak_mib,
            row.reference.held_mib,
        ));
    }
    for row in rows {
        text.push_str(&format!(
            "\n{}: load peak {:.2}x and held {:.2}x the reference's; {:.1}x and {:.1}x the file.",
            row.name,
            row.load_peak_mib / row.reference.load_peak_mib,
            row.held_mib / row.reference.held_mib,
            row.load_peak_mib / row.file_mib,
            row.held_mib / row.file_mib,
        ));
    }
    text.push('\n');
    text
}

/// A byte-level BPE tokenizer of `vocab` tokens (added tokens on top) in the shape of
/// `template`: its 256 single-character tokens, then tokens each made by merging two
/// earlier ones, the second among the first few thousand (as real merges join a long
/// piece and a short one).
fn synthesized_tokenizer(template: &Value, vocab: usize) -> Value {
    let template_vocab = template["model"]["vocab"].as_object().unwrap();
    let mut tokens: Vec<String> = template_vocab
        .keys()
        .filter(|token| token.chars().count() == 1)
        .cloned()
        .collect();
    tokens.sort();
    let mut known: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let mut merges = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    while tokens.len() < vocab {
        let first = tokens[next(tokens.len())].clone();
        let second = tokens[next(tokens.len().min(4096))].clone();
        let merged = format!("{first}{second}");
        if merged.chars().count() <= 16 && known.insert(merged.clone()) {
            merges.push(json!([first, second]));
            tokens.push(merged);
        }
    }
    let ids: Map<String, Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, token)| (token, json!(id)))
        .collect();
    let mut tokenizer = template.clone();
    let added = tokenizer["added_tokens"].as_array_mut().unwrap();
    for (index, token) in added.iter_mut().enumerate() {
        token["id"] = json!(vocab + index);
    }
    tokenizer["model"]["vocab"] = Value::Object(ids);
    tokenizer["model"]["merges"] = Value::Array(merges);
    tokenizer
}

/// A model folder: the tiny model's config files beside the built tokenizer.
fn lay_out(folder: &Path, tiny: &Path, tokenizer: &Value) {
    for name in ["config.json", "tokenizer_config.json"] {
        std::fs::copy(tiny.join(name), folder.join(name)).unwrap();
    }
    std::fs::write(
        folder.join("tokenizer.json"),
        serde_json::to_vec(tokenizer).unwrap(),
    )
    .unwrap();
}

/// JSONL chats of the quick start's kind, `bytes` long.
fn chat_dataset(bytes: usize) -> Vec<u8> {
    let words = [
        "the", "order", "arrives", "on", "tuesday", "refund", "your", "account", "we", "can",
        "help", "shipping", "please", "thanks",
    ];
    let mut out = Vec::with_capacity(bytes + 1024);
    let mut line = 0usize;
    while out.len() < bytes {
        let sentence = |offset: usize, length: usize| {
            (0..length)
                .map(|i| words[(line * 7 + offset + i * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let chat = json!({"messages": [
            {"role": "user", "content": sentence(0, 12 + line % 20)},
            {"role": "assistant", "content": sentence(5, 20 + line % 40)},
        ]});
        out.extend_from_slice(serde_json::to_string(&chat).unwrap().as_bytes());
        out.push(b'\n');
        line += 1;
    }
    out
}

/// Starts a new peak at the bytes live now, and returns them.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
