"""Reference outputs of diffusers' FLUX.1 transformer and flow-matching scheduler on
tiny random configurations, for the parity tests of Anneal's FLUX code (anneal-image).

Writes trainer/tests/fixtures/reference/flux-tiny/ (or --out DIR):
  transformer/            FLUX.1-dev-like (guidance embedding), float32 weights
  transformer-schnell/    FLUX.1-schnell-like (no guidance embedding), bfloat16 weights
  scheduler/              FLUX.1-dev's scheduler_config.json
  reference.safetensors   inputs and outputs of both transformers (float32)
  reference.json          scheduler sigmas and timesteps for several step counts and
                          image sizes, packing examples

Run with the versions in requirements.txt plus diffusers (see README.md).
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]

# Head dim 16 = the three rope axes (4 for text/time, 6 rows, 6 columns), as FLUX's
# 128 = 16 + 56 + 56.
TINY = dict(
    patch_size=1,
    in_channels=16,  # 4 latent channels, packed 2x2
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=24,
    pooled_projection_dim=20,
    axes_dims_rope=(4, 6, 6),
)

# FLUX.1-dev's scheduler/scheduler_config.json.
SCHEDULER = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def randomize(model, seed):
    """Every parameter away from its default: biases and norm weights that a wrong
    implementation could ignore without changing the output stay visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "norm" in name else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def record_blocks(model, store, prefix):
    """Outputs of the first double and single block, for finding where a mismatch starts."""

    def double(_m, _args, out):
        store[f"{prefix}.double0.txt"] = out[0].detach().float().contiguous()
        store[f"{prefix}.double0.img"] = out[1].detach().float().contiguous()

    def single(_m, _args, out):
        store[f"{prefix}.single0.txt"] = out[0].detach().float().contiguous()
        store[f"{prefix}.single0.img"] = out[1].detach().float().contiguous()

    def temb(_m, _args, out):
        store[f"{prefix}.temb"] = out.detach().float().contiguous()

    model.transformer_blocks[0].register_forward_hook(double)
    model.single_transformer_blocks[0].register_forward_hook(single)
    model.time_text_embed.register_forward_hook(temb)


def transformer_case(out, folder, guidance, dtype, seed, store):
    config = dict(TINY, guidance_embeds=guidance)
    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**config)
    randomize(model, seed)
    model = model.to(dtype).eval()
    model.save_pretrained(out / folder, safe_serialization=True)

    g = torch.Generator().manual_seed(seed + 1)
    batch, lat_h, lat_w, text = 2, 8, 6, 5  # latents 4x8x6: 4x3 = 12 image tokens
    latents = torch.randn(batch, 4, lat_h, lat_w, generator=g)
    packed = FluxPipeline._pack_latents(latents, batch, 4, lat_h, lat_w)
    img_ids = FluxPipeline._prepare_latent_image_ids(batch, lat_h // 2, lat_w // 2, "cpu", torch.float32)
    context = torch.randn(batch, text, TINY["joint_attention_dim"], generator=g)
    pooled = torch.randn(batch, TINY["pooled_projection_dim"], generator=g)
    txt_ids = torch.zeros(text, 3)
    # bf16 holds 0.5 and 0.25 and 1000 times them exactly (diffusers multiplies in the
    # model's dtype: 0.75 would become 752 in bf16).
    timestep = torch.tensor([0.75, 0.3125]) if dtype == torch.float32 else torch.tensor([0.5, 0.25])
    guidance_t = torch.tensor([3.5, 1.0]) if guidance else None

    record_blocks(model, store, folder)
    with torch.no_grad():
        output = model(
            hidden_states=packed.to(dtype),
            encoder_hidden_states=context.to(dtype),
            pooled_projections=pooled.to(dtype),
            timestep=timestep.to(dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=None if guidance_t is None else guidance_t.to(dtype),
            return_dict=False,
        )[0]
    store[f"{folder}.latents"] = latents
    store[f"{folder}.packed"] = packed
    store[f"{folder}.img_ids"] = img_ids
    store[f"{folder}.context"] = context
    store[f"{folder}.pooled"] = pooled
    store[f"{folder}.timestep"] = timestep
    if guidance_t is not None:
        store[f"{folder}.guidance"] = guidance_t
    store[f"{folder}.output"] = output.float().contiguous()
    store[f"{folder}.unpacked"] = FluxPipeline._unpack_latents(
        output.float(), lat_h * 8, lat_w * 8, 8
    ).contiguous()


# FLUX.1's VAE layout (AutoencoderKL, no quant convs, its scaling and shift factors)
# at toy widths: 4 latent channels, 2 blocks (so 2x smaller per side, where FLUX's 4
# blocks make 8x), groups of 4 channels.
VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    norm_num_groups=4,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)


def vae_case(out, seed, store):
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE)
    randomize(vae, seed)
    vae = vae.eval()
    vae.save_pretrained(out / "vae", safe_serialization=True)
    g = torch.Generator().manual_seed(seed + 1)
    image = torch.rand(2, 3, 16, 12, generator=g) * 2 - 1
    latents = torch.randn(2, 4, 8, 6, generator=g)
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    store["vae.image"] = image
    store["vae.mean"] = dist.mean.contiguous()
    store["vae.logvar"] = dist.logvar.contiguous()
    store["vae.latents"] = latents
    store["vae.decoded"] = decoded.contiguous()
    return vae


