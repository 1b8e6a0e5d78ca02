#!/usr/bin/env python3
"""Make anneal-tiny, the small chat model bundled for Anneal's quick start and tests.

Run from the repository root (about 20 minutes on one CPU core):

    python -m venv /tmp/tinyvenv
    /tmp/tinyvenv/bin/pip install -r scripts/tiny_model/requirements.txt
    /tmp/tinyvenv/bin/python scripts/tiny_model/make_tiny_model.py

Steps, each a function below:

 1. Generate the corpus (corpus.py: original template text, ~40% ChatML chats)
    and hold out 2% of its documents for evaluation.
 2. Train a byte-level BPE tokenizer on it (Qwen2 pre-tokenizer: NFC + Qwen2's
    split regex + ByteLevel), 2045 regular tokens plus the specials
    <|endoftext|>, <|im_start|>, <|im_end|> appended as ids 2045..2047, no BOS.
 3. Pretrain a Qwen2ForCausalLM from scratch (hidden 128, 4 layers, 4 heads,
    2 kv heads, tied embeddings; ~1.0M parameters) with AdamW, linear warmup
    and cosine decay on packed 256-token sequences.
 4. Save it to examples/models/anneal-tiny/ in float32 with a transformers-4.x
    layout (top-level rope_theta in config.json, chat_template inside
    tokenizer_config.json), check that transformers loads it back identically,
    print greedy generations and write the model card.

Everything is seeded and runs with deterministic algorithms on CPU, so a rerun
on the same software versions and thread count gives the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "examples" / "models" / "anneal-tiny"
MAX_FOLDER_BYTES = 6 * 1024 * 1024

SEED = 1234
# One thread by default: on the shared 2-core build machines a second OpenMP
# thread makes each step several times slower whenever another process holds a
# core (measured: 0.83 s vs 5.4 s per step), and the thread count changes the
# floating-point summation order, so it is part of what makes a run reproducible.
THREADS = 1
HELDOUT_FRACTION = 0.02

# Tokenizer.
VOCAB_SIZE = 2048
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ENDOFTEXT, IM_START, IM_END = SPECIALS
# Qwen2's pre-tokenizer. transformers 5's Qwen2Tokenizer rebuilds exactly this
# pipeline (NFC + this regex + ByteLevel) instead of reading it from
# tokenizer.json, so tokenizer.json must use the same one for transformers and
# the Rust `tokenizers` crate to agree.
QWEN_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# ChatML, written for Anneal: Qwen2.5-Instruct semantics (default system prompt).
CHAT_TEMPLATE = (
    "{%- if messages | length == 0 or messages[0]['role'] != 'system' -%}\n"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n"
)

# Model.
MODEL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)

# Training.
SEQ_LEN = 256
BATCH_SIZE = 8
STEPS = 2400
PEAK_LR = 3e-3
MIN_LR_RATIO = 0.1
WARMUP_STEPS = 150
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0
LOG_POINTS = 10  # log train and held-out loss every STEPS / LOG_POINTS steps

# Demonstration prompts: greedy, max_new_tokens 40.
MAX_NEW_TOKENS = 40
CHAT_PROMPTS = [
    "How do I fix a flat tyre on my bike?",
    "Can I take a bike on the tram?",
    "When should I plant tomatoes?",
    "What should I cook for dinner tonight?",
    "My order has not arrived yet. What can I do?",
]
RAW_PROMPTS = [
    "On Saturday morning, Anna",
    "The forecast for Riverton",
    "How to make a vegetable soup",
]


# --------------------------------------------------------------------------- setup


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output model folder")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="packed sequences per step")
    parser.add_argument("--corpus-bytes", type=int, default=corpus.DEFAULT_TARGET_BYTES)
    parser.add_argument("--corpus-seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--seed", type=int, default=SEED, help="seed for weights and data order")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch CPU threads (changes the numbers)")
    return parser.parse_args()


def set_determinism(seed: int, threads: int) -> None:
    """Fixed seeds, deterministic kernels, a fixed thread count."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    transformers.set_seed(seed)


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- data


