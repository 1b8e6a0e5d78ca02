#!/usr/bin/env python3
"""Training at a real model's shape on the CPU: `trainer train` (the release binary, a
generated FineTuneJob and JSONL dataset, `--device cpu`) against transformers + PEFT
with gradient checkpointing, on one random-weight Qwen2.5-0.5B-shaped checkpoint
saved in bf16 and the same chats.

Three measurements, one table each:
- the comparison: ~1,000-token chats, batch 2, LoRA r8 on all 7 projections, AdamW:
  tokens/s and peak RSS of each side;
- `trainer train`'s peak RSS at 512, 1,024, 2,048 and 4,096 tokens (is it linear?);
- `trainer plan --cpu-memory`'s predicted peak against the measured one at the three
  longest of those lengths.

Each side runs in its own process; peak RSS is that process's VmHWM. A
run whose RSS passes --max-rss-gib (default: 80% of the memory available at the
start) is killed and reported as such, so a shape that does not fit cannot take the
machine down. tokens/s counts input positions (batch x sequence length, padding
included) per second of the timed steps; the trainer's first step is its warm-up,
PEFT runs one warm-up step too.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -r benches/requirements.txt
    cargo build --release -p anneal-trainer --bin trainer
    nice /tmp/refvenv/bin/python benches/scale_cpu.py [--quick] [--write]

--quick runs a small shape at short lengths (a minute or two): the script's own check.
--shape wide-vocab or long-attention (with --quick) measure the memory plan's two
phases apart: a small body with Qwen's 152k vocabulary, where the loss's logits
dominate, and a small body with 14 heads at long lengths, where attention's scores
do (benches/RESULTS.md, "memory plan on the CPU").
scripts/gpu/check.sh imports the helpers here for its benchmark beside PEFT on a GPU.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_cpu import write_section  # noqa: E402  (one RESULTS.md writer for every bench)

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "models" / "anneal-tiny"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = dict(rank=8, alpha=16, dropout=0.05)
LEARNING_RATE = 1e-4
SECTION = "## scale: a 0.5B shape (CPU)"

_COMMON = dict(rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=32768)
SHAPES = {
    # Qwen2.5-0.5B-Instruct's config (head_dim 896 / 14 = 64).
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, **_COMMON),
    # Qwen2.5-7B-Instruct's config (head_dim 3584 / 28 = 128); scripts/gpu/check.sh.
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                       tie_word_embeddings=False, **_COMMON),
    # --quick: the same head_dim and GQA ratio, small enough for seconds a step.
    "quick": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=16384,
                  tie_word_embeddings=True, **_COMMON),
    # Calibrating the memory plan's parts: the logits with Qwen2.5's vocabulary on a
    # small body, and attention's scores on a small body and vocabulary at long lengths.
    "wide-vocab": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True, **_COMMON),
    "long-attention": dict(hidden_size=448, intermediate_size=1024, num_hidden_layers=2,
                           num_attention_heads=14, num_key_value_heads=2, vocab_size=4096,
                           tie_word_embeddings=True, **_COMMON),
}


def lora_flops_per_token(config: dict, tokens: int) -> float:
    """Model FLOPs per trained token of a LoRA step, recomputation not counted (MFU's
    numerator): the frozen matmuls' forward and input-gradient products (2 + 2 FLOPs
    per weight; no weight gradients), and attention's QK^T and AV forward and backward
    over the full square (12 x layers x hidden x tokens, as PaLM's appendix counts)."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * config["intermediate_size"]
    weights = layers * per_layer + hidden * config["vocab_size"]
    return 4 * weights + 12 * layers * hidden * tokens


def make_checkpoint(path: Path, config: dict, device: str = "cpu") -> None:
    """A Qwen2 checkpoint of `config`'s shape with transformers' random init, saved in
    bf16, and the tiny model's tokenizer (its 2,048 ids are valid in any vocabulary;
    random weights make the text's meaning irrelevant)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: a 7B f32 copy would double the memory
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(Qwen2Config(**config))
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(path, safe_serialization=True)
    del model
    if device == "cuda":
        # Else torch's allocator keeps the 15 GB cached in this process, and every GPU
        # peak measured against the baseline after it would carry them.
        torch.cuda.empty_cache()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TINY / name, path / name)


def make_chats(model_dir: Path, tokens: int, count: int) -> list:
    """`count` chats (a question, a long answer) of between tokens - 16 and `tokens`
    tokens each in the model's chat template, so maxTokens = `tokens` keeps them all.
    Returns (messages, ids, prompt_len) per chat: the ids PEFT trains on are the ones
    the trainer tokenizes to (the same tokenizer and template; chat_reference.rs holds
    the trainer to transformers' template)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    words = " ".join(json.loads(line)["messages"][-1]["content"]
                     for line in (ROOT / "examples/quickstart/house-style.jsonl").read_text().splitlines()).split()
    chats = []
    for index in range(count):
        question = [{"role": "user", "content": f"Question {index}: tell me everything about the weather."}]

        def encode(n_words: int) -> list:
            answer = " ".join(words[(index * 37 + i) % len(words)] for i in range(n_words))
            return question + [{"role": "assistant", "content": answer}]

        # Binary search on the answer's word count for the longest chat that fits.
        low, high = 1, tokens
        while low < high:
            middle = (low + high + 1) // 2
            if len(tok.apply_chat_template(encode(middle), tokenize=True, return_dict=False)) <= tokens:
                low = middle
            else:
                high = middle - 1
        messages = encode(low)
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
        prompt = tok.apply_chat_template(question, tokenize=True, add_generation_prompt=True, return_dict=False)
        assert tokens - 16 <= len(ids) <= tokens, (len(ids), tokens)
        chats.append((messages, ids, len(prompt)))
    return chats


def write_job(folder: Path, model_dir: Path, chats: list, max_tokens: int, batch: int, name: str) -> Path:
    """A FineTuneJob manifest and its JSONL dataset: one epoch of len(chats) / batch
    steps, no validation split, LoRA r8 on all 7 projections."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m, _, _ in chats))
    manifest = folder / "finetunejob.yaml"
    manifest.write_text(f"""apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata:
  name: {name}
spec:
  method: sft
  training: lora
  baseModel:
    name: {name}-base
    source: file://{model_dir}
  dataset:
    train: file://{data}
    validationSplit: 0
  hyperparameters:
    learningRate: {LEARNING_RATE}
    epochs: 1
    batchSize: {batch}
    gradientAccumulation: 1
    maxTokens: {max_tokens}
    lora:
      rank: {LORA['rank']}
      alpha: {LORA['alpha']}
      dropout: {LORA['dropout']}
      targetModules: [{', '.join(TARGET_MODULES)}]
""")
    return manifest


def watch(cmd: list, max_rss_mib: float, env=None, gpu: bool = False, max_seconds: float = None) -> dict:
    """Runs `cmd`, killing it if its RSS passes `max_rss_mib` or it runs past
    `max_seconds`; returns its exit code, stdout, wall seconds, peak RSS (MiB: the last
    VmHWM read, every 0.1 s) and, with `gpu`, the peak GPU memory in use above the
    baseline at its start (MiB, same sampling). Not wait4's ru_maxrss: Linux carries the
    parent's high-water mark into a child across exec, and this parent holds torch."""
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
    killed_at, timed_out, gpu_peak, hwm = None, False, 0.0, 0.0
    gpu_baseline = gpu_used_mib() if gpu else 0.0
    while True:
        if max_seconds is not None and not timed_out and time.monotonic() - started > max_seconds:
            timed_out = True
            process.kill()
        # wait4 rather than Popen.poll, which would also reap the child: the same, explicitly.
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        try:
            proc_status = Path(f"/proc/{process.pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", proc_status).group(1)) / 1024
            hwm = max(hwm, int(re.search(r"VmHWM:\s+(\d+)", proc_status).group(1)) / 1024)
        except (OSError, AttributeError):
            rss = 0.0
        if rss > max_rss_mib and killed_at is None:
            killed_at = rss
            process.kill()
        if gpu:
            gpu_peak = max(gpu_peak, gpu_used_mib() - gpu_baseline)
        time.sleep(0.1)
    out.seek(0)
    err.seek(0)
    return {"code": process.returncode, "stdout": out.read(), "stderr": err.read(),
            "seconds": time.monotonic() - started, "timed_out": timed_out,
            "peak_rss_mib": hwm, "killed_at_mib": killed_at, "gpu_peak_mib": gpu_peak}