def prompt_pipeline_case(out, pipe, store):
    """The whole pipeline from a prompt, saved as a diffusers folder (model_index.json
    and every component) the way FLUX.1-dev is published."""
    # FLUX.1-dev's tokenizer/ has no tokenizer.json: the CLIP tokenizer is built from
    # vocab.json and merges.txt. save_pretrained writes one, so the folder as
    # make_clip_tokenizer wrote it is put back afterwards.
    folder = out / "tokenizer"
    clip_files = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    pipe.save_pretrained(out)
    for name in os.listdir(folder):
        os.remove(folder / name)
    for name, data in clip_files.items():
        (folder / name).write_bytes(data)
    g = torch.Generator().manual_seed(41)
    noise = torch.randn(1, 4, 8, 6, generator=g)
    args = dict(
        prompt=PROMPTS[0],
        latents=FluxPipeline._pack_latents(noise, 1, 4, 8, 6),
        height=16,
        width=12,
        num_inference_steps=3,
        guidance_scale=4.0,
        max_sequence_length=T5_MAX,
    )
    with torch.no_grad():
        image = pipe(**args, output_type="pt").images
    store["prompt_pipeline.noise"] = noise
    store["prompt_pipeline.image"] = image.contiguous()


def lora_case(out, pipe, store):
    """LoRA adapters in diffusers' FLUX format (pytorch_lora_weights.safetensors with
    `transformer.<module>.lora_A/B.weight`), made with PEFT: `lora-a` (rank 4, alpha 8,
    recorded in the file's adapter metadata) on attention, MLP and modulation layers
    of both block kinds, `lora-b` (rank 2, no metadata: alpha = rank) on the
    embedders and the output. The images of the prompt with `lora-a`, and with both
    (diffusers adds their updates)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    adapters = {
        "lora-a": (
            LoraConfig(
                r=4,
                lora_alpha=8,
                init_lora_weights=False,
                target_modules=["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "to_add_out",
                                "ff.net.2", "ff_context.net.0.proj", "norm1.linear", "proj_mlp",
                                "norm.linear"],
            ),
            True,
        ),
        "lora-b": (
            LoraConfig(
                r=2,
                lora_alpha=2,
                init_lora_weights=False,
                target_modules=["x_embedder", "context_embedder", "norm_out.linear", "linear_1"],
            ),
            False,
        ),
    }
    torch.manual_seed(70)
    for name, (config, with_metadata) in adapters.items():
        pipe.transformer.add_adapter(config, adapter_name=name)
        layers = get_peft_model_state_dict(pipe.transformer, adapter_name=name)
        FluxPipeline.save_lora_weights(
            out / name,
            transformer_lora_layers=layers,
            transformer_lora_adapter_metadata=config.to_dict() if with_metadata else None,
        )
        pipe.transformer.delete_adapters(name)
    g = torch.Generator().manual_seed(42)
    noise = torch.randn(1, 4, 8, 6, generator=g)
    args = dict(
        prompt=PROMPTS[0],
        latents=FluxPipeline._pack_latents(noise, 1, 4, 8, 6),
        height=16,
        width=12,
        num_inference_steps=3,
        guidance_scale=4.0,
        max_sequence_length=T5_MAX,
        output_type="pt",
    )
    store["lora.noise"] = noise
    pipe.load_lora_weights(out / "lora-a", adapter_name="a")
    with torch.no_grad():
        store["lora.image_a"] = pipe(**args).images.contiguous()
    pipe.load_lora_weights(out / "lora-b", adapter_name="b")
    pipe.set_adapters(["a", "b"])
    with torch.no_grad():
        store["lora.image_ab"] = pipe(**args).images.contiguous()
    pipe.unload_lora_weights()
    with torch.no_grad():
        store["lora.image_none"] = pipe(**args).images.contiguous()


def pipeline_case(out, vae, store):
    """FluxPipeline end to end from given text embeddings and noise (the text encoders
    are checked on their own): 4 steps at 16x12 pixels, guidance 3.5."""
    transformer = FluxTransformer2DModel.from_pretrained(out / "transformer")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out / "scheduler")
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    g = torch.Generator().manual_seed(40)
    context = torch.randn(1, 5, TINY["joint_attention_dim"], generator=g)
    pooled = torch.randn(1, TINY["pooled_projection_dim"], generator=g)
    noise = torch.randn(1, 4, 8, 6, generator=g)
    packed = FluxPipeline._pack_latents(noise, 1, 4, 8, 6)
    args = dict(
        prompt_embeds=context,
        pooled_prompt_embeds=pooled,
        latents=packed,
        height=16,
        width=12,
        num_inference_steps=4,
        guidance_scale=3.5,
    )
    with torch.no_grad():
        final = pipe(**args, output_type="latent").images
        image = pipe(**args, output_type="pt").images
    store["pipeline.context"] = context
    store["pipeline.pooled"] = pooled
    store["pipeline.noise"] = noise
    store["pipeline.final_latents"] = final.contiguous()
    store["pipeline.image"] = image.contiguous()
    return pipe


COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
SHAPES = ["circle", "square", "triangle", "stripe", "dot"]


def captions():
    """Captions of simple pictures, the tokenizers' training text."""
    for i, colour in enumerate(COLOURS):
        for j, shape in enumerate(SHAPES):
            ground = COLOURS[(i + j + 1) % len(COLOURS)]
            yield f"a {colour} {shape} on a {ground} background"
            yield f"two small {colour} {shape}s, striped {ground} texture"