def split_documents(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last `fraction` of the (already shuffled) documents."""
    n_heldout = max(1, round(len(documents) * fraction))
    return documents[:-n_heldout], documents[-n_heldout:]


def special_free_pieces(documents: list[str]):
    """Yield document text with the special tokens cut out, for BPE training:
    specials are added tokens and must not take part in merges."""
    for doc in documents:
        for part in doc.replace(IM_START, IM_END).split(IM_END):
            if part:
                yield part


def train_tokenizer(documents: list[str]) -> Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenizer; specials appended after the BPE vocab."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIALS),
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(special_free_pieces(documents), trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def special_ids(tok: Tokenizer) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIALS}


def tokenize_documents(tok: Tokenizer, documents: list[str]) -> list[list[int]]:
    """Token ids of each document, followed by <|endoftext|>."""
    eot = tok.token_to_id(ENDOFTEXT)
    return [encoding.ids + [eot] for encoding in tok.encode_batch(documents, add_special_tokens=False)]


def pack_training_rows(docs: list[list[int]], seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch of [n, seq_len] rows: documents in a fresh seeded order, packed back to
    back, and every row starts at a document (as prompts and SFT samples do), so the
    document that overflows a row is cut there. The cut moves from epoch to epoch."""
    rows: list[list[int]] = []
    row: list[int] = []
    for i in torch.randperm(len(docs), generator=generator).tolist():
        row.extend(docs[i])
        if len(row) >= seq_len:
            rows.append(row[:seq_len])
            row = []
    return torch.tensor(rows, dtype=torch.long)


def pack_eval_rows(docs: list[list[int]], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) rows that hold whole documents (long ones split), padded at the
    end with labels -100, so that every token is scored exactly once."""
    pieces = [doc[i : i + seq_len] for doc in docs for i in range(0, len(doc), seq_len)]
    rows: list[list[int]] = []
    row: list[int] = []
    for piece in pieces:
        if len(row) + len(piece) > seq_len:
            rows.append(row)
            row = []
        row = row + piece
    rows.append(row)
    inputs = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), -100, dtype=torch.long)
    for r, ids in enumerate(rows):
        inputs[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(ids)] = torch.tensor(ids)
    return inputs, labels


# --------------------------------------------------------------------------- model and training


def build_model(ids: dict[str, int]) -> Qwen2ForCausalLM:
    """A freshly initialized Qwen2 (transformers' own init, seeded by the caller)."""
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
        attn_implementation="sdpa",
        **MODEL_SHAPE,
    )
    return Qwen2ForCausalLM(config)


def make_optimizer(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=PEAK_LR, betas=BETAS, eps=1e-8, foreach=False)


def learning_rate(step: int, total: int) -> float:
    """Linear warmup to PEAK_LR, then cosine decay to MIN_LR_RATIO * PEAK_LR."""
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS)
    return PEAK_LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def batches(docs: list[list[int]], batch_size: int, generator: torch.Generator):
    """Endless stream of [batch_size, SEQ_LEN] batches, re-packed and shuffled each epoch."""
    while True:
        rows = pack_training_rows(docs, SEQ_LEN, generator)
        order = torch.randperm(rows.size(0), generator=generator)
        for start in range(0, order.numel() - batch_size + 1, batch_size):
            yield rows[order[start : start + batch_size]]


@torch.no_grad()
def evaluate(model: torch.nn.Module, heldout: tuple[torch.Tensor, torch.Tensor], batch_size: int = 32) -> float:
    """Mean next-token loss over every scored token of the held-out rows."""
    inputs, labels = heldout
    model.eval()
    total, count = 0.0, 0
    for start in range(0, inputs.size(0), batch_size):
        rows, targets = inputs[start : start + batch_size], labels[start : start + batch_size]
        loss = model(input_ids=rows, labels=targets).loss
        n = int((targets[:, 1:] != -100).sum())
        total += loss.item() * n
        count += n
    model.train()
    return total / count


