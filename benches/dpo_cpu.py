#!/usr/bin/env python3
"""DPO against SFT training throughput on the CPU, on the same preference data:
the bundled tiny model (examples/models/anneal-tiny) and the quick start's pairs
(examples/quickstart/house-style-dpo.jsonl), in micro-batches of 4. An SFT step
trains on 4 prompts with their chosen replies; a DPO step on 4 pairs, both replies
in one forward pass of the trained model plus one of the reference without
gradients. Each method runs in its own process (trainer/benches/dpo.rs), so peak
memory is its own.

tokens/s is input positions of the trained model's forward and backward per second
(padding included); the reference's extra forward is the cost DPO pays on top.

Prints a Markdown section and, with --write, replaces the "DPO vs SFT (CPU)" section
of benches/RESULTS.md. Needs no Python packages:

    python3 benches/dpo_cpu.py [--write] [--repeat N] [--steps N]

Timings on a small machine move with whatever else runs: take them when the load
average is low, and --repeat (alternating runs, fastest kept) evens out the rest.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402  (stdlib only at import time)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "anneal-tiny"
DATA = ROOT / "examples" / "quickstart" / "house-style-dpo.jsonl"
TITLE = "## DPO vs SFT (CPU)"
BATCH = 4


def run(method: str, training: str, steps: int) -> dict:
    cmd = ["cargo", "bench", "-q", "-p", "anneal-trainer", "--bench", "dpo", "--",
           str(MODEL), str(DATA), "--method", method, "--training", training,
           "--batch", str(BATCH), "--steps", str(steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    best: dict = {}
    loads = []
    for _ in range(args.repeat):
        for training in ("lora", "full"):
            for method in ("sft", "dpo"):
                result = run(method, training, args.steps)
                loads.append(os.getloadavg()[0])
                key = (training, method)
                if key not in best or result["tokens_per_second"] > best[key]["tokens_per_second"]:
                    best[key] = result
    today = datetime.date.today().isoformat()
    repeat = f" --repeat {args.repeat}" if args.repeat > 1 else ""
    lines = [
        TITLE,
        "",
        f"Command: `python3 benches/dpo_cpu.py --write{repeat}` ({today}, {os.cpu_count()} cores, "
        f"1-minute load average up to {max(loads):.2f} during the runs; fastest of {args.repeat} alternating runs each).",
        "The bundled tiny model (hidden 128, 4 layers, vocab 2048) and the first pairs of "
        "examples/quickstart/house-style-dpo.jsonl, micro-batches of 4 (SFT: 4 prompts with the chosen reply; "
        "DPO: 4 pairs, 8 sequences in one pass, plus the reference's pass without gradients), "
        f"{args.steps} timed steps after 2 warm-up steps, AdamW, LoRA rank 8 on all 7 projections or full training.",
        "tokens/s counts input positions of the trained model's forward and backward (padding included); "
        "examples/s counts samples for SFT and pairs for DPO.",
        "",
        "| training | method | tokens/s | examples/s | peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for training in ("lora", "full"):
        for method in ("sft", "dpo"):
            r = best[(training, method)]
            lines.append(f"| {training} | {method} | {r['tokens_per_second']:.0f} | "
                         f"{r['examples_per_second']:.1f} | {r['peak_rss_mib']:.0f} |")
    lines.append("")
    for training in ("lora", "full"):
        sft, dpo = best[(training, "sft")], best[(training, "dpo")]
        lines.append(f"{training}: DPO / SFT **{dpo['tokens_per_second'] / sft['tokens_per_second']:.2f}x** tokens/s, "
                     f"**{dpo['examples_per_second'] / sft['examples_per_second']:.2f}x** examples/s.")
        lines.append("")
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(TITLE, section)


if __name__ == "__main__":
    main()
