"""Loads an adapter written by Anneal's trainer into diffusers and stores the image
diffusers draws with it, for the interop test
trainer/image/tests/parity/trained_adapter.rs.

Reads trainer/tests/fixtures/reference/flux-tiny/ (the tiny random pipeline of
make_flux_fixtures.py) and its anneal-trained/pytorch_lora_weights.safetensors (which
that test writes with ANNEAL_UPDATE_FIXTURES=1), loads the adapter with
`FluxPipeline.load_lora_weights`, checks that diffusers took every tensor of the file
and the scale its metadata gives (lora_alpha / r), then draws the LoRA case's picture
(the same prompt, noise, size, steps and guidance as make_flux_fixtures.py's
lora_case) and writes it to anneal-trained/diffusers_image.safetensors.

    /tmp/refvenv/bin/python scripts/reference/anneal_lora_in_diffusers.py
"""

import json
from pathlib import Path

import torch
from diffusers import FluxPipeline
from safetensors import safe_open
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
FIXTURE = Path(__file__).resolve().parents[2] / "trainer/tests/fixtures/reference/flux-tiny"
ADAPTER = FIXTURE / "anneal-trained"


def main():
    pipe = FluxPipeline.from_pretrained(FIXTURE, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    file = ADAPTER / "pytorch_lora_weights.safetensors"
    with safe_open(file, "pt") as f:
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
        names = set(f.keys())
    pipe.load_lora_weights(ADAPTER, adapter_name="anneal")

    # Every A and B of the file is in the transformer, equal to the file's.
    loaded = {name: param for name, param in pipe.transformer.named_parameters() if ".anneal." in name}
    stored = load_file(file)
    assert len(loaded) == len(names), (len(loaded), len(names))
    for name, tensor in stored.items():
        module = name.removeprefix("transformer.").removesuffix(".weight")
        ours = loaded[module.replace("lora_A", "lora_A.anneal").replace("lora_B", "lora_B.anneal") + ".weight"]
        assert torch.equal(ours, tensor), name
    # The scale is the metadata's alpha / r.
    layer = pipe.transformer.transformer_blocks[0].attn.to_q
    expected = metadata["transformer.lora_alpha"] / metadata["transformer.r"]
    assert layer.scaling["anneal"] == expected, (layer.scaling, expected)

    noise = load_file(FIXTURE / "reference.safetensors")["lora.noise"]
    batch, channels, height, width = noise.shape
    with torch.no_grad():
        image = pipe(
            prompt="a red circle on a blue background",
            latents=FluxPipeline._pack_latents(noise, batch, channels, height, width),
            height=16,
            width=12,
            num_inference_steps=3,
            guidance_scale=4.0,
            max_sequence_length=30,
            output_type="pt",
        ).images
    save_file({"image": image.contiguous()}, ADAPTER / "diffusers_image.safetensors")
    print(f"{len(names)} tensors loaded, scale {expected}; wrote {ADAPTER / 'diffusers_image.safetensors'}")


if __name__ == "__main__":
    main()
