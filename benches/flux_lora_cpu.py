#!/usr/bin/env python3
"""Training steps per second on the CPU: an Anneal image job (`trainer train`) against
diffusers + PEFT running the same LoRA training on the same tiny FLUX pipeline and data.

Both sides: the bundled tiny model (examples/models/anneal-flux-tiny), the image quick
start's five pictures (examples/quickstart/sks-ball) at 64x64 with their captions led
by the trigger word, T5 at 16 tokens, LoRA rank 8 / alpha 8 on the attention
projections (diffusers' FLUX LoRA script's targets), batch 1, the flow-matching loss
with the shifted logit-normal noise level and guidance 1, gradient clipping at 1,
AdamW (lr 2e-3, eps 1e-8, cosine decay). A step is forward, loss, backward, clipping and AdamW on
cached latents and text states; encoding, loading and sample images are not timed.
Anneal's step time comes from its metrics events (64 image tokens a step divided by
its tokens per second); diffusers' is timed around the same work. The first 2 steps
of each side are warm-up. Each side runs in its own process, two threads.

    python3 benches/flux_lora_cpu.py [--write] [--steps 40]   # needs torch, diffusers, peft
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples/models/anneal-flux-tiny"
IMAGES = ROOT / "examples/quickstart/sks-ball"
TRIGGER = "sks"
RANK = 8
LEARNING_RATE = 2e-3
WARM_UP = 2
# Image tokens of a 64x64 picture through the tiny VAE (4x) packed 2x2: 8 x 8.
TOKENS_PER_STEP = 64
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def captions() -> list[tuple[Path, str]]:
    pairs = []
    for image in sorted(IMAGES.glob("*.png")):
        caption = image.with_suffix(".txt").read_text().strip()
        pairs.append((image, f"{TRIGGER}, {caption}"))
    return pairs


def job_yaml(steps: int) -> str:
    repeats = steps // len(captions())
    return f"""apiVersion: anneal.dev/v1alpha1
kind: FineTuneJob
metadata: {{name: bench}}
spec:
  task: text-to-image
  baseModel: {{name: anneal-flux-tiny, source: "file://{MODEL}"}}
  dataset: {{images: "file://{IMAGES}/"}}
  hyperparameters:
    learningRate: {LEARNING_RATE}
    warmupRatio: 0
    epochs: 1
    batchSize: 1
    repeats: {repeats}
    resolution: 64
    triggerWord: {TRIGGER}
    lora: {{rank: {RANK}, alpha: {RANK}, dropout: 0}}
  checkpoints:
    everyEpoch: true
    samplePrompts: [{{prompt: {TRIGGER}, steps: 1}}]
