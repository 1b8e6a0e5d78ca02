"""Drives `trainer serve` with the official `openai` Python client, as a user would.

Run by trainer/tests/integration/serve_api.rs: `python serve_openai_client.py BASE_URL MODEL ADAPTER`.
Prints one JSON object with what the client saw; the Rust test compares it with the
trainer library's own generation. Raises (non-zero exit) when the client itself fails.
"""

import json
import sys

import openai

base_url, base_model, adapter = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Can I take a bike on the tram?"},
]
out = {"models": sorted(m.id for m in client.models.list().data)}


def whole(model, **extra):
    reply = client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=24, **extra
    )
    choice = reply.choices[0]
    return {
        "object": reply.object,
        "model": reply.model,
        "id": reply.id,
        "role": choice.message.role,
        "text": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": [reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens],
    }


def streamed(model, **extra):
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    )
    pieces, roles, finish, usage, ids = [], [], None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens]
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"pieces": pieces, "roles": roles, "finish_reason": finish, "usage": usage, "ids": len(ids)}


for name in (base_model, adapter):
    out[name] = {"whole": whole(name), "streamed": streamed(name)}
out["stopped"] = {"whole": whole(adapter, stop=[" "]), "streamed": streamed(adapter, stop=[" "])}
out["seeded"] = [
    client.chat.completions.create(
        model=base_model, messages=messages, temperature=1.0, seed=seed, max_tokens=16
    ).choices[0].message.content
    for seed in (5, 5, 6)
]


def refused(call):
    try:
        call()
    except openai.APIStatusError as error:
        body = error.body or {}
        return {"status": error.status_code, "param": body.get("param"), "code": body.get("code"), "message": body.get("message")}
    raise AssertionError("the request was not refused")


out["errors"] = {
    "unknown_model": refused(lambda: client.chat.completions.create(model="no-such-model", messages=messages)),
    "n": refused(lambda: client.chat.completions.create(model=base_model, messages=messages, n=2)),
    "too_long": refused(
        lambda: client.chat.completions.create(
            model=base_model, messages=[{"role": "user", "content": "wind " * 3000}]
        )
    ),
    "max_tokens": refused(
        lambda: client.chat.completions.create(model=base_model, messages=messages, max_tokens=100000)
    ),
    "tool_role": refused(
        lambda: client.chat.completions.create(
            model=base_model, messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}]
        )
    ),
}
print(json.dumps(out))
