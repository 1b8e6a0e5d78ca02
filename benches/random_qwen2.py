#!/usr/bin/env python3
"""A random-weight Qwen2 checkpoint of a chosen shape, with the standard library
only (no torch, numpy or safetensors package), for memory measurements of
`trainer train` at shapes larger than the bundled tiny model. The tokenizer is
anneal-tiny's (vocabulary 2048), so any dataset the quick start reads works.

    python3 benches/random_qwen2.py OUT_DIR [--hidden 512] [--layers 16]
        [--heads 8] [--kv-heads 2] [--ffn 1408]

Weights are N(0, 0.02) in f32 (norms 1, biases 0), tied embeddings. To keep the
generation fast, one block of random values is repeated through every tensor: the
values are not independent, which a memory or speed measurement does not notice.
"""
import argparse
import json
import math
import random
import shutil
import struct
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "models" / "anneal-tiny"
VOCAB = 2048
# Random values generated once and repeated (4 MiB of f32).
BLOCK_VALUES = 1 << 20


def tensors(hidden: int, layers: int, heads: int, kv_heads: int, ffn: int):
    """(name, shape, kind) of every weight, in the Hugging Face Qwen2 names."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    yield "model.embed_tokens.weight", [VOCAB, hidden], "normal"
    for i in range(layers):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", [hidden], "ones"
        yield f"{p}.post_attention_layernorm.weight", [hidden], "ones"
        # Linear weights are [out, in], as PyTorch stores them.
        yield f"{p}.self_attn.q_proj.weight", [hidden, hidden], "normal"
        yield f"{p}.self_attn.q_proj.bias", [hidden], "zeros"
        yield f"{p}.self_attn.k_proj.weight", [kv, hidden], "normal"
        yield f"{p}.self_attn.k_proj.bias", [kv], "zeros"
        yield f"{p}.self_attn.v_proj.weight", [kv, hidden], "normal"
        yield f"{p}.self_attn.v_proj.bias", [kv], "zeros"
        yield f"{p}.self_attn.o_proj.weight", [hidden, hidden], "normal"
        yield f"{p}.mlp.gate_proj.weight", [ffn, hidden], "normal"
        yield f"{p}.mlp.up_proj.weight", [ffn, hidden], "normal"
        yield f"{p}.mlp.down_proj.weight", [hidden, ffn], "normal"
    yield "model.norm.weight", [hidden], "ones"


def f32_bytes(kind: str, count: int, block: bytes) -> bytes:
    if kind == "normal":
        repeats = -(-count * 4 // len(block))
        return (block * repeats)[: count * 4]
    value = 1.0 if kind == "ones" else 0.0
    return array("f", [value]).tobytes() * count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=1408)
    args = parser.parse_args()

    rng = random.Random(0)
    block = array("f", (rng.gauss(0.0, 0.02) for _ in range(BLOCK_VALUES))).tobytes()
    specs = list(tensors(args.hidden, args.layers, args.heads, args.kv_heads, args.ffn))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in specs:
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, shape, kind in specs:
            f.write(f32_bytes(kind, math.prod(shape), block))

    config = json.loads((TINY / "config.json").read_text())
    config.update(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        max_window_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.ffn,
        max_position_embeddings=max(config["max_position_embeddings"], 4096),
    )
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(TINY / name, args.out / name)
    print(f"{args.out}: {offset / 2**20:.0f} MiB of f32 weights, {args.layers} layers")


if __name__ == "__main__":
    main()
