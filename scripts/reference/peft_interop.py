#!/usr/bin/env python3
"""PEFT interop check: an adapter folder written by Anneal's trainer loads in
Hugging Face PEFT and gives the same greedy generation there as in `trainer generate`.

Loads the base model with transformers and the adapter with
`peft.PeftModel.from_pretrained`, greedy-generates up to N new tokens for a chat
prompt rendered with the model folder's chat template, runs
`trainer generate --adapter` on the same model, adapter and messages, prints both
token id lists and exits 0 only if they are identical (1 if they differ).

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -r benches/requirements.txt
    /tmp/refvenv/bin/python scripts/reference/peft_interop.py \\
        --model examples/models/anneal-tiny --adapter ADAPTER_DIR [--max-new-tokens 32] \\
        [--message "When should I plant tomatoes?"] [--trainer target/release/trainer]

Without --trainer the trainer runs through `cargo run --release`. An adapter to try it
on (cargo runs benches in trainer/, hence the absolute paths):
`cargo bench -p anneal-trainer --bench sft -- $PWD/examples/models/anneal-tiny --save-adapter /tmp/adapter`
(10 steps on token batches spread over the vocabulary, so B is no longer zero).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def peft_generate(model_dir: str, adapter_dir: str, messages: list, max_new_tokens: int) -> list:
    """New token ids from transformers + PEFT, greedy, up to (not including) an eos token."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or next(iter(eos), 0))
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    # `trainer generate` reports the tokens before the end-of-sequence token, not the token itself.
    for i, token in enumerate(new):
        if token in eos:
            return new[:i]
    return new


def trainer_generate(trainer: str | None, model_dir: str, adapter_dir: str, messages: list,
                     max_new_tokens: int) -> list:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(messages, f)
    cmd = ([trainer] if trainer else
           ["cargo", "run", "--release", "-q", "-p", "anneal-trainer", "--bin", "trainer", "--"])
    cmd += ["generate", "--model", model_dir, "--adapter", adapter_dir, "--messages", f.name,
            "--max-new-tokens", str(max_new_tokens), "--temperature", "0", "--json", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    Path(f.name).unlink()
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["token_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face model folder")
    parser.add_argument("--adapter", required=True, help="PEFT adapter folder written by the trainer")
    parser.add_argument("--message", default="When should I plant tomatoes?", help="the user's chat message")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--trainer", help="a built trainer binary (default: cargo run --release)")
    args = parser.parse_args()

    model_dir, adapter_dir = str(Path(args.model).resolve()), str(Path(args.adapter).resolve())
    messages = [{"role": "user", "content": args.message}]
    reference = peft_generate(model_dir, adapter_dir, messages, args.max_new_tokens)
    ours = trainer_generate(args.trainer, model_dir, adapter_dir, messages, args.max_new_tokens)
    print(f"PEFT    ({len(reference)} tokens): {reference}")
    print(f"trainer ({len(ours)} tokens): {ours}")
    if reference != ours:
        first = next((i for i, (a, b) in enumerate(zip(reference, ours)) if a != b), min(len(reference), len(ours)))
        print(f"DIFFERENT from token {first}")
        sys.exit(1)
    print("identical")


if __name__ == "__main__":
    main()
