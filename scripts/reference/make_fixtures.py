#!/usr/bin/env python3
"""Make Anneal's tiny reference checkpoints and the outputs Rust tests compare against.

Run by hand (never by CI), from the repository root:

    /tmp/refvenv/bin/python scripts/reference/make_fixtures.py

It writes, under trainer/tests/fixtures/reference/ (or --out):

  qwen2-tiny/   Qwen2ForCausalLM, random weights, float32, single model.safetensors,
                transformers 4.x layout (top-level rope_theta, chat_template inside
                tokenizer_config.json), Qwen-style byte-level BPE tokenizer.
  llama3-tiny/  LlamaForCausalLM, random weights, bfloat16, two safetensors shards
                plus model.safetensors.index.json, transformers 5.x layout
                (rope_parameters with llama3 scaling, chat_template.jinja),
                Llama-3-style tokenizer whose post-processor prepends <|begin_of_text|>.
  */reference.json  logits, greedy continuations, encodings and chat-template ids
                computed by transformers in float32 with eager attention.

Everything is seeded; running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "trainer" / "tests" / "fixtures" / "reference"

# Regular (non-special) BPE vocabulary: 256 byte symbols + merges. Chosen so that
# regular + special tokens is NOT a multiple of 64, so the padded config vocab is
# strictly larger than the tokenizer, as in real Qwen/Llama checkpoints.
BPE_VOCAB_SIZE = 490
VOCAB_MULTIPLE = 64

# Qwen2's pre-tokenizer. transformers 5's Qwen2Tokenizer ignores the normalizer
# and pre-tokenizer in tokenizer.json and rebuilds them (NFC + exactly this
# regex), so the Qwen-style tokenizer.json must use the same pipeline or
# transformers and the Rust `tokenizers` crate would disagree.
QWEN_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Our own GPT-4-style split for the Llama-3-style tokenizer (loaded verbatim by
# transformers): contractions, letter runs with one optional leading symbol,
# digits in groups of up to three, symbol runs, newline runs, and whitespace
# that leaves one space to attach to the next word.
LLAMA_SPLIT_REGEX = (
    r"""(?i:'(?:s|t|re|ve|m|ll|d))|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

# ChatML with Qwen2.5-Instruct semantics, written for Anneal.
QWEN_CHAT_TEMPLATE = (
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

# Llama-3-style header template, written for Anneal. It writes bos_token itself,
# as Llama 3's does, while the tokenizer's post-processor also prepends one.
LLAMA_CHAT_TEMPLATE = (
    "{{- bos_token -}}\n"
    "{%- for message in messages -%}\n"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}\n"
    "{{- message['content'] | trim -}}\n"
    "{{- '<|eot_id|>' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "{%- endif -%}\n"
)

QWEN_SEED = 1234
LLAMA_SEED = 5678
GREEDY_NEW_TOKENS = 12
MIN_TOP2_GAP = 1e-3

ENCODE_TEXTS = [
    "Hello, world! The bike's chain needs oil.",
    "Prices: 12345 apples, 3.14159 pies, and 2024-11-22 at 07:45.",
    "  two leading spaces\tand\ttabs\n\n\nthree newlines   and trailing   ",
    "Café naïve — 東京 🚲 it's 18°C ☔",
    "<|im_start|>user\nhi<|im_end|> <|eot_id|>plain <|begin_of_text|>",
]

FORWARD_TEXTS = [
    "Rain fell on the warm stone",
    "Oil the chain after rain.",
    "Warm the oil in a pot.",
]

GREEDY_TEXTS = [
    "The old bike leaned against",
    "In the rain, tyres hiss",
    "A good soup starts with",
]

CHATS = [
    {
        "messages": [
            {"role": "system", "content": "You are a cycling coach."},
            {"role": "user", "content": "How often should I oil my chain?"},
            {"role": "assistant", "content": "Every few hundred kilometres, or after rain."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "Will it rain tomorrow?"},
            {"role": "assistant", "content": "Probably, the sky looks grey."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "How long do I bake bread?"},
            {"role": "assistant", "content": "  About 35 minutes at 230 degrees.\n"},
            {"role": "user", "content": "And rice?"},
            {"role": "assistant", "content": "Twelve minutes, lid on."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Name a soup with onion."},
        ],
        "add_generation_prompt": True,
    },
]


# --------------------------------------------------------------------------- tokenizers


def train_bpe(normalizer, split_regex: str) -> Tokenizer:
    """Train a byte-level BPE model (no special tokens yet) on the built-in corpus."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    assert tok.get_vocab_size() == BPE_VOCAB_SIZE, tok.get_vocab_size()
    return tok


def make_qwen_tokenizer() -> Tokenizer:
    """Qwen-style tokenizer: NFC + Qwen2 split, specials appended after the BPE vocab, no BOS."""
    tok = train_bpe(normalizers.NFC(), QWEN_SPLIT_REGEX)
    tok.add_special_tokens(QWEN_SPECIALS)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def make_llama_tokenizer() -> Tokenizer:
    """Llama-3-style tokenizer: own split regex, post-processor that prepends <|begin_of_text|>."""
    tok = train_bpe(None, LLAMA_SPLIT_REGEX)
    tok.add_special_tokens(LLAMA_SPECIALS)
    bos = "<|begin_of_text|>"
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, bos_id)],
            ),
        ]
    )
    return tok


def padded_vocab(tokenizer_size: int) -> int:
    """Round the tokenizer size up to a multiple of VOCAB_MULTIPLE, strictly above it."""
    vocab = math.ceil(tokenizer_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    assert vocab > tokenizer_size, "config vocab must exceed the tokenizer's"
    return vocab


def write_json(path: Path, obj) -> None:
    """Write JSON with a stable layout (2-space indent, trailing newline, UTF-8)."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_qwen_tokenizer_files(tok: Tokenizer, out: Path) -> None:
    """tokenizer.json plus a transformers-4.x tokenizer_config.json holding chat_template."""
    tok.save(str(out / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in QWEN_SPECIALS
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": QWEN_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 512,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    write_json(out / "tokenizer_config.json", config)


def write_llama_tokenizer_files(tok: Tokenizer, out: Path) -> None:
    """Save through transformers 5 (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = LLAMA_CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    # Pin the class name Llama 3 checkpoints use, and keep the saved post-processor.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_json(cfg_path, cfg)
    saved = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert saved.to_str() == tok.to_str(), "transformers changed tokenizer.json on save"


# --------------------------------------------------------------------------- models


def randomize_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded init with large, non-trivial values: logits far from uniform, real biases and norms."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(param.shape)
            if name.endswith("norm.weight"):
                value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            elif name.endswith(".bias"):
                value = 0.2 * torch.randn(shape, generator=gen)
            elif "embed_tokens" in name or name.startswith("lm_head"):
                value = 0.3 * torch.randn(shape, generator=gen)
            else:
                value = 0.15 * torch.randn(shape, generator=gen)
            param.copy_(value.to(param.dtype))


def qwen_config(vocab: int, tok: Tokenizer) -> Qwen2Config:
    """Tiny Qwen2 config (Qwen2.5-0.5B proportions: tied embeddings, GQA, q/k/v bias)."""
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        tie_word_embeddings=True,
        use_sliding_window=False,
        max_window_layers=2,
        bos_token_id=tok.token_to_id("<|endoftext|>"),
        eos_token_id=tok.token_to_id("<|im_end|>"),
        attention_dropout=0.0,
        initializer_range=0.02,
    )


def llama_config(vocab: int, tok: Tokenizer) -> LlamaConfig:
    """Tiny Llama-3.1 config: no bias, untied, llama3 rope scaling with a small original context."""
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 5e5,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=tok.token_to_id("<|begin_of_text|>"),
        eos_token_id=[tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")],
        initializer_range=0.02,
    )


def load_model(path: Path) -> torch.nn.Module:
    """Load a saved fixture the way the reference is computed: float32, eager attention."""
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def logits_of(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """Full float32 logits [seq, vocab] for one unpadded sequence."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def rewrite_qwen_config_4x(path: Path) -> dict:
    """Turn the saved 5.x config.json into the 4.x layout: top-level rope_theta, torch_dtype."""
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    rope = cfg.pop("rope_parameters")
    assert rope.get("rope_type", "default") == "default", rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg = dict(sorted(cfg.items()))
    write_json(cfg_path, cfg)
    return cfg


def check_rope_scaling_matters(model: torch.nn.Module) -> dict:
    """Compare llama3-scaled inv_freq with plain RoPE for the same head size; must differ."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = cfg.rope_parameters["rope_theta"]
    plain = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    scaled = model.model.rotary_emb.inv_freq.detach().float().cpu()
    changed = int((~torch.isclose(plain, scaled, rtol=1e-6, atol=0)).sum())
    assert changed > 0, "llama3 rope scaling did not change any frequency"
    return {
        "plain_inv_freq": [float(x) for x in plain],
        "llama3_inv_freq": [float(x) for x in scaled],
        "changed": changed,
    }


# --------------------------------------------------------------------------- reference outputs


def floats(t: torch.Tensor) -> list:
    """float32 tensor -> nested lists of Python floats (repr is exact for each f32)."""
    return t.detach().to(torch.float32).cpu().numpy().astype(np.float64).tolist()


def greedy_manual(model, ids: list[int], max_new: int, eos: int | None) -> tuple[list[int], float, float]:
    """Argmax decoding by full re-forward each step; returns new ids, min top-2 gap, max |logit|."""
    seq = list(ids)
    new: list[int] = []
    min_gap = math.inf
    max_abs = 0.0
    for _ in range(max_new):
        last = logits_of(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        min_gap = min(min_gap, float(top2[0] - top2[1]))
        max_abs = max(max_abs, float(last.abs().max()))
        nxt = int(torch.argmax(last))
        seq.append(nxt)
        new.append(nxt)
        if eos is not None and nxt == eos:
            break
    return new, min_gap, max_abs


def greedy_generate(model, ids: list[int], max_new: int, eos: int | None, pad: int) -> list[int]:
    """The same continuation through model.generate (KV cache), as a cross-check."""
    gen_cfg = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new,
        eos_token_id=eos,
        pad_token_id=pad,
        repetition_penalty=1.0,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    # transformers 5 fills unset fields (eos included) from model.generation_config, so an
    # explicit eos_token_id=None would still stop at the checkpoint's eos: swap it out.
    saved, model.generation_config = model.generation_config, gen_cfg
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                generation_config=gen_cfg,
            )
    finally:
        model.generation_config = saved
    return out[0, len(ids):].tolist()


def greedy_entries(model, tok, prompts: list[list[int]], eos_prompt: list[int], pad: int) -> tuple[list, float]:
    """Greedy runs without eos stopping, plus one run that stops at an early-generated token."""
    entries = []
    max_abs = 0.0
    for ids in prompts:
        new, gap, mabs = greedy_manual(model, ids, GREEDY_NEW_TOKENS, None)
        assert new == greedy_generate(model, ids, GREEDY_NEW_TOKENS, None, pad), "generate disagrees"
        assert len(set(new)) > 2, f"degenerate greedy continuation {new}"
        assert gap >= MIN_TOP2_GAP, f"top-2 gap {gap} too small for {ids}"
        max_abs = max(max_abs, mabs)
        entries.append({"input_ids": ids, "max_new_tokens": GREEDY_NEW_TOKENS, "output_ids": new, "min_top2_gap": gap})

    free, _, _ = greedy_manual(model, eos_prompt, GREEDY_NEW_TOKENS, None)
    # eos: the first generated token (from step 3 on) not produced earlier, so the stop is unambiguous.
    step = next(i for i in range(2, len(free)) if free[i] not in free[:i])
    eos = free[step]
    new, gap, mabs = greedy_manual(model, eos_prompt, GREEDY_NEW_TOKENS, eos)
    assert new == free[: step + 1] and new[-1] == eos
    assert new == greedy_generate(model, eos_prompt, GREEDY_NEW_TOKENS, eos, pad), "generate disagrees (eos)"
    assert gap >= MIN_TOP2_GAP, f"top-2 gap {gap} too small for eos case"
    max_abs = max(max_abs, mabs)
    entries.append(
        {
            "input_ids": eos_prompt,
            "max_new_tokens": GREEDY_NEW_TOKENS,
            "eos_token_id": eos,
            "output_ids": new,
            "min_top2_gap": gap,
            "note": f"stops at eos_token_id (a token the model generates at step {step + 1}); output includes it",
        }
    )
    return entries, max_abs


def forward_entries(model, tok, texts: list[str]) -> tuple[list, float]:
    """Full logits at every position for short prompts (encoded with the tokenizer's special tokens)."""
    entries = []
    max_abs = 0.0
    for text in texts:
        ids = tok.encode(text, add_special_tokens=True)
        assert 8 <= len(ids) <= 10, (text, len(ids))
        logits = logits_of(model, ids)
        max_abs = max(max_abs, float(logits.abs().max()))
        entries.append({"text": text, "input_ids": ids, "logits": floats(logits)})
    return entries, max_abs


def encode_entries(tok, raw: Tokenizer) -> list:
    """transformers encodings, checked against the raw tokenizers library on tokenizer.json."""
    entries = []
    for text in ENCODE_TEXTS:
        for special in (True, False):
            ids = tok.encode(text, add_special_tokens=special)
            assert ids == raw.encode(text, add_special_tokens=special).ids, (text, special)
            entries.append({"text": text, "ids": ids, "add_special_tokens": special, "decoded": tok.decode(ids)})
    return entries


def chat_entries(tok, raw: Tokenizer) -> list:
    """apply_chat_template(tokenize=True) ids, plus what encoding the rendered text with specials gives."""
    entries = []
    for chat in CHATS:
        text = tok.apply_chat_template(
            chat["messages"], add_generation_prompt=chat["add_generation_prompt"], tokenize=False
        )
        ids = tok.apply_chat_template(
            chat["messages"], add_generation_prompt=chat["add_generation_prompt"], tokenize=True, return_dict=False
        )
        assert ids == raw.encode(text, add_special_tokens=False).ids
        with_specials = tok(text, add_special_tokens=True)["input_ids"]
        entries.append(
            {
                "messages": chat["messages"],
                "add_generation_prompt": chat["add_generation_prompt"],
                "input_ids": ids,
                "text": text,
                "encode_text_add_special_tokens_ids": with_specials,
            }
        )
    return entries


def versions() -> dict:
    return {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
    }


def build_reference(model_dir: Path, tok, raw: Tokenizer, eos_prompt: list[int], pad: int, extra: dict) -> dict:
    """Assemble reference.json for one saved fixture."""
    model = load_model(model_dir)
    forward, fmax = forward_entries(model, tok, FORWARD_TEXTS)
    prompts = [tok.encode(t, add_special_tokens=True) for t in GREEDY_TEXTS]
    greedy, gmax = greedy_entries(model, tok, prompts, eos_prompt, pad)
    ref = versions()
    ref.update(
        {
            "model_dir": model_dir.name,
            "dtype": "float32",
            "attn_implementation": "eager",
            "tokenizer_size": len(tok),
            "config_vocab_size": model.config.vocab_size,
            "max_abs_logit": max(fmax, gmax),
            "min_top2_gap": min(e["min_top2_gap"] for e in greedy),
        }
    )
    ref.update(extra)
    ref.update({"forward": forward, "greedy": greedy, "encode": encode_entries(tok, raw), "chat": chat_entries(tok, raw)})
    return ref


# --------------------------------------------------------------------------- fixtures


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def make_qwen(out: Path) -> None:
    """qwen2-tiny: float32, single safetensors, 4.x layout, ChatML template in tokenizer_config.json."""
    d = fresh_dir(out / "qwen2-tiny")
    raw = make_qwen_tokenizer()
    vocab = padded_vocab(raw.get_vocab_size(with_added_tokens=True))
    torch.manual_seed(QWEN_SEED)
    model = Qwen2ForCausalLM(qwen_config(vocab, raw)).to(torch.float32).eval()
    randomize_weights(model, QWEN_SEED)
    model.save_pretrained(str(d), safe_serialization=True)
    write_qwen_tokenizer_files(raw, d)
    endoftext, im_end = raw.token_to_id("<|endoftext|>"), raw.token_to_id("<|im_end|>")
    GenerationConfig(
        bos_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        pad_token_id=endoftext,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.05,
    ).save_pretrained(str(d))

    before = load_model(d)  # as saved by transformers 5 (rope_parameters)
    probe = raw.encode(FORWARD_TEXTS[0], add_special_tokens=False).ids
    logits_5x = logits_of(before, probe)
    rewrite_qwen_config_4x(d)
    after = load_model(d)
    assert after.config.rope_parameters["rope_theta"] == 1e6
    assert torch.equal(logits_5x, logits_of(after, probe)), "4.x config loads differently"
    for name, p in model.state_dict().items():
        assert torch.equal(after.state_dict()[name], p), f"saved weight {name} differs"
    assert not (d / "chat_template.jinja").exists()

    tok = AutoTokenizer.from_pretrained(str(d))
    assert tok.chat_template == QWEN_CHAT_TEMPLATE and tok.bos_token is None
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    eos_prompt = tok.apply_chat_template(
        CHATS[3]["messages"], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    ref = build_reference(d, tok, raw, eos_prompt, endoftext, {})
    write_json(d / "reference.json", ref)


def make_llama(out: Path) -> None:
    """llama3-tiny: bfloat16, 2 shards + index, 5.x layout, chat_template.jinja, BOS post-processor."""
    d = fresh_dir(out / "llama3-tiny")
    raw = make_llama_tokenizer()
    vocab = padded_vocab(raw.get_vocab_size(with_added_tokens=True))
    torch.manual_seed(LLAMA_SEED)
    model = LlamaForCausalLM(llama_config(vocab, raw)).to(torch.float32).eval()
    randomize_weights(model, LLAMA_SEED)
    model = model.to(torch.bfloat16)
    model.save_pretrained(str(d), safe_serialization=True, max_shard_size="200KB")
    shards = sorted(p.name for p in d.glob("model-*.safetensors"))
    assert len(shards) == 2 and (d / "model.safetensors.index.json").exists(), shards
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    assert "rope_parameters" in cfg and "rope_theta" not in cfg and cfg["rope_parameters"]["rope_type"] == "llama3"
    write_llama_tokenizer_files(raw, d)
    bos, eot, eot_text = (raw.token_to_id(t) for t in ("<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"))
    GenerationConfig(
        bos_token_id=bos, eos_token_id=[eot_text, eot], do_sample=True, temperature=0.6, top_p=0.9
    ).save_pretrained(str(d))

    loaded = load_model(d)
    for name, p in model.state_dict().items():  # bf16 on disk -> f32 in memory, bit-exact upcast
        assert torch.equal(loaded.state_dict()[name], p.to(torch.float32)), name
    rope = check_rope_scaling_matters(loaded)

    tok = AutoTokenizer.from_pretrained(str(d))
    assert tok.chat_template == LLAMA_CHAT_TEMPLATE and tok.bos_token == "<|begin_of_text|>"
    assert (d / "chat_template.jinja").exists()
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    eos_prompt = tok.apply_chat_template(
        CHATS[3]["messages"], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    extra = {"weights_dtype_on_disk": "bfloat16", "rope_check": rope}
    ref = build_reference(d, tok, raw, eos_prompt, eot_text, extra)
    write_json(d / "reference.json", ref)


def sha256_tree(root: Path) -> dict:
    """sha256 of every file under root, keyed by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    make_qwen(args.out)
    make_llama(args.out)
    print(json.dumps(versions()))
    for path, digest in sha256_tree(args.out).items():
        print(digest, path)


if __name__ == "__main__":
    main()
