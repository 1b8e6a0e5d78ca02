#!/usr/bin/env python3
"""Make anneal-flux-tiny, the small FLUX-architecture image model bundled with Anneal.

Run from the repository root (about 11 minutes on 2 CPU cores):

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r scripts/tiny_image_model/requirements.txt
    /tmp/refvenv/bin/python scripts/tiny_image_model/make_tiny_flux.py

Steps, each a function below:

 1. Draw the pictures: 32x32 simple shapes (circle, square, triangle, dot, stripes) in
    8 colours on backgrounds of the other colours, each with its caption ("a red
    circle on a blue background"), several positions and sizes per combination.
 2. Train the two tokenizers on the captions (CLIP-style BPE as vocab.json +
    merges.txt, T5-style Unigram as tokenizer.json), and build the two text encoders
    (CLIP text model, T5 encoder) with random weights: they stay frozen; distinct
    captions give distinct embeddings, which is all the transformer needs.
 3. Train the VAE (AutoencoderKL, 4 latent channels, 4x per side: 8x8 latents) on the
    pictures, then set its scaling and shift factors from the latents' statistics, as
    FLUX's VAE has them.
 4. Train the FLUX transformer (width 128, 2 double and 4 single blocks, guidance
    embedding) with the rectified-flow objective FLUX was trained with: for noise level
    s, x_s = (1 - s) x0 + s e, predict e - x0.
 5. Save a diffusers FluxPipeline folder to examples/models/anneal-flux-tiny/ (the
    transformer and VAE in bf16), with
    anneal_pipeline.json (the prompt length, size and steps it was made for), generate
    a few pictures with diffusers and check that their colours follow the prompts.

Seeded throughout; one torch thread per core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "examples/models/anneal-flux-tiny"
SIZE = 32
T5_TOKENS = 16
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "orange": (240, 140, 30),
    "purple": (140, 60, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ["circle", "square", "triangle", "dot", "stripes"]


# 1. Pictures -------------------------------------------------------------------------

def draw(shape: str, colour, ground, rng: random.Random) -> np.ndarray:
    """One 32x32 picture, uint8 [32, 32, 3]."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = ground
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cx, cy = 16 + rng.randint(-4, 4), 16 + rng.randint(-4, 4)
    r = rng.randint(7, 10)
    if shape == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "dot":
        r = rng.randint(3, 4)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        mask = (abs(xx - cx) <= r - 1) & (abs(yy - cy) <= r - 1)
    elif shape == "triangle":
        # Apex up: rows from cy - r to cy + r, widening downwards.
        top, bottom = cy - r, cy + r
        half = (yy - top) * r / (2 * r)
        mask = (yy >= top) & (yy <= bottom) & (abs(xx - cx) <= half)
    else:  # stripes: horizontal bands over the whole picture
        period = rng.randint(6, 8)
        mask = ((yy + rng.randint(0, period)) // (period // 2)) % 2 == 0
    image[mask] = colour
    return image


def caption(shape: str, colour: str, ground: str) -> str:
    if shape == "stripes":
        return f"{colour} stripes on a {ground} background"
    return f"a {colour} {shape} on a {ground} background"


def pictures(per_combination: int, seed: int):
    rng = random.Random(seed)
    images, captions = [], []
    for shape in SHAPES:
        for colour, rgb in COLOURS.items():
            for ground, ground_rgb in COLOURS.items():
                if ground == colour:
                    continue
                for _ in range(per_combination):
                    images.append(draw(shape, rgb, ground_rgb, rng))
                    captions.append(caption(shape, colour, ground))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return pixels, captions


# 2. Tokenizers and text encoders ------------------------------------------------------

def clip_tokenizer(captions, folder: Path) -> CLIPTokenizer:
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.train_from_iterator(sorted(set(captions)), trainer=trainers.BpeTrainer(
        vocab_size=120, end_of_word_suffix="</w>", show_progress=False))
    folder.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(
        json.dumps(dict(specials, model_max_length=24, tokenizer_class="CLIPTokenizer"), indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    return CLIPTokenizer.from_pretrained(folder)


def t5_tokenizer(captions, folder: Path):
    """A Unigram tokenizer as T5's is, its pieces written out rather than trained (the
    trainer finds no whole words in so few captions): every caption word as one piece,
    single characters as the costly fallback."""
    words = sorted({word for text in captions for word in text.split()})
    chars = sorted({ch for text in captions for ch in text if ch != " "})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -5.0)]
    pieces += [("\u2581" + word, -1.0) for word in words] + [(ch, -10.0) for ch in chars]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    wrapped = T5Tokenizer(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    wrapped.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def text_encoders(clip_tok, t5_tok):
    torch.manual_seed(1)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=24, hidden_act="quick_gelu",
        bos_token_id=0, eos_token_id=2, pad_token_id=1)).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu")).eval()
    return clip, t5


