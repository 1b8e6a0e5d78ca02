#!/usr/bin/env python3
"""Write the quick start's dataset: examples/quickstart/house-style.jsonl.

The questions and plain answers come from the same templates the bundled tiny
model (examples/models/anneal-tiny) learned from, drawn with a different seed;
the assistant answers are then rewritten in a house style the tiny model has
never seen (scripts/tiny_model/corpus.py keeps these phrases out of its corpus):

    Good question! <the plain answer>
    In short: <its first sentence, lower-cased>

so a LoRA learns a visible, checkable habit in a few minutes on a laptop CPU:
open with "Good question!", close with an "In short:" line.

Every token of the two phrases occurs in the tiny model's corpus, though the
phrases never do. That matters: a token the base model never saw keeps an
untrained embedding, nearly the same as every other unseen token's, and since
the tiny model ties its output layer to those embeddings, a LoRA on attention
and MLP projections cannot make it prefer one of them ("Sure" tokenizes to the
unseen "Su", and a "Sure thing!" LoRA answered "\x13re thing!"). The output is a pure
function of the seed:

    python3 scripts/quickstart/make_dataset.py
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "tiny_model"))

import corpus  # noqa: E402  (the tiny model's templates)

SEED = 20261123
SAMPLES = 240
SYSTEM_SHARE = 0.25


def first_sentence(text: str) -> str:
    """The answer's first sentence, as the summary line repeats it."""
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence[0].lower() + sentence[1:]


def house_style(answer: str) -> str:
    return f"Good question! {answer}\nIn short: {first_sentence(answer)}"


def sample(rng: random.Random) -> dict:
    topic, question, answer = corpus.random_pair(rng)
    while topic == "general":  # greetings and thanks have no content to summarise
        topic, question, answer = corpus.random_pair(rng)
    messages = []
    if rng.random() < SYSTEM_SHARE:
        messages.append({"role": "system", "content": corpus.DEFAULT_SYSTEM})
    messages.append({"role": "user", "content": corpus.decorate_question(rng, topic, question)})
    messages.append({"role": "assistant", "content": house_style(answer)})
    return {"messages": messages}


def questions_in(path: Path) -> set[str]:
    """The last user question of every line of a dataset."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        found.add([m for m in messages if m["role"] == "user"][-1]["content"])
    return found


def write_unique(rng: random.Random, make, count: int, out: Path, exclude: set[str] | None = None) -> int:
    """Writes `count` lines made by `make(rng)` to `out`, one JSON object a line, none
    repeating the user question (the last user message) of an earlier one or of
    `exclude`."""
    seen: set[str] = set(exclude or ())
    lines = []
    while len(lines) < count:
        line = make(rng)
        question = [m for m in line["messages"] if m["role"] == "user"][-1]["content"]
        if question in seen:
            continue
        seen.add(question)
        lines.append(json.dumps(line, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "quickstart" / "house-style.jsonl")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--exclude", type=Path, help="a dataset whose questions the output must not repeat")
    args = parser.parse_args()
    exclude = questions_in(args.exclude) if args.exclude else None
    count = write_unique(random.Random(args.seed), sample, args.samples, args.out, exclude)
    print(f"{count} samples -> {args.out}")


if __name__ == "__main__":
    main()
