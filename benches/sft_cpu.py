#!/usr/bin/env python3
"""LoRA SFT throughput and peak memory on the CPU: Anneal's training step
(trainer/benches/sft.rs) against transformers + PEFT, on the same random-weight
Qwen2 checkpoint, the same token batches and assistant mask, and the same LoRA and
AdamW settings.

tokens/s is input positions per second over the timed steps (every position runs
forward and backward; with no padding here, that is batch x sequence length per
step). Each implementation runs in its own process so peak memory is its own.

Before timing, both run a few steps from the *same* initial adapter (PEFT's, loaded
by the Rust side) with dropout 0 and their losses are compared: the guard that both
sides do the same work. A mismatch above LOSS_TOLERANCE fails the script.

Prints a Markdown section and, with --write, replaces the "LoRA SFT (CPU)" section of
benches/RESULTS.md.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -r benches/requirements.txt
    /tmp/refvenv/bin/python benches/sft_cpu.py [--write] [--repeat N]

Timings on a small machine move with whatever else runs: take them when the load
average is low, and --repeat (alternating runs, fastest kept) evens out the rest.
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import CONFIG, make_checkpoint, write_section  # noqa: E402  (one benchmark model shape for both)

ROOT = Path(__file__).resolve().parent.parent
BATCH, SEQ = 4, 256
# Distinct batches the steps cycle through, so the loss check sees more than one batch.
NUM_BATCHES = 2
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SETTINGS = dict(rank=8, alpha=16.0, dropout=0.05, seed=0, learning_rate=1e-3, weight_decay=0.0,
                max_grad_norm=1.0, warmup_steps=2, steps=10)
# Steps compared in the loss check (from one initial adapter, dropout 0).
CHECK_STEPS = 5
# f32 on both sides with different summation orders: the check allows for rounding only.
LOSS_TOLERANCE = 1e-3


def make_batches(vocab: int) -> list:
    """Fixed pseudo-random token batches: each sample has SEQ + 1 ids (SEQ input
    positions); a prompt of varying length is masked out and the rest is trained."""
    rng = random.Random(1234)
    batches = []
    for _ in range(NUM_BATCHES):
        samples = []
        for _ in range(BATCH):
            ids = [rng.randrange(vocab) for _ in range(SEQ + 1)]
            prompt = rng.randrange(16, SEQ // 2)
            samples.append({"ids": ids, "mask": [t >= prompt for t in range(SEQ + 1)]})
        batches.append(samples)
    return batches


def peft_worker(model_dir: str, spec_path: str, save_initial: str | None) -> None:
    """Trains with transformers + PEFT as spec says; prints one JSON line."""
    import peft
    import torch
    import torch.nn.functional as F
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    torch.set_num_threads(2)
    spec = json.loads(Path(spec_path).read_text())
    torch.manual_seed(spec["seed"])
    base = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(base, LoraConfig(
        r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"],
        target_modules=TARGET_MODULES, bias="none", task_type="CAUSAL_LM"))
    if save_initial:
        model.save_pretrained(save_initial)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # torch's AdamW with the betas and eps burn's AdamW is configured with in train::optimizer::adamw.
    optimizer = torch.optim.AdamW(params, lr=spec["learning_rate"], betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=spec["weight_decay"])

    # As sft::loss::Batch::new does: inputs predict the next id; untrained targets ignored.
    batches = []
    for samples in spec["batches"]:
        ids = torch.tensor([s["ids"] for s in samples])
        mask = torch.tensor([s["mask"] for s in samples])
        labels = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        batches.append((ids[:, :-1].contiguous(), labels.contiguous(), int(mask[:, 1:].sum())))

    losses, positions = [], 0
    start = time.perf_counter()
    for step in range(spec["warmup_steps"] + spec["steps"]):
        if step == spec["warmup_steps"]:
            start = time.perf_counter()
        inputs, labels, trained = batches[step % len(batches)]
        logits = model(input_ids=inputs).logits
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        with torch.no_grad():  # the token accuracy sft_step also reports
            (logits.argmax(-1) == labels).sum().item()
        (nll / trained).backward()
        torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(nll.item() / trained)
        if step >= spec["warmup_steps"]:
            positions += inputs.numel()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "implementation": f"transformers {transformers.__version__} + PEFT {peft.__version__} "
                          f"(torch {torch.__version__}, f32, sdpa)",
        "positions": positions, "seconds": seconds, "tokens_per_second": positions / seconds,
        "peak_rss_mib": peak, "losses": losses}))


def run_json(cmd, env=None) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_peft(model_dir: Path, spec: Path, save_initial: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(model_dir), str(spec)]
    if save_initial:
        cmd += ["--save-initial", str(save_initial)]
    return run_json(cmd)


def run_anneal(model_dir: Path, spec: Path, init_adapter: Path | None = None) -> dict:
    cmd = ["cargo", "bench", "-q", "-p", "anneal-trainer", "--bench", "sft", "--",
           str(model_dir), "--spec", str(spec)]
    if init_adapter:
        cmd += ["--init-adapter", str(init_adapter)]
    return run_json(cmd, env={**os.environ, "RAYON_NUM_THREADS": "2"})


def write_spec(path: Path, batches: list, **overrides) -> Path:
    path.write_text(json.dumps({**SETTINGS, **overrides, "batches": batches}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs per implementation, alternating; the fastest of each is reported")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL_DIR", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--save-initial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        peft_worker(*args.worker, args.save_initial)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        make_checkpoint(model_dir)
        batches = make_batches(CONFIG["vocab_size"])

        # Same work: same initial adapter, no dropout, a few steps.
        check_spec = write_spec(tmp / "check.json", batches, dropout=0.0, warmup_steps=0, steps=CHECK_STEPS)
        initial = tmp / "initial-adapter"
        peft_check = run_peft(model_dir, check_spec, save_initial=initial)
        ours_check = run_anneal(model_dir, check_spec, init_adapter=initial)
        diffs = [abs(a - b) / abs(b) for a, b in zip(ours_check["losses"], peft_check["losses"])]
        print("loss check (step: anneal / PEFT):")
        for i, (a, b) in enumerate(zip(ours_check["losses"], peft_check["losses"])):
            print(f"  {i + 1}: {a:.6f} / {b:.6f}")
        if max(diffs) > LOSS_TOLERANCE:
            sys.exit(f"losses differ by up to {max(diffs):.2e} (relative), above {LOSS_TOLERANCE}: "
                     "the two implementations are not doing the same work")

        # The timed runs, each with its own fresh adapter and dropout. Alternating, so
        # a change in the machine's load falls on both.
        spec = write_spec(tmp / "bench.json", batches)
        load = os.getloadavg()[0]
        runs = {"peft": [], "anneal": []}
        for _ in range(args.repeat):
            runs["peft"].append(run_peft(model_dir, spec))
            runs["anneal"].append(run_anneal(model_dir, spec))
            load = max(load, os.getloadavg()[0])
        reference, ours = (max(runs[k], key=lambda r: r["tokens_per_second"]) for k in ("peft", "anneal"))
        for name, results in runs.items():
            print(f"{name} tokens/s: {[round(r['tokens_per_second']) for r in results]}")

    ratio = ours["tokens_per_second"] / reference["tokens_per_second"]
    mem_ratio = ours["peak_rss_mib"] / reference["peak_rss_mib"]
    check_rows = [f"| {i + 1} | {a:.5f} | {b:.5f} |"
                  for i, (a, b) in enumerate(zip(ours_check["losses"], peft_check["losses"]))]
    section = "\n".join([
        "## LoRA SFT (CPU)",
        "",
        f"Command: `python3 benches/sft_cpu.py --write{f' --repeat {args.repeat}' if args.repeat > 1 else ''}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, 1-minute load average up to {load:.2f} "
        f"during the timed runs, theirs included{f'; fastest of {args.repeat} alternating runs each' if args.repeat > 1 else ''}).",
        f"Qwen2-shaped random weights: {json.dumps(CONFIG)}.",
        f"LoRA on all 7 projections and AdamW: {json.dumps(SETTINGS)}; one micro-batch of {BATCH} x {SEQ} "
        f"input positions per step (no padding, prompt part of each sample masked out of the loss), "
        f"{NUM_BATCHES} fixed batches in turn; {SETTINGS['steps']} timed steps after {SETTINGS['warmup_steps']} "
        "warm-up steps. A step is forward, masked cross-entropy, backward, global-norm clipping and AdamW.",
        "tokens/s counts input positions (batch x sequence length) per second of timed steps, on both sides.",
        "",
        "| implementation | tokens/s | peak RSS (MiB) |",
        "|---|---|---|",
        f"| {ours['implementation']} | {ours['tokens_per_second']:.0f} | {ours['peak_rss_mib']:.0f} |",
        f"| {reference['implementation']} | {reference['tokens_per_second']:.0f} | {reference['peak_rss_mib']:.0f} |",
        "",
        f"Ratio (Anneal / PEFT): **{ratio:.2f}x** throughput (goal 1.5x), **{mem_ratio:.2f}x** peak memory.",
        "",
        f"Loss check: both start from PEFT's initial adapter (saved by PEFT, loaded by the Rust side), dropout 0, "
        f"{CHECK_STEPS} steps; largest relative difference {max(diffs):.1e} (the script fails above {LOSS_TOLERANCE}).",
        "",
        "| step | anneal loss | PEFT loss |",
        "|---|---|---|",
        *check_rows,
        "",
        "Peak RSS is the whole process: for PEFT most of it is the torch runtime itself.",
        "",
    ])
    print(section)
    if args.write:
        write_section("## LoRA SFT (CPU)", section)

if __name__ == "__main__":
    main()