# Prompts the tokenizers are checked on: plain, upper case and extra spaces, a
# character outside the tiny vocabularies, and one longer than CLIP's 16 tokens.
PROMPTS = [
    "a red circle on a blue background",
    "Two  small GREEN squares",
    "a zebra!",
    "a yellow triangle on a black background, two small purple dots, striped white texture",
]
CLIP_MAX = 16
T5_MAX = 30


def make_clip_tokenizer(folder):
    """CLIP's tokenizer as FLUX.1-dev ships it: vocab.json and merges.txt only (no
    tokenizer.json), BPE with `</w>` word ends, the start and end tokens last so
    that the end token has the highest id, as in openai/clip-vit-large-patch14."""
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=96, end_of_word_suffix="</w>", show_progress=False)
    tok.train_from_iterator(list(captions()), trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(folder):
        os.remove(folder / name)
    tok.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    specials = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    config = dict(specials, model_max_length=CLIP_MAX, tokenizer_class="CLIPTokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    return CLIPTokenizer.from_pretrained(folder)


def make_t5_tokenizer(folder):
    """T5's tokenizer as FLUX.1 ships it (tokenizer.json): Unigram over Metaspace
    pieces, `<pad>` 0, `</s>` 1 appended to every sequence, `<unk>` 2."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(list(captions()), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    wrapped = T5Tokenizer(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    wrapped.model_max_length = 512
    wrapped.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def tokenizer_case(out, store):
    clip = make_clip_tokenizer(out / "tokenizer")
    t5 = make_t5_tokenizer(out / "tokenizer_2")
    clip_ids = clip(PROMPTS, padding="max_length", max_length=CLIP_MAX, truncation=True).input_ids
    t5_ids = t5(PROMPTS, padding="max_length", max_length=T5_MAX, truncation=True).input_ids
    return clip, t5, {"prompts": PROMPTS, "clip_ids": clip_ids, "t5_ids": t5_ids}


def text_encoder_case(out, seed, store, clip_tok, t5_tok, tokens):
    """FLUX.1's two text encoders at toy widths: CLIP ViT-L's text model (quick GELU,
    causal attention, the legacy `eos_token_id` 2 that pools at the highest token id)
    whose pooled output is the transformer's pooled input (width 20), and T5 v1.1's
    encoder (gated GELU, relative position buckets, no attention scaling) whose token
    states are its context (width 24)."""
    torch.manual_seed(seed)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tok),
            hidden_size=TINY["pooled_projection_dim"],
            intermediate_size=36,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CLIP_MAX,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )
    randomize(clip, seed)
    clip = clip.eval()
    clip.save_pretrained(out / "text_encoder", safe_serialization=True)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tok),
            d_model=TINY["joint_attention_dim"],
            d_kv=8,
            d_ff=40,
            num_layers=2,
            num_heads=3,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=20,
            feed_forward_proj="gated-gelu",
            layer_norm_epsilon=1e-6,
            tie_word_embeddings=False,
        )
    )
    randomize(t5, seed + 1)
    t5 = t5.eval()
    t5.save_pretrained(out / "text_encoder_2", safe_serialization=True)

    # The prompts as the pipeline tokenizes them: 16 CLIP tokens, 30 T5 tokens (past
    # the buckets' max distance of 20).
    clip_ids = torch.tensor(tokens["clip_ids"])
    t5_ids = torch.tensor(tokens["t5_ids"])
    with torch.no_grad():
        clip_out = clip(clip_ids)
        t5_out = t5(t5_ids).last_hidden_state
    store["clip.ids"] = clip_ids.float()
    store["clip.last_hidden"] = clip_out.last_hidden_state.contiguous()
    store["clip.pooled"] = clip_out.pooler_output.contiguous()
    store["t5.ids"] = t5_ids.float()
    store["t5.last_hidden"] = t5_out.contiguous()
    return clip, t5


def schedules():
    """Sigmas and timesteps as FluxPipeline asks the scheduler for them."""
    import numpy as np

    cases = []
    for steps in (1, 4, 28):
        for seq in (12, 256, 1024, 4096):
            sched = FlowMatchEulerDiscreteScheduler(**{k: v for k, v in SCHEDULER.items() if k != "_class_name"})
            sigmas = np.linspace(1.0, 1 / steps, steps)
            mu = calculate_shift(seq, 256, 4096, 0.5, 1.15)
            sched.set_timesteps(sigmas=sigmas, mu=mu)
            cases.append(
                {
                    "steps": steps,
                    "image_seq_len": seq,
                    "mu": mu,
                    "sigmas": [float(s) for s in sched.sigmas],
                    "timesteps": [float(t) for t in sched.timesteps],
                }
            )
    # schnell: no dynamic shifting, shift 1.
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4))
    cases.append(
        {
            "steps": 4,
            "image_seq_len": None,
            "mu": None,
            "sigmas": [float(s) for s in sched.sigmas],
            "timesteps": [float(t) for t in sched.timesteps],
        }
    )
    return cases


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=ROOT / "trainer/tests/fixtures/reference/flux-tiny", type=Path)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    store = {}
    transformer_case(out, "transformer", True, torch.float32, 10, store)
    transformer_case(out, "transformer-schnell", False, torch.bfloat16, 20, store)
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler/scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2) + "\n")
    vae = vae_case(out, 30, store)
    clip_tok, t5_tok, tokens = tokenizer_case(out, store)
    clip, t5 = text_encoder_case(out, 50, store, clip_tok, t5_tok, tokens)
    pipe = pipeline_case(out, vae, store)
    pipe.register_modules(text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok)
    pipe.tokenizer_max_length = CLIP_MAX
    prompt_pipeline_case(out, pipe, store)
    lora_case(out, pipe, store)
    save_file(store, out / "reference.safetensors")
    (out / "reference.json").write_text(
        json.dumps({"schedules": schedules(), "tokens": tokens}, indent=1, ensure_ascii=False) + "\n"
    )

    # from_pretrained records where it read a model from; the fixtures should not.
    for config in out.rglob("config.json"):
        settings = json.loads(config.read_text())
        if settings.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

    for path in sorted(out.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"{digest}  {path.relative_to(out)}")


if __name__ == "__main__":
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    main()
