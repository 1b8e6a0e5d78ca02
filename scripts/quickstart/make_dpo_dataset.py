#!/usr/bin/env python3
"""Write the quick start's preference dataset: examples/quickstart/house-style-dpo.jsonl.

Each line asks one of the tiny model's questions (examples/models/anneal-tiny) and
pairs two replies in the SFT quick start's house style that differ in one thing
only, the opening:

    chosen:   Good question! <the plain answer>
              In short: <its first sentence, lower-cased>
    rejected: <the plain answer>
              In short: <its first sentence, lower-cased>

so the preference is unmistakable and checkable in any greedy answer: it opens
with "Good question!" or it does not. (With the plain answer alone as the rejected
reply, DPO on the tiny model learnt the easier difference, not stopping after the
answer, and the opening stayed as it was.) Questions are drawn with their own
seed, so they differ from the SFT file's. The output is a pure function of the seed:

    python3 scripts/quickstart/make_dpo_dataset.py
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from make_dataset import ROOT, SYSTEM_SHARE, corpus, first_sentence, house_style, write_unique

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
        "rejected": {"role": "assistant", "content": f"{answer}\nIn short: {first_sentence(answer)}"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "quickstart" / "house-style-dpo.jsonl")
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    count = write_unique(random.Random(args.seed), pair, args.pairs, args.out)
    print(f"wrote {count} pairs to {args.out}")


if __name__ == "__main__":
    main()
