#!/usr/bin/env python3
"""Write the quick start's preference dataset: examples/quickstart/house-style-dpo.jsonl.

Each line asks one of the tiny model's questions (examples/models/anneal-tiny) and
pairs two replies with the same content: the chosen one in the house style of the
SFT quick start, the rejected one the plain answer the tiny model already gives:

    chosen:   Good question! <the plain answer>
              In short: <its first sentence, lower-cased>
    rejected: <the plain answer>

so the only thing that tells them apart is the style, and a DPO run that learns
the preference shows it in every greedy answer. Questions are drawn with their own
seed, so they differ from the SFT file's. The output is a pure function of the seed:

    python3 scripts/quickstart/make_dpo_dataset.py
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from make_dataset import ROOT, SYSTEM_SHARE, corpus, house_style

SEED = 20261129
PAIRS = 160


def pair(rng: random.Random) -> dict:
    topic, question, answer = corpus.random_pair(rng)
    while topic == "general":  # greetings and thanks have no content to summarise
        topic, question, answer = corpus.random_pair(rng)
    messages = []
    if rng.random() < SYSTEM_SHARE:
        messages.append({"role": "system", "content": corpus.DEFAULT_SYSTEM})
    messages.append({"role": "user", "content": corpus.decorate_question(rng, topic, question)})
    return {
        "messages": messages,
        "chosen": {"role": "assistant", "content": house_style(answer)},
        "rejected": {"role": "assistant", "content": answer},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "quickstart" / "house-style-dpo.jsonl")
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen: set[str] = set()
    lines = []
    while len(lines) < args.pairs:
        line = pair(rng)
        question = line["messages"][-1]["content"]
        if question in seen:
            continue
        seen.add(question)
        lines.append(json.dumps(line, ensure_ascii=False))
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} pairs to {args.out}")


if __name__ == "__main__":
    main()
