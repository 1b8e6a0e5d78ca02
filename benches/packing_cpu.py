#!/usr/bin/env python3
"""Sequence packing on the CPU: `trainer train` (release build) on the same job with
`dataset.packing` off and on, on the quick start's chats and on short chats, reported
as the ratio of training tokens per second (the chats' own tokens, padding not
counted, over the optimizer steps' time; checkpoints and loading excluded), read from
each run's final `trainer_state.json`.

The jobs are the quick start's (LoRA r8, maxTokens 256) on the bundled tiny model
(hidden 128) and on a random-weight 25M-parameter one of the same vocabulary
(hidden 512, 8 layers: benches/random_qwen2.py), where the projections and the MLP
weigh more against the per-token work packing adds (taking each layer's rows apart
for attention), with no dropout, no sample prompts and no evaluation, so both runs do the same
steps on the same samples; their final training losses are printed beside the speed
as the check that they did (packing keeps each step's loss). Each runs with the whole
batch in one micro-batch (what the CPU's memory allows) and one row at a time
(`gradientAccumulation` = `batchSize`: what a GPU's memory allows at long
`maxTokens`), where packing runs fewer, fuller rows.

Short chats are the quick start's questions with only the answer's "In short:" line,
about a third as long. Runs alternate (unpacked, packed) `--repeat` times; the
fastest of each is kept.

Prints a Markdown section and, with --write, replaces the "packing (CPU)" section of
benches/RESULTS.md.

    cargo build --release -p anneal-trainer --bin trainer
    python3 benches/packing_cpu.py [--write] [--repeat N]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRAINER = ROOT / "target" / "release" / "trainer"
QUICKSTART = ROOT / "examples" / "quickstart" / "house-style.jsonl"
MODEL = ROOT / "examples" / "models" / "anneal-tiny"
TITLE = "## packing (CPU)"


def short_chats() -> str:
    """Each quick-start chat with only its answer's last line ("In short: ...")."""
    lines = []
    for line in QUICKSTART.read_text().splitlines():
        chat = json.loads(line)
        for message in chat["messages"]:
            if message["role"] == "assistant":
                message["content"] = message["content"].splitlines()[-1]
        lines.append(json.dumps(chat))
    return "\n".join(lines) + "\n"


def job(model: Path, data: str, batch: int, accumulation: int, epochs: int, packing: bool) -> str:
    return f"""apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: packing-bench, namespace: bench}}
spec:
  baseModel: {{name: bench-model, source: "file://{model}"}}
  dataset: {{train: "file://{data}", validationSplit: 0.1, packing: {str(packing).lower()}}}
  hyperparameters:
    learningRate: 0.003
    epochs: {epochs}
    batchSize: {batch}
    gradientAccumulation: {accumulation}
    maxTokens: 256
    lora: {{rank: 8, alpha: 16, dropout: 0.0}}
"""


def train(folder: Path, model: Path, data: Path, batch: int, micro: int, steps: int,
          packing: bool, attempt: int) -> dict:
    """One run's tokens per second, steps and final training loss."""
    name = f"{model.name}-{data.stem}-{packing}-{batch}-{micro}-{attempt}"
    manifest = folder / f"job-{name}.yaml"
    epochs = max(1, round(steps * batch / 216))
    manifest.write_text(job(model, str(data), batch, batch // micro, epochs, packing))
    out = folder / f"out-{name}"
    subprocess.run([str(TRAINER), "train", str(manifest), "--output", str(out),
                    "--run-id", "r1", "--device", "cpu", "--json"],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    state = json.loads((out / "bench" / "packing-bench" / "r1" / "final" / "trainer_state.json").read_text())
    return {
        "tokens_per_second": state["tokensSeen"] / state["trainSeconds"],
        "steps": state["step"],
        "loss": state["logHistory"][-1]["trainLoss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not TRAINER.exists():
        sys.exit(f"{TRAINER} is missing: cargo build --release -p anneal-trainer --bin trainer")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        short = folder / "short.jsonl"
        short.write_text(short_chats())
        wider = folder / "random-25m"
        subprocess.run([sys.executable, str(ROOT / "benches" / "random_qwen2.py"), str(wider),
                        "--hidden", "512", "--layers", "8", "--heads", "8", "--kv-heads", "2",
                        "--ffn", "1408"], check=True, capture_output=True)
        # (model, data, batchSize, micro-batch in rows, steps): the whole batch at once,
        # as the CPU's memory allows, and one row at a time, as a GPU's memory allows at
        # long maxTokens; about 60 steps of the tiny model (a run of a few seconds
        # times mostly noise), one epoch of the 25M-parameter one.
        cases = [
            ("anneal-tiny", MODEL, "quick start", QUICKSTART, 8, 8, 60),
            ("anneal-tiny", MODEL, "quick start", QUICKSTART, 8, 1, 60),
            ("anneal-tiny", MODEL, "short chats", short, 32, 32, 60),
            ("anneal-tiny", MODEL, "short chats", short, 32, 1, 60),
            ("random 25M (hidden 512, 8 layers)", wider, "quick start", QUICKSTART, 8, 8, 27),
            ("random 25M (hidden 512, 8 layers)", wider, "quick start", QUICKSTART, 8, 1, 27),
        ]
        for model_name, model, name, data, batch, micro, steps in cases:
            best = {}
            for attempt in range(args.repeat):
                for packing in (False, True):
                    run = train(folder, model, data, batch, micro, steps, packing, attempt)
                    kept = best.get(packing)
                    if kept is None or run["tokens_per_second"] > kept["tokens_per_second"]:
                        best[packing] = run
            plain, packed = best[False], best[True]
            rows.append(
                f"| {model_name} | {name} | {batch} | {micro} | {plain['steps']} | {plain['tokens_per_second']:.0f} | "
                f"{packed['tokens_per_second']:.0f} | {packed['tokens_per_second'] / plain['tokens_per_second']:.2f} | "
                f"{plain['loss']:.4f} / {packed['loss']:.4f} |")
            print(rows[-1], file=sys.stderr)
    section = "\n".join([
        TITLE,
        "",
        f"Command: `python3 benches/packing_cpu.py --write --repeat {args.repeat}` "
        "(release build, 2 cores; fastest of the alternating runs). Tokens per second count the "
        "chats' own tokens over the optimizer steps' time; the final step's training loss of "
        "each run shows both trained the same steps on the same samples.",
        "",
        "| model | data | batchSize | micro-batch (rows) | steps | unpacked tokens/s | packed tokens/s | packed / unpacked | final loss unpacked / packed |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(section)
    if args.write:
        write_section(TITLE, section)


if __name__ == "__main__":
    main()
