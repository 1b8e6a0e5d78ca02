#!/usr/bin/env python3
"""A soak of `trainer serve` on the CPU: mixed traffic for many minutes, and the
server's memory at the end against the start (goal: within 10%).

Workers (threads) send, in a seeded random mix: whole replies, streamed replies read to
the end, streams the client leaves after two events, prompts too long for the context
(tokenized, then refused with 400), malformed bodies, and connections that send half a
request head and wait (cut by the header timeout). The server's resident memory is
read from /proc every few seconds; "start" is after a warm-up minute, "end" after the
traffic stops and the server has been idle for 10 s.

Standard library only. Prints a Markdown section; --write replaces the "serving soak
(CPU)" section of benches/RESULTS.md.

    cargo build --release -p anneal-trainer --bin trainer
    python3 benches/serve_soak.py [--minutes 20] [--workers 6] [--write]
"""
import argparse
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "anneal-tiny"
SECTION = "## serving soak (CPU)"
KINDS = ["whole", "stream", "leave-stream", "too-long", "malformed", "half-head"]
WEIGHTS = [30, 30, 15, 10, 10, 5]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def chat(stream: bool, content: str, max_tokens: int) -> bytes:
    return json.dumps({
        "model": "anneal-tiny", "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens, "temperature": 0.8, "stream": stream,
    }).encode()


def one_request(host: str, port: int, kind: str, rng: random.Random) -> str:
    """Sends one request of `kind`; returns what came of it (a status or an outcome)."""
    if kind == "half-head":
        with socket.create_connection((host, port), timeout=60) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\n")
            sock.settimeout(60)
            try:
                cut = sock.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                cut = True
            return "cut by the server" if cut else "answered"
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        if kind == "malformed":
            body = b'{"model": "anneal-tiny", "messages": [{"role": "user"'
        elif kind == "too-long":
            body = chat(False, "wind " * rng.randint(3000, 20000), 16)
        else:
            body = chat(kind != "whole", f"Question {rng.randint(0, 10**6)}: what about the wind?",
                        rng.randint(8, 64))
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if kind == "leave-stream" and response.status == 200:
            response.readline()
            response.readline()
            connection.sock.close()  # the client leaves mid-stream
            return "left mid-stream"
        response.read()
        return str(response.status)
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--trainer", type=Path, default=ROOT / "target" / "release" / "trainer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    server = subprocess.Popen(
        [str(args.trainer), "serve", "--model", str(MODEL), "--host", "127.0.0.1", "--port", "0",
         "--device", "cpu", "--header-timeout-seconds", "5"],
        stderr=subprocess.PIPE, text=True)
    address = None
    for line in server.stderr:
        match = re.search(r" on http://([^/]+)/v1", line)
        if match:
            address = match.group(1)
            break
    if address is None:
        sys.exit("trainer serve did not start")
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    host, port = address.rsplit(":", 1)
    port = int(port)

    outcomes = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + 60 + args.minutes * 60
    samples = []

    def worker(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() < stop_at:
            kind = rng.choices(KINDS, WEIGHTS)[0]
            try:
                result = one_request(host, port, kind, rng)
            except (OSError, http.client.HTTPException) as error:
                result = f"client error {type(error).__name__}"
            with lock:
                outcomes[(kind, result)] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(60)
    start_rss = rss_mib(server.pid)
    while time.monotonic() < stop_at:
        samples.append(rss_mib(server.pid))
        time.sleep(5)
    for thread in threads:
        thread.join(timeout=180)
    time.sleep(10)
    end_rss = rss_mib(server.pid)
    health = http.client.HTTPConnection(host, port, timeout=10)
    health.request("GET", "/health")
    healthy = health.getresponse().status
    server.terminate()
    server.wait(timeout=120)
    elapsed = time.monotonic() - started

    total = sum(outcomes.values())
    rows = [f"| {kind} | {result} | {count} |" for (kind, result), count in sorted(outcomes.items())]
    ratio = end_rss / start_rss
    command = f"python3 benches/serve_soak.py --minutes {args.minutes:g} --workers {args.workers}"
    section = "\n".join([
        SECTION,
        "",
        f"Command: `cargo build --release -p anneal-trainer --bin trainer && {command} --write` "
        f"({time.strftime('%Y-%m-%d')}, {elapsed / 60:.1f} minutes in all, a minute of warm-up first).",
        f"`trainer serve` ({args.trainer.relative_to(ROOT) if args.trainer.is_relative_to(ROOT) else args.trainer}) "
        f"on the bundled tiny model, CPU, `--header-timeout-seconds 5`; {args.workers} client "
        "threads, seeded mix of whole and streamed replies, streams left after two events, prompts "
        "past the context, malformed bodies and half-sent request heads.",
        "",
        "| kind | outcome | requests |",
        "|---|---|---|",
        *rows,
        "",
        f"{total} requests. Server RSS: {start_rss:.1f} MiB after the warm-up, {max(samples or [start_rss]):.1f} MiB "
        f"at most under load, {end_rss:.1f} MiB after 10 s idle at the end: **{ratio:.2f}x** the start "
        f"(goal: within 10%). `/health` after the soak: {healthy}.",
        "",
    ])
    print(section)
    if args.write:
        write_section(SECTION, section)
    sys.exit(0 if healthy == 200 and ratio <= 1.10 else 1)


if __name__ == "__main__":
    main()