def train(model: torch.nn.Module, train_docs: list[list[int]], heldout: tuple[torch.Tensor, torch.Tensor],
          steps: int, batch_size: int, seed: int) -> list[dict]:
    """Pretrain; return the loss curve (train loss averaged since the last point, held-out loss)."""
    optimizer = make_optimizer(model)
    generator = torch.Generator().manual_seed(seed)
    stream = batches(train_docs, batch_size, generator)
    log_every = max(1, steps // LOG_POINTS)
    curve = [{"step": 0, "train_loss": None, "heldout_loss": evaluate(model, heldout), "lr": 0.0}]
    log(f"  step {0:5d}  held-out {curve[0]['heldout_loss']:.3f}")
    model.train()
    running, seen = 0.0, 0
    started = time.time()
    for step in range(steps):
        lr = learning_rate(step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = next(stream)
        loss = model(input_ids=rows, labels=rows).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        running += loss.item()
        seen += 1
        if (step + 1) % log_every == 0 or step + 1 == steps:
            point = {"step": step + 1, "train_loss": running / seen, "heldout_loss": evaluate(model, heldout), "lr": lr}
            curve.append(point)
            elapsed = time.time() - started
            log(f"  step {step + 1:5d}  train {point['train_loss']:.3f}  held-out {point['heldout_loss']:.3f}  "
                f"lr {lr:.2e}  {elapsed:6.0f}s")
            running, seen = 0.0, 0
    return curve


# --------------------------------------------------------------------------- saving


def write_json(path: Path, obj) -> None:
    """Stable JSON: 2-space indent, UTF-8, trailing newline."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer_files(tok: Tokenizer, out: Path) -> None:
    """tokenizer.json plus a transformers-4.x tokenizer_config.json holding the chat template."""
    tok.save(str(out / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
        for t in SPECIALS
    }
    write_json(out / "tokenizer_config.json", {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": MODEL_SHAPE["max_position_embeddings"],
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    })


def legacy_config(saved: dict) -> dict:
    """Rewrite a transformers-5 config.json into the 4.x layout most Hub checkpoints use:
    top-level rope_theta and rope_scaling, torch_dtype, no rope_parameters or layer_types."""
    rope = saved["rope_parameters"]
    assert rope.get("rope_type", "default") == "default", rope
    config = {k: v for k, v in saved.items() if k not in ("rope_parameters", "layer_types", "dtype")}
    config["rope_theta"] = rope["rope_theta"]
    config["rope_scaling"] = None
    config["torch_dtype"] = saved["dtype"]
    config["max_window_layers"] = config["num_hidden_layers"]
    return dict(sorted(config.items()))


def write_model_files(model: Qwen2ForCausalLM, ids: dict[str, int], out: Path) -> None:
    """model.safetensors in float32 (stop if it would not fit the folder budget; the
    brief's fallback is bfloat16), config.json in the 4.x layout, and
    generation_config.json that stops on both end tokens."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        saved = json.loads((Path(tmp) / "config.json").read_text())
        shutil.copyfile(Path(tmp) / "model.safetensors", out / "model.safetensors")
    if (out / "model.safetensors").stat().st_size > MAX_FOLDER_BYTES - 512 * 1024:
        raise SystemExit("float32 weights do not fit the size budget: switch to bfloat16")
    write_json(out / "config.json", legacy_config(saved))
    write_json(out / "generation_config.json", {
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": [ids[IM_END], ids[ENDOFTEXT]],
        "pad_token_id": ids[ENDOFTEXT],
        "transformers_version": transformers.__version__,
    })


def verify_saved(model: Qwen2ForCausalLM, tok: Tokenizer, out: Path) -> None:
    """Load the folder with transformers and check it matches what was trained:
    config fields, identical logits, identical tokenization, chat template output."""
    loaded = AutoModelForCausalLM.from_pretrained(out, attn_implementation="sdpa").eval()
    assert loaded.config.rope_parameters["rope_theta"] == MODEL_SHAPE["rope_theta"], loaded.config.rope_parameters
    assert loaded.config.tie_word_embeddings and loaded.dtype == torch.float32
    assert loaded.config.to_dict()["rope_parameters"] == model.config.to_dict()["rope_parameters"]
    probe = torch.tensor([tok.encode("<|im_start|>user\nHello!<|im_end|>\nThe chain needs oil.").ids])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(probe).logits, loaded(probe).logits), "saved model differs from trained model"

    hf_tok = AutoTokenizer.from_pretrained(out)
    for text in ["Hello, world! It's 18 degrees.\n\n  Two  spaces.", "Café naïve — 東京 🚲", "<|im_start|>user\nhi<|im_end|>\n"]:
        assert hf_tok(text)["input_ids"] == tok.encode(text).ids, f"transformers tokenizes {text!r} differently"
    rendered = hf_tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    expected = f"{IM_START}system\n{corpus.DEFAULT_SYSTEM}{IM_END}\n{IM_START}user\nHi{IM_END}\n{IM_START}assistant\n"
    assert rendered == expected, rendered
    assert hf_tok.eos_token == IM_END and hf_tok.bos_token is None and hf_tok.pad_token == ENDOFTEXT


def folder_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.iterdir() if p.is_file())


# --------------------------------------------------------------------------- demonstration


def generate_samples(out: Path, seed: int) -> list[dict]:
    """Greedy (and one seeded sampled) continuation per prompt, from the saved folder."""
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    samples = []
    prompts = [("chat", p) for p in CHAT_PROMPTS] + [("raw", p) for p in RAW_PROMPTS]
    for kind, prompt in prompts:
        if kind == "chat":
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        else:
            text = prompt
        input_ids = torch.tensor([tokenizer(text)["input_ids"]])
        result = {"kind": kind, "prompt": prompt}
        for mode, kwargs in (("greedy", dict(do_sample=False)), ("sampled", dict(do_sample=True, temperature=0.7, top_p=0.9))):
            torch.manual_seed(seed)
            with torch.no_grad():
                output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=MAX_NEW_TOKENS, **kwargs)
            result[mode] = tokenizer.decode(output[0, input_ids.size(1):], skip_special_tokens=True)
        samples.append(result)
        log(f"[{kind}] {prompt!r}\n  greedy:  {result['greedy']!r}\n  sampled: {result['sampled']!r}")
    return samples