def gpu_used_mib() -> float:
    """Memory in use on the first GPU. Not per process: in a container nvidia-smi lists
    processes by the host's pids, so the peak is taken over the baseline before the run
    (the benchmark is the GPU's only user)."""
    done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                          capture_output=True, text=True)
    try:
        return float(done.stdout.split()[0])
    except (IndexError, ValueError):
        return 0.0


def run_trainer(trainer: Path, manifest: Path, output: Path, device: str, max_rss_mib: float, env=None,
                exit_on_failure: bool = True, max_seconds: float = None) -> dict:
    """`trainer train MANIFEST --json`: peak RSS (and GPU memory on cuda), and the
    tokens/s of every step after the first, from its metrics events. A failed run ends
    the script unless `exit_on_failure` is off (a caller that reports it instead)."""
    run = watch([str(trainer), "train", str(manifest), "--device", device, "--json", "--output", str(output)],
                max_rss_mib, env=env, gpu=device == "cuda", max_seconds=max_seconds)
    rates = []
    for line in run["stdout"].splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("type") == "metrics" and "tokensPerSecond" in event:
            rates.append(event["tokensPerSecond"])
    run["step_tokens_per_second"] = rates
    timed = rates[1:] or rates
    run["tokens_per_second"] = sum(timed) / len(timed) if timed else float("nan")
    if run["code"] != 0 and run["killed_at_mib"] is None and exit_on_failure:
        sys.exit(f"trainer train {manifest} failed ({run['code']}):\n{run['stderr'][-4000:]}")
    return run


