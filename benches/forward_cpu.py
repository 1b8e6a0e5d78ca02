#!/usr/bin/env python3
"""Forward throughput and peak memory on the CPU: Anneal's burn model against
transformers, on the same random-weight Qwen2 checkpoint, same batch and length.

Each implementation runs in its own process so peak memory is its own. Prints a
Markdown table row block and, with --write, replaces the "forward (CPU)" section
of benches/RESULTS.md.

    python3 benches/forward_cpu.py [--write]      # needs torch + transformers (scripts/reference/requirements.txt)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH, SEQ, ITERS = 4, 256, 10
# Qwen2-shaped and small enough for 2 cores: the shape REFERENCES.md's PEFT anchor uses.
CONFIG = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=2, vocab_size=2048, max_position_embeddings=1024,
              rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)


def make_checkpoint(path: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**CONFIG))
    model.save_pretrained(path, safe_serialization=True)


def transformers_worker(path: str) -> None:
    import torch
    from transformers import Qwen2ForCausalLM
    torch.set_num_threads(2)
    model = Qwen2ForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
    ids = (torch.arange(BATCH * SEQ) * 7919 % CONFIG["vocab_size"]).reshape(BATCH, SEQ)
    with torch.inference_mode():
        model(ids)
        start = time.perf_counter()
        for _ in range(ITERS):
            model(ids).logits.sum().item()
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"implementation": f"transformers {__import__('transformers').__version__} (torch {torch.__version__}, f32, sdpa)",
                      "tokens_per_second": BATCH * SEQ * ITERS / seconds, "peak_rss_mib": peak}))


def write_section(title: str, section: str) -> None:
    """Puts `section` (which starts with `title`) into benches/RESULTS.md, replacing
    the section of that title if there is one, keeping every other section."""
    results = ROOT / "benches" / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n\nEach section is written by the command it names; numbers are ratios against a reference run in the same script.\n\n"
    start = text.find(title)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        # A blank line before the next section, whichever script wrote it.
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)


def run_json(cmd, env=None) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        transformers_worker(args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp))
        reference = run_json([sys.executable, __file__, "--worker", tmp])
        ours = run_json(["cargo", "bench", "-q", "-p", "anneal-trainer", "--bench", "forward", "--",
                         tmp, str(BATCH), str(SEQ), str(ITERS)],
                        env={**os.environ, "RAYON_NUM_THREADS": "2"})
    ratio = ours["tokens_per_second"] / reference["tokens_per_second"]
    mem_ratio = ours["peak_rss_mib"] / reference["peak_rss_mib"]
    section = "\n".join([
        "## forward (CPU)",
        "",
        f"Command: `python3 benches/forward_cpu.py --write` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).",
        f"Qwen2-shaped random weights: {json.dumps(CONFIG)}; batch {BATCH} x {SEQ} tokens, {ITERS} timed forwards with logits, after one warm-up.",
        "",
        "| implementation | tokens/s | peak RSS (MiB) |",
        "|---|---|---|",
        f"| {ours['implementation']} | {ours['tokens_per_second']:.0f} | {ours['peak_rss_mib']:.0f} |",
        f"| {reference['implementation']} | {reference['tokens_per_second']:.0f} | {reference['peak_rss_mib']:.0f} |",
        "",
        f"Ratio (Anneal / transformers): **{ratio:.2f}x** throughput, **{mem_ratio:.2f}x** peak memory.",
        "",
        "Peak RSS is the whole process: for transformers most of it is the torch runtime itself, so the memory",
        "ratio says more about the deployment footprint than about the model's working memory.",
        "",
    ])
    print(section)
    if args.write:
        write_section("## forward (CPU)", section)

if __name__ == "__main__":
    main()
