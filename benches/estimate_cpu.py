#!/usr/bin/env python3
"""How close `trainer plan --measure` comes to a real run on the CPU: the estimated
duration of a job (from its first 7 steps and one checkpoint, timed on this machine)
against the wall-clock time of `trainer train` on it, for the quick start (LoRA SFT,
81 steps, 9 checkpoints with validation, sample answers and a held-out evaluation)
and the quick start's DPO job. Runs alternate (train, plan) `--repeat` times; each
pair's ratio estimate / measured is reported, with the worst.

Prints a Markdown section and, with --write, replaces the "duration estimate (CPU)"
section of benches/RESULTS.md.

    cargo build --release -p anneal-trainer --bin trainer
    python3 benches/estimate_cpu.py [--write] [--repeat N]
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRAINER = ROOT / "target" / "release" / "trainer"
TITLE = "## duration estimate (CPU)"
JOBS = [
    ("quick start (SFT)", ROOT / "examples" / "quickstart" / "finetunejob.yaml"),
    ("quick start (DPO)", ROOT / "examples" / "quickstart" / "dpo-finetunejob.yaml"),
]


def seconds(text: str) -> float:
    """`95 s`, `12 min`, `3 h 20 min` as seconds."""
    total = 0.0
    for number, unit in re.findall(r"(\d+) (s|min|h|d)\b", text):
        total += int(number) * {"s": 1, "min": 60, "h": 3600, "d": 86400}[unit]
    return total


def train(manifest: Path, output: Path) -> float:
    started = time.monotonic()
    subprocess.run([str(TRAINER), "train", str(manifest), "--output", str(output)],
                   check=True, capture_output=True, cwd=ROOT)
    return time.monotonic() - started


def plan(manifest: Path) -> tuple[float, str]:
    out = subprocess.run([str(TRAINER), "plan", str(manifest), "--cpu-memory", "8GiB", "--measure"],
                         capture_output=True, text=True, cwd=ROOT).stdout
    measured = next(line for line in out.splitlines() if "measured on this CPU" in line)
    duration = next(line for line in out.splitlines() if "in all on this CPU" in line)
    return seconds(duration.split("duration:")[1].split(" in all")[0]), measured.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not TRAINER.exists():
        sys.exit(f"{TRAINER} is missing: cargo build --release -p anneal-trainer --bin trainer")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, manifest in JOBS:
            for attempt in range(args.repeat):
                measured = train(manifest, Path(tmp) / f"runs-{attempt}")
                estimated, figures = plan(manifest)
                rows.append((name, measured, estimated, figures))
                print(rows[-1], file=sys.stderr)
    worst = max(abs(estimated / measured - 1) for _, measured, estimated, _ in rows)
    section = "\n".join([
        TITLE,
        "",
        f"Command: `python3 benches/estimate_cpu.py --write --repeat {args.repeat}` (release "
        "build, 2 cores). `trainer train` timed whole (process start to exit) against the "
        "duration `trainer plan --measure` estimates from the job's first 7 steps and one "
        "checkpoint; runs alternate. The estimate rounds to whole seconds.",
        "",
        "| job | trainer train (s) | plan --measure (s) | estimate / measured | what it measured |",
        "|---|---|---|---|---|",
        *[f"| {name} | {measured:.1f} | {estimated:.0f} | {estimated / measured:.2f} | {figures.removeprefix('measured on this CPU: ')} |"
          for name, measured, estimated, figures in rows],
        "",
        f"Worst: {worst * 100:.0f}% off.",
        "",
    ])
    print(section)
    if args.write:
        write_section(TITLE, section)


if __name__ == "__main__":
    main()