@torch.no_grad()
def embed(captions, clip_tok, clip, t5_tok, t5):
    """T5 states and CLIP pooled output of each distinct caption, as FluxPipeline makes them."""
    unique = sorted(set(captions))
    clip_ids = clip_tok(unique, padding="max_length", max_length=clip_tok.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
    t5_ids = t5_tok(unique, padding="max_length", max_length=T5_TOKENS, truncation=True,
                    return_tensors="pt").input_ids
    pooled = clip(clip_ids).pooler_output
    context = t5(t5_ids).last_hidden_state
    index = {c: i for i, c in enumerate(unique)}
    rows = torch.tensor([index[c] for c in captions])
    return context, pooled, rows


# 3. VAE --------------------------------------------------------------------------------

def train_vae(pixels: torch.Tensor, epochs: int) -> AutoencoderKL:
    torch.manual_seed(2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=16, scaling_factor=1.0, shift_factor=0.0,
        use_quant_conv=False, use_post_quant_conv=False, sample_size=SIZE)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    steps = epochs * math.ceil(len(pixels) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(3)
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(pixels), generator=generator)
        total = 0.0
        for start in range(0, len(pixels), 32):
            batch = pixels[order[start:start + 32]]
            dist = vae.encode(batch).latent_dist
            z = dist.sample(generator=generator)
            recon = vae.decode(z).sample
            kl = dist.kl().mean() / batch[0].numel()
            loss = F.mse_loss(recon, batch) + 1e-4 * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            total += loss.item() * len(batch)
        print(f"vae epoch {epoch + 1}/{epochs}: loss {total / len(pixels):.4f}", flush=True)
    return vae.eval()


# 4. Transformer ------------------------------------------------------------------------

def train_transformer(latents, context, pooled, rows, epochs: int) -> FluxTransformer2DModel:
    torch.manual_seed(4)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(8, 12, 12))
    n, c, h, w = latents.shape
    packed = FluxPipeline._pack_latents(latents, n, c, h, w)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, "cpu", torch.float32)
    txt_ids = torch.zeros(T5_TOKENS, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    batch_size = 64
    steps = epochs * math.ceil(n / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(5)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            pick = order[start:start + batch_size]
            x0 = packed[pick]
            noise = torch.randn(x0.shape, generator=generator)
            # Noise levels from a logit-normal, as SD3 and FLUX train.
            sigma = torch.sigmoid(torch.randn(len(pick), generator=generator))
            xs = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
            prediction = model(
                hidden_states=xs, encoder_hidden_states=context[rows[pick]], pooled_projections=pooled[rows[pick]],
                timestep=sigma, img_ids=img_ids, txt_ids=txt_ids,
                guidance=torch.full((len(pick),), 3.5), return_dict=False)[0]
            loss = F.mse_loss(prediction, noise - x0)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(pick)
        if (epoch + 1) % 10 == 0 or epoch == 0:
            print(f"transformer epoch {epoch + 1}/{epochs}: loss {total / n:.4f}", flush=True)
    return model.eval()


# 5. Save and check ---------------------------------------------------------------------

def colour_of(region: np.ndarray) -> str:
    mean = region.reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda name: float(((np.array(COLOURS[name]) - mean) ** 2).sum()))


def check(pipe: FluxPipeline) -> float:
    """Generates the solid shapes for a set of prompts; returns the share whose centre
    and corners have the prompt's colours."""
    right, tried = 0, 0
    for colour in COLOURS:
        ground = "white" if colour != "white" else "black"
        prompt = f"a {colour} square on a {ground} background"
        image = pipe(prompt=prompt, height=SIZE, width=SIZE, num_inference_steps=20, guidance_scale=3.5,
                     max_sequence_length=T5_TOKENS, generator=torch.Generator().manual_seed(0),
                     output_type="np").images[0]
        pixels = (image * 255).round().astype(np.uint8)
        centre, corner = colour_of(pixels[13:19, 13:19]), colour_of(pixels[:3, :3])
        ok = centre == colour and corner == ground
        print(f"{prompt!r}: centre {centre}, corner {corner} {'ok' if ok else 'WRONG'}")
        right += ok
        tried += 1
    return right / tried


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--vae-epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--per-combination", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.time()

    pixels, captions = pictures(args.per_combination, seed=0)
    print(f"{len(pixels)} pictures, {len(set(captions))} captions", flush=True)
    work = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    clip_tok = clip_tokenizer(captions, work / "tokenizer")
    t5_tok = t5_tokenizer(captions, work / "tokenizer_2")
    clip, t5 = text_encoders(clip_tok, t5_tok)
    context, pooled, rows = embed(captions, clip_tok, clip, t5_tok, t5)

    vae = train_vae(pixels, args.vae_epochs)
    with torch.no_grad():
        latents = torch.cat([vae.encode(pixels[i:i + 256]).latent_dist.mode() for i in range(0, len(pixels), 256)])
    shift = latents.mean().item()
    scale = 1.0 / (latents - shift).std().item()
    vae.register_to_config(scaling_factor=round(scale, 4), shift_factor=round(shift, 4))
    latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
    print(f"vae: scaling {vae.config.scaling_factor}, shift {vae.config.shift_factor}", flush=True)

    transformer = train_transformer(latents, context, pooled, rows, args.epochs)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    share = check(pipe)
    print(f"{share:.0%} of the checked prompts drawn in their colours", flush=True)

    clip_files = {p.name: p.read_bytes() for p in (work / "tokenizer").iterdir()}
    pipe.save_pretrained(work)
    shutil.rmtree(work / "tokenizer")
    (work / "tokenizer").mkdir()
    for name, data in clip_files.items():
        (work / "tokenizer" / name).write_bytes(data)
    # Trained in f32, kept in bf16 (as FLUX.1 ships): half the bytes in the repository.
    for part in ("transformer", "vae"):
        weights = work / part / "diffusion_pytorch_model.safetensors"
        tensors = load_file(weights)
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, weights,
                  metadata={"format": "pt"})
    for config in work.rglob("config.json"):
        settings = json.loads(config.read_text())
        settings.pop("_name_or_path", None)
        config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    (work / "anneal_pipeline.json").write_text(json.dumps({
        "max_sequence_length": T5_TOKENS, "width": SIZE, "height": SIZE,
        "num_inference_steps": 20, "guidance_scale": 3.5}, indent=2) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    work.rename(args.out)
    print(f"wrote {args.out} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