def plan_peak_gib(trainer: Path, manifest: Path) -> float:
    """`trainer plan --cpu-memory` of the manifest: its predicted peak in GiB (with
    ample memory, so the plan is for the micro-batch the run uses)."""
    done = subprocess.run([str(trainer), "plan", str(manifest), "--cpu-memory", "4096GiB"],
                          capture_output=True, text=True, cwd=ROOT)
    match = re.search(r"^\s*peak\s+([\d.]+) GiB", done.stdout, re.MULTILINE)
    if not match:
        sys.exit(f"trainer plan {manifest}: no peak in\n{done.stdout}{done.stderr}")
    return float(match.group(1))


def peft_worker(model_dir: str, spec_path: str) -> None:
    """transformers + PEFT with gradient checkpointing on spec's chats; one JSON line."""
    import peft
    import torch
    import torch.nn.functional as F
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2ForCausalLM

    spec = json.loads(Path(spec_path).read_text())
    device, dtype = spec["device"], getattr(torch, spec["dtype"])
    if device == "cpu":
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    base = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").to(device)
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.enable_input_require_grads()
    model = get_peft_model(base, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                            target_modules=TARGET_MODULES, bias="none", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    batch = spec["batch"]
    chats = spec["chats"]
    steps = len(chats) // batch
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    positions, start = 0, time.perf_counter()
    for step in range(steps):
        if step == 1:  # the first step is the warm-up
            sync()
            positions, start = 0, time.perf_counter()
        rows = chats[step * batch:(step + 1) * batch]
        length = max(len(ids) for ids, _ in rows) - 1
        inputs = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        for r, (ids, prompt) in enumerate(rows):
            ids = torch.tensor(ids)
            inputs[r, :len(ids) - 1] = ids[:-1]
            labels[r, :len(ids) - 1] = ids[1:]
            labels[r, :prompt - 1] = -100
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        positions += inputs.numel()
    sync()
    seconds = time.perf_counter() - start
    result = {"implementation": f"transformers {transformers.__version__} + PEFT {peft.__version__} "
                                f"(torch {torch.__version__}, {spec['dtype']}, sdpa, gradient checkpointing)",
              "tokens_per_second": positions / seconds, "loss": loss.item()}
    if device == "cuda":
        # torch's own figure, beside the nvidia-smi peak `watch` takes of both sides alike.
        result["torch_reserved_peak_mib"] = torch.cuda.max_memory_reserved() / 2**20
    print(json.dumps(result))


def run_peft(model_dir: Path, chats: list, batch: int, folder: Path, max_rss_mib: float,
             device: str = "cpu", dtype: str = "float32", max_seconds: float = None,
             exit_on_failure: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "peft-spec.json"
    spec.write_text(json.dumps({"device": device, "dtype": dtype, "batch": batch,
                                "chats": [[ids, prompt] for _, ids, prompt in chats]}))
    run = watch([sys.executable, __file__, "--worker", str(model_dir), str(spec)], max_rss_mib,
                gpu=device == "cuda", max_seconds=max_seconds)
    if run["killed_at_mib"] is not None or (run["code"] != 0 and not exit_on_failure):
        return {**run, "tokens_per_second": float("nan"), "implementation": "transformers + PEFT"}
    if run["code"] != 0:
        sys.exit(f"PEFT worker failed ({run['code']}):\n{run['stderr'][-4000:]}")
    return {**run, **json.loads(run["stdout"].strip().splitlines()[-1])}


def release_trainer() -> Path:
    trainer = ROOT / "target" / "release" / "trainer"
    if not trainer.exists():
        print("building the release trainer (cargo build --release -p anneal-trainer --bin trainer)", flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "anneal-trainer", "--bin", "trainer"], cwd=ROOT, check=True)
    return trainer


def rss_cell(run: dict) -> str:
    if run["killed_at_mib"] is not None:
        return f"killed at {run['killed_at_mib'] / 1024:.1f} GiB (over the cap)"
    return f"{run['peak_rss_mib'] / 1024:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a small shape at short lengths: the script's own check")
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md (not with --quick)")
    parser.add_argument("--trainer", type=Path, help="the trainer binary (default: target/release/trainer, built if missing)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps of the comparison, the first a warm-up")
    parser.add_argument("--max-rss-gib", type=float, help="kill a run above this RSS (default: 80%% of MemAvailable)")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="another shape than the benchmark's (with --quick: not written)")
    parser.add_argument("--lengths", type=int, nargs="+", help="the lengths of the peak-RSS table (default: 512 1024 2048 4096)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL_DIR", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        peft_worker(*args.worker)
        return
    if args.write and args.quick:
        sys.exit("--write records the full benchmark only")

    shape_name = args.shape or ("quick" if args.quick else "qwen2.5-0.5b")
    config = SHAPES[shape_name]
    lengths = args.lengths or ([64, 128, 256, 512] if args.quick else [512, 1024, 2048, 4096])
    compare_tokens, batch = (256, 2) if args.quick else (1024, 2)
    plan_lengths = lengths[-3:]
    trainer = (args.trainer or release_trainer()).resolve()
    available = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024
    max_rss_mib = args.max_rss_gib * 1024 if args.max_rss_gib else 0.8 * available
    threads = os.cpu_count()
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        print(f"checkpoint: {shape_name} {json.dumps(config)}, random, bf16", flush=True)
        make_checkpoint(model_dir, config)

        print(f"comparison: {batch} x ~{compare_tokens} tokens, {args.steps} steps", flush=True)
        chats = make_chats(model_dir, compare_tokens, batch * args.steps)
        job = write_job(tmp / "compare", model_dir, chats, compare_tokens, batch, "scale-compare")
        ours = run_trainer(trainer, job, tmp / "compare" / "runs", "cpu", max_rss_mib, env)
        load = max(load, os.getloadavg()[0])
        print(f"  trainer: {ours['tokens_per_second']:.1f} tokens/s {ours['step_tokens_per_second']}, "
              f"peak RSS (GiB): {rss_cell(ours)}", flush=True)
        theirs = run_peft(model_dir, chats, batch, tmp / "compare", max_rss_mib)
        load = max(load, os.getloadavg()[0])
        print(f"  PEFT: {theirs['tokens_per_second']:.1f} tokens/s, peak RSS (GiB): {rss_cell(theirs)}", flush=True)

        by_length = {}
        for tokens in lengths:
            if tokens == compare_tokens:
                by_length[tokens] = (ours, job)
                continue
            print(f"peak RSS at {tokens} tokens ({batch} chats, one step)", flush=True)
            folder = tmp / f"len-{tokens}"
            job_at = write_job(folder, model_dir, make_chats(model_dir, tokens, batch), tokens, batch, f"scale-{tokens}")
            by_length[tokens] = (run_trainer(trainer, job_at, folder / "runs", "cpu", max_rss_mib, env), job_at)
            load = max(load, os.getloadavg()[0])
            print(f"  peak RSS (GiB): {rss_cell(by_length[tokens][0])}", flush=True)
        plans = {tokens: plan_peak_gib(trainer, by_length[tokens][1]) for tokens in plan_lengths}

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"

    ours_gib, theirs_gib = ours["peak_rss_mib"] / 1024, theirs["peak_rss_mib"] / 1024
    length_rows = []
    base_tokens = lengths[0]
    base_rss = by_length[base_tokens][0]["peak_rss_mib"]
    for tokens in lengths:
        run = by_length[tokens][0]
        growth = "" if run["killed_at_mib"] is not None else f"{run['peak_rss_mib'] / base_rss:.2f}x"
        length_rows.append(f"| {tokens} | {rss_cell(run)} | {growth} | {tokens / base_tokens:.0f}x |")
    plan_rows = []
    for tokens in plan_lengths:
        run = by_length[tokens][0]
        measured = run["peak_rss_mib"] / 1024
        off = "" if run["killed_at_mib"] is not None else f"{(plans[tokens] - measured) / measured * 100:+.0f}%"
        plan_rows.append(f"| {tokens} | {plans[tokens]:.2f} | {rss_cell(run)} | {off} |")
    command = "nice /tmp/refvenv/bin/python benches/scale_cpu.py" + (" --quick" if args.quick else " --write")
    if args.steps != 3:
        command += f" --steps {args.steps}"
    if args.lengths:
        command += " --lengths " + " ".join(map(str, args.lengths))
    section = "\n".join([
        SECTION if not args.quick else "## scale: quick shape (CPU)",
        "",
        f"Command: `cargo build --release -p anneal-trainer --bin trainer && {command}` "
        f"({time.strftime('%Y-%m-%d')}, {threads} cores, 1-minute load average up to {load:.2f}; "
        f"runs killed above {max_rss_mib / 1024:.1f} GiB RSS).",
        "The trainer as of this run: fused chunked cross-entropy in chunks of at most 128 MiB of logits, "
        "making the hidden states' gradient in its forward pass, per-layer recomputation "
        "(`gradientCheckpointing`, on by default), attention as one tracked op keeping only q, k and v and "
        "recomputing one block of 128 query rows at a time in its backward pass, the MLP's SwiGLU as one "
        "tracked op keeping gate and up, matrix products through gemm's AVX-512 kernels, the exponentials "
        "of the softmaxes, SwiGLU and the loss in fused vectorized passes (`anneal_model::cpu_kernels`), "
        "freed tensor memory kept in the process for reuse (`trainer/src/heap.rs`), the decoder layers "
        "held in the checkpoint's bf16 and widened to f32 one product at a time, the embeddings and head "
        "in f32 (the CPU computes in f32), one host read per step.",
        f"Qwen2 shape `{shape_name}` with random weights saved in bf16: {json.dumps(config)}. "
        f"LoRA r{LORA['rank']} alpha {LORA['alpha']} dropout {LORA['dropout']} on all 7 projections, AdamW, "
        f"learning rate {LEARNING_RATE}, gradient clipping at 1.0. Chats of the quick start's words in the "
        "tokenizer of examples/models/anneal-tiny, each within 16 tokens of the length named.",
        f"`trainer train` (release, `--device cpu`, f32 compute, RAYON_NUM_THREADS={threads}) from a generated FineTuneJob "
        f"and JSONL file; transformers + PEFT in f32 with gradient checkpointing (non-reentrant), sdpa, "
        f"{threads} torch threads, on the same token ids. tokens/s: input positions per second, the first step "
        "left out as warm-up on both sides. Peak RSS: the whole process (its VmHWM, read every 0.1 s).",
        "",
        f"Comparison: batch {batch} x ~{compare_tokens} tokens, {args.steps} steps.",
        "",
        "| implementation | tokens/s | peak RSS (GiB) |",
        "|---|---|---|",
        f"| anneal `trainer train` (burn flex, f32) | {ours['tokens_per_second']:.1f} | {rss_cell(ours)} |",
        f"| {theirs['implementation']} | {theirs['tokens_per_second']:.1f} | {rss_cell(theirs)} |",
        "",
        f"Ratio (Anneal / PEFT): **{ratio(ours['tokens_per_second'], theirs['tokens_per_second'])}** tokens/s "
        f"(goal at least 1.0x), **{ratio(ours_gib, theirs_gib)}** peak RSS (goal at most 0.25x).",
        "",
        f"`trainer train`'s peak RSS by length (batch {batch}, one step; at {compare_tokens} the comparison's run):",
        "",
        f"| tokens | peak RSS (GiB) | RSS / RSS at {base_tokens} | tokens / {base_tokens} |",
        "|---|---|---|---|",
        *length_rows,
        "",
        "`trainer plan JOB.yaml --cpu-memory 4096GiB`'s peak against the measured one (goal: within 15%):",
        "",
        "| tokens | plan (GiB) | measured (GiB) | plan vs measured |",
        "|---|---|---|---|",
        *plan_rows,
        "",
    ])
    print(section)
    if args.write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
