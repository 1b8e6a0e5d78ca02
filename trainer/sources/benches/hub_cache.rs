//! The model cache: how long a job waits for a hub model it has never fetched, against
//! one the cache holds, and the bytes each fetch takes from the hub. A model of
//! `--size-mib` (default 1024) in two safetensors shards plus the tiny model's config
//! and tokenizer files is served by the fake hub on loopback; a first fetch fills an
//! empty cache (the reference), then a second and a third (another "pod" on the same
//! cache) find it there.
//!
//! cargo bench -p anneal-sources --bench hub_cache --profile dev -- [--size-mib 1024] [--write]
//!
//! `--write` rewrites this bench's section of benches/RESULTS.md. Loopback is far faster
//! than any real hub, so the uncached time here is a floor: over the internet the ratio
//! only grows.

#[path = "../../../benches/results_section.rs"]
mod results_section;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anneal_crds::hub::{Hub, HubRef, HubSettings};
use anneal_fake_hub::FakeHub;
use anneal_sources::{HubCache, HubFetch};

const MIB: u64 = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: u64 = args
        .iter()
        .position(|a| a == "--size-mib")
        .and_then(|i| args.get(i + 1))
        .map_or(1024, |v| v.parse().expect("--size-mib N"));
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("model");
    let model_bytes = make_model(&model, size_mib * MIB);

    let hub = FakeHub::start();
    hub.publish_folder("bench/model-1g", "main", &model);
    let settings = HubSettings {
        hub: Hub::HuggingFace,
        endpoint: hub.endpoint(),
        token: None,
    };
    let reference = HubRef::parse("hf://bench/model-1g").unwrap().unwrap();
    let cache = HubCache {
        root: scratch.path().join("cache"),
    };

    let timed = |cache: &HubCache| -> (HubFetch, f64, u64) {
        let served = hub.bytes_served();
        let start = Instant::now();
        let fetched = cache
            .fetch(&reference, settings.clone(), &mut |_| {})
            .unwrap();
        (
            fetched,
            start.elapsed().as_secs_f64(),
            hub.bytes_served() - served,
        )
    };
    let (cold, cold_s, cold_bytes) = timed(&cache);
    let (warm, warm_s, warm_bytes) = timed(&cache);
    let other_pod = HubCache {
        root: cache.root.clone(),
    };
    let (again, again_s, again_bytes) = timed(&other_pod);
    assert_eq!(cold.bytes_downloaded, model_bytes);
    assert_eq!((warm.bytes_downloaded, again.bytes_downloaded), (0, 0));
    assert_eq!((warm.dir.clone(), again.dir), (cold.dir.clone(), cold.dir));

    let date = anneal_crds::jiff::Zoned::now()
        .strftime("%Y-%m-%d")
        .to_string();
    let gib = model_bytes as f64 / (1024.0 * MIB as f64);
    let text = format!(
        "## model cache: a hub model uncached vs cached (fake hub on loopback)\n\n\
         Command: `cargo bench -p anneal-sources --bench hub_cache --profile dev -- --write` ({date}, 2 cores).\n\
         A {gib:.2} GiB model ({model_bytes} bytes: two safetensors shards of random bytes, the tiny model's config and tokenizer files) \
         served by `anneal-fake-hub` on loopback; `HubCache::fetch` as a trainer or serving pod runs it: resolve the revision, \
         download what the cache lacks, check every file's size and SHA-256 / git blob id, rename the snapshot into place.\n\n\
         | fetch | seconds | bytes from the hub |\n|---|---|---|\n\
         | first job, empty cache (reference) | {cold_s:.2} | {cold_bytes} |\n\
         | second job, same cache | {warm_s:.3} | {warm_bytes} |\n\
         | another pod on the same cache | {again_s:.3} | {again_bytes} |\n\n\
         Ratio (cached / uncached): **{:.4}x** the time to have the model ready, **0** bytes downloaded (goal 0). \
         The uncached time is a floor: loopback moves bytes far faster than a real hub. \
         A cached fetch still asks the hub for the revision's listing (a few KB) and checks each file's size.\n",
        warm_s / cold_s
    );
    print!("{text}");
    if args.iter().any(|a| a == "--write") {
        results_section::write_section(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/RESULTS.md"),
            &text,
        );
    }
}

/// A model folder of about `weights` bytes of weights; its total size in the files a
/// fetch takes.
fn make_model(dir: &Path, weights: u64) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny");
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny.join(name), dir.join(name)).unwrap();
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for shard in 1..=2 {
        let path = dir.join(format!("model-0000{shard}-of-00002.safetensors"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut block = vec![0u8; MIB as usize];
        for _ in 0..(weights / 2).div_ceil(MIB) {
            for chunk in block.chunks_exact_mut(8) {
                // xorshift64: incompressible bytes, no dependency.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes());
            }
            out.write_all(&block).unwrap();
        }
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {}}"#,
    )
    .unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}