def format_loss(loss: float | None) -> str:
    return "" if loss is None else f"{loss:.3f}"


def write_model_card(out: Path, stats: dict, curve: list[dict], samples: list[dict]) -> None:
    """README.md: what the model is, how it was made, its losses and sample outputs."""
    curve_rows = "\n".join(
        f"| {p['step']} | {format_loss(p['train_loss'])} | {p['heldout_loss']:.3f} |" for p in curve
    )
    sample_rows = "\n\n".join(
        f"**{'Chat' if s['kind'] == 'chat' else 'Text'}:** `{s['prompt']}`\n\n"
        f"- greedy: `{s['greedy'].strip()}`\n- sampled (T=0.7, top-p 0.9): `{s['sampled'].strip()}`"
        for s in samples
    )
    ids = stats["special_ids"]
    text = f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [anneal, tiny, qwen2, test-model]
---

# anneal-tiny

A very small chat model (Qwen2 architecture, {stats['parameters']:,} parameters, float32)
bundled with [Anneal](../../../README.md) for the local quick start and the test suite.
It exists so that `trainer train` can run a real LoRA fine-tune on 2 CPU cores in a few
minutes. It writes plain English about bikes, city travel, cooking, weather, gardening,
animals and customer support, and answers chat questions in one to three sentences, but
it was trained on template text only: it mostly reproduces sentences it has seen, and it
has no knowledge worth relying on. **For the quick start and tests only.**

## Format

Hugging Face `transformers` folder in the 4.x layout (checked with transformers 4.57 and 5.23):
`config.json` (`Qwen2ForCausalLM`, top-level `rope_theta`), `model.safetensors`,
`tokenizer.json`, `tokenizer_config.json` (with `chat_template`), `generation_config.json`.

| field | value |
|---|---|
| hidden / intermediate | 128 / 352 |
| layers / heads / kv heads | 4 / 4 / 2 (head dim 32) |
| vocab | 2048 (tokenizer and embedding) |
| max positions | 1024 |
| rope_theta / rms_norm_eps | 10000 / 1e-6 |
| tie_word_embeddings | true |

