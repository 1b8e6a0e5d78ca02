#!/usr/bin/env python3
"""What `checkpoints.evaluation` costs a run: the quick start (examples/quickstart/
finetunejob.yaml, 81 steps, 9 checkpoints, each answering 10 held-out questions with
at most 24 tokens and scoring their reference loss) against the same job without
its `evaluation`, run alternately with the release `trainer`, fastest of each kept.

Prints a Markdown section and, with --write, replaces the "checkpoint evaluation
(CPU)" section of benches/RESULTS.md. Needs only Python's standard library:

    cargo build --release -p anneal-trainer --bin trainer
    python3 benches/checkpoint_evaluation_cpu.py [--write] [--repeat N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402  (torch is imported only by its workers)

ROOT = Path(__file__).resolve().parent.parent
TRAINER = ROOT / "target" / "release" / "trainer"
JOB = ROOT / "examples" / "quickstart" / "finetunejob.yaml"
TITLE = "## checkpoint evaluation (CPU)"


def without_evaluation(text: str) -> str:
    """The manifest with its `checkpoints.evaluation` (and the comment above it) cut."""
    head, _, _ = text.partition("    # At every checkpoint, 10 held-out")
    assert "evaluation:" not in head, "the evaluation is no longer the manifest's last part"
    return head


def timed_run(manifest: Path) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([str(TRAINER), "train", str(manifest), "--output", out, "--device", "cpu"],
                       check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not TRAINER.exists():
        sys.exit("build it first: cargo build --release -p anneal-trainer --bin trainer")
    # Beside the original, so its file:// paths resolve the same.
    plain = JOB.with_name(".finetunejob-without-evaluation.yaml")
    plain.write_text(without_evaluation(JOB.read_text()))
    try:
        times = {"with": [], "without": []}
        for _ in range(args.repeat):
            times["without"].append(timed_run(plain))
            times["with"].append(timed_run(JOB))
    finally:
        plain.unlink()
    best = {k: min(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    section = f"""{TITLE}

Command: `python3 benches/checkpoint_evaluation_cpu.py --write` ({time.strftime('%Y-%m-%d')}, 2 cores, 1-minute load average {load:.2f} at the end; release `trainer`, fastest of {args.repeat} alternating runs each). The quick start (81 steps, 9 checkpoints) with its `checkpoints.evaluation` (10 held-out questions answered with at most 24 tokens, and their reference loss, at every checkpoint) against the same job without it. The whole `trainer train` is timed, model loading and checkpoints included.

| run | seconds | time / without |
|---|---|---|
| quick start without `checkpoints.evaluation` (reference) | {best['without']:.2f} | 1.00x |
| quick start with it | {best['with']:.2f} | {best['with'] / best['without']:.2f}x |

At real sizes the cost follows the same count: every checkpoint decodes up to chats x `maxTokens` tokens, one chat at a time.
"""
    print(section)
    if args.write:
        write_section(TITLE, section)


if __name__ == "__main__":
    main()
