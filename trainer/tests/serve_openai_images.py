"""Drives `trainer serve` on an image model with the official `openai` Python client.

Run by trainer/tests/integration/serve_images.rs:
`python serve_openai_images.py BASE_URL MODEL ADAPTER`. Prints one JSON object with what
the client saw (PNG files as base64, as received); the Rust test compares the images
with the library's own. Raises (non-zero exit) when the client itself fails.
"""

import base64
import json
import sys

import openai

base_url, base_model, adapter = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
out = {"models": sorted(m.id for m in client.models.list().data)}


def generate(model, **extra):
    reply = client.images.generate(
        model=model,
        prompt="a red circle on a blue background",
        n=2,
        size="12x16",
        response_format="b64_json",
        extra_body={"seed": 11, "num_inference_steps": 3, "guidance_scale": 4.0, **extra},
    )
    return {
        "created": reply.created,
        "images": [image.b64_json for image in reply.data],
        "decodes": all(base64.b64decode(image.b64_json)[:8] == b"\x89PNG\r\n\x1a\n" for image in reply.data),
    }


out["base"] = generate(base_model)
out["adapter"] = generate(adapter)


def refused(**kwargs):
    try:
        client.images.generate(**kwargs)
    except openai.APIStatusError as error:
        body = error.body or {}
        return {"status": error.status_code, "param": body.get("param"), "code": body.get("code"), "message": body.get("message")}
    raise AssertionError("the request was not refused")


out["errors"] = {
    "unknown_model": refused(model="nope", prompt="x"),
    "size": refused(model=base_model, prompt="x", size="13x16"),
    "url": refused(model=base_model, prompt="x", size="12x16", response_format="url"),
    "n": refused(model=base_model, prompt="x", n=11),
}
print(json.dumps(out))
