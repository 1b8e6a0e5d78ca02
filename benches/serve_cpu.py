#!/usr/bin/env python3
"""Serving speed on the CPU: `trainer serve` (release build, burn Flex) against
transformers' `generate` on the same bundled tiny model (examples/models/anneal-tiny),
the same chat prompt, greedy, and replies of the same fixed length.

- one stream: one request at a time; time to first token (TTFT) and tokens/s over the
  whole reply.
- 8 streams: 8 requests at once. Anneal gets 8 concurrent streaming HTTP requests
  (its engine decodes them in one batch, each with its own KV cache); transformers gets
  the 8 prompts as one batch to `generate`, its natural way to serve several at once.
  TTFT is the mean over the 8 streams; tokens/s is all generated tokens over the wall
  time from the first request to the last token.

Anneal's numbers include HTTP, JSON and server-sent events; transformers' are the bare
library call, so the comparison is conservative for Anneal. Before timing, the greedy
replies of both are compared (the guard that both do the same work).

Prints a Markdown section and, with --write, replaces the "serving (CPU)" section of
benches/RESULTS.md.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -r benches/requirements.txt
    cargo build --release -p anneal-trainer
    /tmp/refvenv/bin/python benches/serve_cpu.py [--write] [--repeat N]
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "anneal-tiny"
TRAINER = ROOT / "target" / "release" / "trainer"
MESSAGES = [{"role": "user", "content": "What should I wear when it is windy?"}]
NEW_TOKENS = 128
STREAMS = 8
# Greedy tokens that must agree between the two before timing (float rounding may
# flip a near-tie later in a long reply).
CHECK_TOKENS = 16


def anneal_stream(base: str, results: list, index: int, start: float) -> None:
    body = json.dumps({
        "model": "anneal-tiny", "messages": MESSAGES, "temperature": 0,
        "max_tokens": NEW_TOKENS, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(f"{base}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    first, text, tokens = None, [], 0
    with urllib.request.urlopen(request) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                piece = choice["delta"].get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter()
                    text.append(piece)
    results[index] = {"ttft": first - start, "end": time.perf_counter(), "tokens": tokens, "text": "".join(text)}


def anneal_run(base: str, streams: int) -> dict:
    results = [None] * streams
    start = time.perf_counter()
    threads = [threading.Thread(target=anneal_stream, args=(base, results, i, start)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = max(r["end"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    assert all(r["tokens"] == NEW_TOKENS for r in results), [r["tokens"] for r in results]
    return {"ttft": sum(r["ttft"] for r in results) / streams, "tokens_per_s": tokens / (end - start),
            "text": results[0]["text"]}


class FirstToken:
    """A `generate` streamer that notes when the first new token arrives."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:  # the first call carries the prompt
            self.first = time.perf_counter()

    def end(self):
        pass


def transformers_run(model, tokenizer, streams: int) -> dict:
    import torch

    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = prompt["input_ids"].repeat(streams, 1)
    mask = prompt["attention_mask"].repeat(streams, 1)
    streamer = FirstToken()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, streamer=streamer if streams == 1 else None,
                             pad_token_id=tokenizer.pad_token_id or 0)
    end = time.perf_counter()
    new = out[:, ids.shape[1]:]
    assert new.shape[1] == NEW_TOKENS
    if streams > 1:
        # A batch's first tokens come out together after one prefill: time a one-token run.
        start1 = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=1,
                           pad_token_id=tokenizer.pad_token_id or 0)
        ttft = time.perf_counter() - start1
    else:
        ttft = streamer.first - start
    return {"ttft": ttft, "tokens_per_s": streams * NEW_TOKENS / (end - start),
            "text": tokenizer.decode(new[0], skip_special_tokens=True), "ids": new[0].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case; the fastest is kept")
    args = parser.parse_args()
    if not TRAINER.is_file():
        sys.exit(f"{TRAINER} is missing: run `cargo build --release -p anneal-trainer` first")

    import torch
    import transformers
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    torch.set_num_threads(2)
    model = Qwen2ForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(MODEL)

    server = subprocess.Popen([str(TRAINER), "serve", "--model", str(MODEL), "--host", "127.0.0.1", "--port", "0",
                               "--device", "cpu", "--max-running", str(STREAMS)],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        base = "http://" + line.split(" on http://")[1].split()[0]
        threading.Thread(target=server.stderr.read, daemon=True).start()

        ours = anneal_run(base, 1)
        theirs = transformers_run(model, tokenizer, 1)
        check = tokenizer.decode(theirs["ids"][:CHECK_TOKENS], skip_special_tokens=True)
        if not ours["text"].startswith(check):
            sys.exit(f"the greedy replies differ within {CHECK_TOKENS} tokens:\n anneal: {ours['text']!r}\n transformers: {theirs['text']!r}")
        same = "identical" if ours["text"] == theirs["text"] else f"the same first {CHECK_TOKENS} tokens"

        rows = {}
        for streams in (1, STREAMS):
            best = {}
            for _ in range(args.repeat):
                # Alternate, so a busy moment on the machine hurts both alike.
                for name, run in (("anneal", lambda: anneal_run(base, streams)),
                                  ("transformers", lambda: transformers_run(model, tokenizer, streams))):
                    result = run()
                    kept = best.get(name)
                    if kept is None or result["tokens_per_s"] > kept["tokens_per_s"]:
                        best[name] = result
                    if kept is not None:
                        best[name]["ttft"] = min(best[name]["ttft"], result["ttft"], kept["ttft"])
            rows[streams] = best
    finally:
        server.terminate()
        server.wait(timeout=30)

    load = os.getloadavg()[0]
    lines = [
        "## serving (CPU)",
        "",
        f"Command: `cargo build --release -p anneal-trainer && python3 benches/serve_cpu.py --write --repeat {args.repeat}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, 1-minute load average {load:.2f} at the end; fastest of {args.repeat} alternating runs each).",
        f"Model: examples/models/anneal-tiny (Qwen2, 1M parameters, f32). One chat prompt, greedy, {NEW_TOKENS} new tokens per reply "
        "(Anneal with `ignore_eos`, transformers with `min_new_tokens`). Greedy replies before timing: " + same + ".",
        "Anneal: `trainer serve` over HTTP with streamed server-sent events, measured by a Python client; "
        f"{STREAMS} streams are {STREAMS} concurrent requests, decoded together by the engine (batched linear layers, attention per request). "
        f"transformers {transformers.__version__} (torch {torch.__version__}, 2 threads, sdpa): `generate` in process; "
        f"{STREAMS} streams are one batch of {STREAMS}. TTFT for the batch is a 1-token `generate` of the batch.",
        "",
        "| streams | implementation | TTFT (ms) | tokens/s |",
        "|---|---|---|---|",
    ]
    for streams, best in rows.items():
        for name in ("anneal", "transformers"):
            r = best[name]
            lines.append(f"| {streams} | {name} | {r['ttft'] * 1000:.1f} | {r['tokens_per_s']:.0f} |")
    lines.append("")
    for streams, best in rows.items():
        a, t = best["anneal"], best["transformers"]
        lines.append(f"Ratio at {streams} stream{'s' if streams > 1 else ''} (Anneal / transformers): "
                     f"**{a['tokens_per_s'] / t['tokens_per_s']:.2f}x** tokens/s, **{a['ttft'] / t['ttft']:.2f}x** TTFT (lower is better).")
        lines.append("")
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("## serving (CPU)", section)


if __name__ == "__main__":
    main()