Tokenizer: byte-level BPE with Qwen2's pre-tokenizer (NFC, Qwen2 split regex, ByteLevel),
no BOS. Special tokens: `<|endoftext|>` = {ids[ENDOFTEXT]}, `<|im_start|>` = {ids[IM_START]},
`<|im_end|>` = {ids[IM_END]}. End of turn is `<|im_end|>` (`eos_token_id`);
`generation_config.json` stops on `[{ids[IM_END]}, {ids[ENDOFTEXT]}]`.
Chat template: ChatML, `<|im_start|>{{role}}\\n{{content}}<|im_end|>\\n` per message, with the
system message "You are a helpful assistant." inserted when the first message is not a
system message; generation prompt `<|im_start|>assistant\\n`.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("examples/models/anneal-tiny")
model = AutoModelForCausalLM.from_pretrained("examples/models/anneal-tiny")
ids = tok.apply_chat_template([{{"role": "user", "content": "When should I plant tomatoes?"}}],
                              add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=40, do_sample=False)
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
```

## How it was made

```
python scripts/tiny_model/make_tiny_model.py
```

(packages pinned in `scripts/tiny_model/requirements.txt`; torch {torch.__version__},
transformers {transformers.__version__}, tokenizers {tokenizers.__version__}; {stats['threads']} CPU
{'thread' if stats['threads'] == 1 else 'threads'}, deterministic algorithms, seed {stats['seed']};
{stats['wall_minutes']:.1f} minutes on a 2-core machine.)

- **Corpus**: generated by `scripts/tiny_model/corpus.py` (seed {stats['corpus_seed']}), all text
  written for Anneal from templates with slot fillers, no external data:
  {stats['documents']:,} documents, {stats['corpus_bytes']:,} bytes; {stats['chat_share']:.0%} of the bytes are
  ChatML conversations with plain one-to-three-sentence answers, the rest short stories,
  recipes, growing guides, weather reports, support chats, FAQs, notes and town guides.
  {stats['heldout_documents']} documents (2%) are held out.
- **Tokenizer**: trained on the corpus with the `tokenizers` library
  (2045 BPE tokens + 3 specials).
- **Pretraining**: from scratch, AdamW (betas {BETAS}, weight decay {WEIGHT_DECAY} on matrices),
  peak learning rate {PEAK_LR} with {WARMUP_STEPS} warmup steps and cosine decay to {PEAK_LR * MIN_LR_RATIO:g},
  gradient clipping {GRAD_CLIP}, {stats['steps']} steps of {stats['batch_size']} packed
  {SEQ_LEN}-token sequences ({stats['train_tokens']:,} training tokens, about
  {stats['epochs']:.1f} passes over the corpus). Documents end with `<|endoftext|>`; every
  sequence starts at a document and the documents are re-shuffled and re-packed each
  epoch. Loss is next-token cross-entropy on all tokens (nats).

| step | train loss | held-out loss |
|---|---|---|
{curve_rows}

Final held-out loss: **{curve[-1]['heldout_loss']:.3f}** on {stats['heldout_tokens']:,} tokens. The loss is
this low because the corpus is template text: the held-out documents are new combinations
of the same sentences.

## Sample outputs

Greedy decoding, `max_new_tokens={MAX_NEW_TOKENS}`; chat prompts are a single user message
rendered with the chat template and `add_generation_prompt=True`.

{sample_rows}

## License

Apache-2.0, as the Anneal project. The corpus, tokenizer and weights were all produced by
the script above from text written for the project.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    started = time.time()
    set_determinism(args.seed, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    log("1/4 corpus")
    documents = corpus.generate_documents(args.corpus_seed, args.corpus_bytes)
    train_docs, heldout_docs = split_documents(documents, HELDOUT_FRACTION)
    corpus_bytes = sum(len(d.encode("utf-8")) for d in documents)
    chat_bytes = sum(len(d.encode("utf-8")) for d in documents if corpus.is_chat(d))
    log(f"  {len(documents)} documents, {corpus_bytes} bytes, {chat_bytes / corpus_bytes:.0%} chat, "
        f"{len(heldout_docs)} held out")

    log("2/4 tokenizer")
    tok = train_tokenizer(documents)
    ids = special_ids(tok)
    train_ids = tokenize_documents(tok, train_docs)
    heldout = pack_eval_rows(tokenize_documents(tok, heldout_docs), SEQ_LEN, ids[ENDOFTEXT])
    train_tokens = sum(len(d) for d in train_ids)
    heldout_tokens = int((heldout[1][:, 1:] != -100).sum())
    log(f"  special ids {ids}; {train_tokens} train tokens "
        f"({corpus_bytes / (train_tokens + heldout_tokens + heldout[0].size(0)):.2f} bytes/token), "
        f"{heldout_tokens} scored held-out tokens")

    log("3/4 pretraining")
    torch.manual_seed(args.seed)
    model = build_model(ids)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"  {parameters} parameters, {args.steps} steps x {args.batch_size} x {SEQ_LEN} tokens")
    curve = train(model, train_ids, heldout, args.steps, args.batch_size, args.seed)

    log("4/4 save, verify, generate")
    for stale in args.out.iterdir():
        if stale.is_file():
            stale.unlink()
    write_tokenizer_files(tok, args.out)
    write_model_files(model, ids, args.out)
    verify_saved(model, tok, args.out)
    samples = generate_samples(args.out, args.seed)
    stats = {
        "parameters": parameters, "seed": args.seed, "threads": args.threads, "corpus_seed": args.corpus_seed,
        "documents": len(documents), "heldout_documents": len(heldout_docs),
        "corpus_bytes": corpus_bytes, "chat_share": chat_bytes / corpus_bytes,
        "steps": args.steps, "batch_size": args.batch_size,
        "train_tokens": args.steps * args.batch_size * SEQ_LEN,
        "epochs": args.steps * args.batch_size * SEQ_LEN / train_tokens,
        "heldout_tokens": heldout_tokens, "special_ids": ids,
        "wall_minutes": (time.time() - started) / 60,
    }
    write_model_card(args.out, stats, curve, samples)
    size = folder_size(args.out)
    assert size < MAX_FOLDER_BYTES, f"{args.out} is {size} bytes"
    log(f"done in {stats['wall_minutes']:.1f} min: {args.out} ({size} bytes)")


if __name__ == "__main__":
    main()