"""


# Runs a command and prints its peak RSS (MiB) as the last line of stderr: the
# trainer's own, not cargo's or this script's.
PEAK_OF = """import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, file=sys.stderr)
sys.exit(code)"""


def anneal(steps: int) -> dict:
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "anneal-trainer", "--bin", "trainer"],
                   check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.yaml"
        job.write_text(job_yaml(steps))
        env = {**os.environ, "RAYON_NUM_THREADS": "2"}
        run = subprocess.run([sys.executable, "-c", PEAK_OF, str(ROOT / "target/release/trainer"), "train", str(job),
                              "--json", "--device", "cpu", "--output", str(Path(tmp) / "runs")],
                             check=True, capture_output=True, text=True, env=env)
    out, peak = run.stdout, float(run.stderr.strip().splitlines()[-1])
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    metrics = [e for e in events if e["type"] == "metrics" and "tokensPerSecond" in e]
    seconds = [TOKENS_PER_STEP / e["tokensPerSecond"] for e in metrics[WARM_UP:]]
    return {"implementation": "anneal (burn flex, f32)", "steps": len(metrics),
            "seconds_per_step": statistics.mean(seconds), "losses": [e["trainLoss"] for e in metrics],
            "peak_rss_mib": peak}


def diffusers_worker(steps: int) -> None:
    import diffusers
    import numpy as np
    import peft
    import torch
    from diffusers import FluxPipeline
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift
    from peft import LoraConfig
    from PIL import Image

    torch.set_num_threads(2)
    torch.manual_seed(0)
    pipe = FluxPipeline.from_pretrained(MODEL, torch_dtype=torch.float32)
    vae, transformer, scheduler = pipe.vae, pipe.transformer, pipe.scheduler
    examples = []
    with torch.no_grad():
        for image, caption in captions():
            pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 127.5 - 1)
            posterior = vae.encode(pixels.permute(2, 0, 1)[None]).latent_dist
            prompt_embeds, pooled, text_ids = pipe.encode_prompt(caption, caption, max_sequence_length=16)
            examples.append((posterior.mean, posterior.logvar, prompt_embeds, pooled, text_ids))
    transformer.requires_grad_(False)
    # PEFT's default init (A Kaiming-uniform, B zero), as Anneal draws its adapters.
    transformer.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS))
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, eps=1e-8, weight_decay=0.0)
    # Anneal's schedule without warm-up: cosine decay from the peak towards zero at the last step.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + np.cos(np.pi * step / steps)))
    channels, height, width = examples[0][0].shape[1:]
    image_ids = FluxPipeline._prepare_latent_image_ids(1, height // 2, width // 2, "cpu", torch.float32)
    mu = calculate_shift(TOKENS_PER_STEP, scheduler.config.base_image_seq_len, scheduler.config.max_image_seq_len,
                         scheduler.config.base_shift, scheduler.config.max_shift)
    guidance = torch.tensor([1.0])
    seconds, losses = [], []
    for step in range(steps):
        mean, logvar, prompt_embeds, pooled, text_ids = examples[step % len(examples)]
        start = time.perf_counter()
        latents = (mean + (0.5 * logvar).exp() * torch.randn_like(mean) - vae.config.shift_factor) \
            * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        sigma = torch.sigmoid(torch.randn(1))
        sigma = np.exp(mu) / (np.exp(mu) + (1 / sigma - 1))
        noisy = (1 - sigma) * latents + sigma * noise
        packed = FluxPipeline._pack_latents(noisy, 1, channels, height, width)
        prediction = transformer(hidden_states=packed, timestep=sigma, guidance=guidance,
                                 pooled_projections=pooled, encoder_hidden_states=prompt_embeds,
                                 txt_ids=text_ids, img_ids=image_ids, return_dict=False)[0]
        target = FluxPipeline._pack_latents(noise - latents, 1, channels, height, width)
        loss = torch.nn.functional.mse_loss(prediction, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"implementation": f"diffusers {diffusers.__version__} + PEFT {peft.__version__} "
                                        f"(torch {torch.__version__}, f32)",
                      "steps": steps, "seconds_per_step": statistics.mean(seconds[WARM_UP:]), "losses": losses,
                      "peak_rss_mib": peak}))


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
    parser.add_argument("--steps", type=int, default=40, help="steps per side (a multiple of 5)")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        diffusers_worker(args.steps)
        return
    ours = anneal(args.steps)
    out = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps)], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    reference = json.loads(out.strip().splitlines()[-1])
    ratio = reference["seconds_per_step"] / ours["seconds_per_step"]
    mean = lambda losses: statistics.mean(losses[-10:])  # noqa: E731
    lines = [
        "## FLUX LoRA training (CPU)",
        "",
        f"Command: `python3 benches/flux_lora_cpu.py --write --steps {args.steps}` "
        f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).",
        "The bundled tiny FLUX model (width 128, 2+4 blocks), the image quick start's 5 pictures at 64x64 with",
        f"`{TRIGGER}, ` before each caption, T5 at 16 tokens; LoRA r{RANK}/alpha {RANK} on the attention projections,",
        f"batch 1, flow-matching loss (shifted logit-normal sigma, guidance 1), clipping at 1, AdamW lr {LEARNING_RATE}",
        "with cosine decay and no warm-up, adapters drawn as PEFT draws them by default (A Kaiming-uniform, B zero).",
        "Seconds per step (forward, loss, backward, clipping, AdamW on cached latents and text states), mean of the",
        f"steps after {WARM_UP} warm-up steps; each side in its own process with 2 threads.",
        "",
        "| implementation | steps | s/step | steps/s | mean loss, last 10 steps | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for side in (ours, reference):
        lines.append(f"| {side['implementation']} | {side['steps']} | {side['seconds_per_step']:.4f} | "
                     f"{1 / side['seconds_per_step']:.1f} | {mean(side['losses']):.3f} | {side['peak_rss_mib']:.0f} |")
    lines += ["", f"Ratio (Anneal / diffusers + PEFT steps per second): **{ratio:.2f}x**.", "",
              "The two sides draw their own random numbers (noise, noise levels, the pictures' order differs), so",
              "their losses agree only in size; peak RSS is the whole process (for diffusers mostly the torch runtime).",
              ""]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("## FLUX LoRA training (CPU)", section)


if __name__ == "__main__":
    main()
