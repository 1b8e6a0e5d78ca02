#!/usr/bin/env python3
"""Seconds per image on the CPU: Anneal's FLUX pipeline against diffusers' FluxPipeline,
on the same random-weight pipeline folders, same prompt, size and steps.

Two configurations: the reference fixture's tiny pipeline, and a larger one (width
256, 4 double and 8 single blocks, a 3-level VAE with 16 latent channels, 8x per side
as FLUX.1's). Each implementation runs in its own process so peak memory is its own.
Prints a Markdown section and, with --write, replaces the "FLUX generation (CPU)"
section of benches/RESULTS.md.

    python3 benches/flux_cpu.py [--write]      # needs torch, transformers and diffusers
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "trainer/tests/fixtures/reference/flux-tiny"
PROMPT = "a red circle on a blue background"
# (name, pipeline folder maker, width, height, steps, timed images)
LARGER = dict(
    transformer=dict(patch_size=1, in_channels=64, num_layers=4, num_single_layers=8, attention_head_dim=64,
                     num_attention_heads=4, joint_attention_dim=128, pooled_projection_dim=64,
                     guidance_embeds=True, axes_dims_rope=(8, 28, 28)),
    vae=dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 64, 64, 64),
             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
             layers_per_block=1, norm_num_groups=16, scaling_factor=0.3611, shift_factor=0.1159,
             use_quant_conv=False, use_post_quant_conv=False),
    clip=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
    t5=dict(d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4),
)


def make_larger(path: Path) -> None:
    """A FluxPipeline folder at LARGER's sizes with random weights and the fixture's
    tokenizers (whose vocabularies size the text encoders)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(0)
    clip_tok = CLIPTokenizer.from_pretrained(FIXTURE / "tokenizer")
    t5_tok = AutoTokenizer.from_pretrained(FIXTURE / "tokenizer_2")
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), max_position_embeddings=clip_tok.model_max_length,
                                        hidden_act="quick_gelu", eos_token_id=2, **LARGER["clip"]))
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), feed_forward_proj="gated-gelu", **LARGER["t5"]))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(FIXTURE / "scheduler"),
        vae=AutoencoderKL(**LARGER["vae"]),
        text_encoder=clip,
        tokenizer=clip_tok,
        text_encoder_2=t5,
        tokenizer_2=t5_tok,
        transformer=FluxTransformer2DModel(**LARGER["transformer"]),
    )
    pipe.save_pretrained(path)
    shutil.rmtree(path / "tokenizer")
    shutil.copytree(FIXTURE / "tokenizer", path / "tokenizer")


def diffusers_worker(path: str, width: int, height: int, steps: int, iters: int) -> None:
    import diffusers
    import torch
    from diffusers import FluxPipeline
    torch.set_num_threads(2)
    pipe = FluxPipeline.from_pretrained(path, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt=PROMPT, width=width, height=height, num_inference_steps=steps, guidance_scale=3.5,
                  max_sequence_length=512, output_type="pt")
    parts = {"text": 0.0, "decoding": 0.0}

    def timed(name, module):
        original = module.forward

        def forward(*args, **kw):
            start = time.perf_counter()
            out = original(*args, **kw)
            parts[name] += time.perf_counter() - start
            return out

        module.forward = forward

    timed("text", pipe.text_encoder)
    timed("text", pipe.text_encoder_2)
    timed("decoding", pipe.vae.decoder)
    with torch.inference_mode():
        pipe(**kwargs)
        parts.update(text=0.0, decoding=0.0)
        start = time.perf_counter()
        for _ in range(iters):
            pipe(**kwargs).images.sum().item()
        seconds = (time.perf_counter() - start) / iters
    text, decoding = parts["text"] / iters, parts["decoding"] / iters
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"implementation": f"diffusers {diffusers.__version__} (torch {torch.__version__}, f32)",
                      "seconds_per_image": seconds, "text_seconds": text, "decoding_seconds": decoding,
                      "denoising_seconds": seconds - text - decoding, "peak_rss_mib": peak}))


def run_json(cmd, env=None) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_section(title: str, section: str) -> None:
    """Puts `section` into benches/RESULTS.md, replacing the section of that title."""
    results = ROOT / "benches" / "RESULTS.md"
    text = results.read_text()
    start = text.find(title)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument("--worker", nargs=5)
    args = parser.parse_args()
    if args.worker:
        path, *numbers = args.worker
        diffusers_worker(path, *map(int, numbers))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        larger = Path(tmp) / "larger"
        make_larger(larger)
        cases = [
            ("tiny (the reference fixture: width 32, 2+2 blocks, 2x VAE)", FIXTURE, 64, 64, 8, 5),
            ("larger (width 256, 4+8 blocks, 8x VAE with 16 latent channels)", larger, 256, 256, 8, 2),
        ]
        for name, path, width, height, steps, iters in cases:
            numbers = [str(width), str(height), str(steps), str(iters)]
            reference = run_json([sys.executable, __file__, "--worker", str(path), *numbers])
            ours = run_json(["cargo", "bench", "-q", "-p", "anneal-image", "--bench", "generate", "--",
                             str(path), *numbers], env={**os.environ, "RAYON_NUM_THREADS": "2"})
            rows.append((name, width, height, steps, ours, reference))
    lines = [
        "## FLUX generation (CPU)",
        "",
        f"Command: `python3 benches/flux_cpu.py --write` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).",
        f"Random-weight FLUX.1 pipeline folders; prompt {PROMPT!r}, T5 at 512 tokens, guidance 3.5; seconds per",
        "image from prompt to decoded pixels (text encoders, steps, VAE decoder), after one untimed image.",
        "",
        "| pipeline | size | steps | Anneal s/image | diffusers s/image | ratio (Anneal / diffusers time) | Anneal peak RSS (MiB) | diffusers peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, width, height, steps, ours, ref in rows:
        ratio = ours["seconds_per_image"] / ref["seconds_per_image"]
        lines.append(f"| {name} | {width}x{height} | {steps} | {ours['seconds_per_image']:.3f} | "
                     f"{ref['seconds_per_image']:.3f} | **{ratio:.2f}x** | {ours['peak_rss_mib']:.0f} | {ref['peak_rss_mib']:.0f} |")
    lines += ["", "Where the time goes, seconds per image (Anneal / diffusers; diffusers' steps are the rest of its total):", "",
              "| pipeline | text encoders | denoising steps | VAE decoder |", "|---|---|---|---|"]
    for name, _, _, _, ours, ref in rows:
        cells = [f"{ours[k]:.3f} / {ref[k]:.3f}" for k in ("text_seconds", "denoising_seconds", "decoding_seconds")]
        lines.append(f"| {name.split(' (')[0]} | " + " | ".join(cells) + " |")
    lines += ["", f"Anneal: {rows[0][4]['implementation']}; reference: {rows[0][5]['implementation']}.", ""]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("## FLUX generation (CPU)", section)


if __name__ == "__main__":
    main()
