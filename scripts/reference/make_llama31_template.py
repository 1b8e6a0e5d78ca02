"""The Llama-3.1-Instruct chat template fixture (run by hand, never by CI).

Writes trainer/tests/fixtures/reference/llama31-template/: the tokenizer of
llama3-tiny with the chat template meta-llama/Llama-3.1-8B-Instruct ships
(templates/llama-3.1-instruct.jinja, as its tokenizer_config.json has it), and
reference.json with what transformers' apply_chat_template gives for a set of
conversations: the text and the ids. The template always writes a system header
with "Cutting Knowledge Date" and "Today Date" (its default date string, since
transformers passes none), so the trainer must render it too.

    /tmp/refvenv/bin/python scripts/reference/make_llama31_template.py
"""

import json
import shutil
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "trainer/tests/fixtures/reference/llama3-tiny"
OUT = ROOT / "trainer/tests/fixtures/reference/llama31-template"
TEMPLATE = Path(__file__).resolve().parent / "templates/llama-3.1-instruct.jinja"

CHATS = [
    {"messages": [{"role": "user", "content": "Where is my order?"}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": "You answer for the bike shop."},
            {"role": "user", "content": "Can I return a helmet?"},
            {"role": "assistant", "content": "Yes, within 30 days, unworn."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "  Tell me a short story.\n"},
            {"role": "assistant", "content": "\nOnce, a bell rang twice.  "},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "system", "content": "\n  Be brief.  \n"},
            {"role": "user", "content": "Two words?"},
        ],
        "add_generation_prompt": True,
    },
]


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"):
        shutil.copy(SOURCE / name, OUT / name)
    template = TEMPLATE.read_text()
    (OUT / "chat_template.jinja").write_text(template)
    tok = AutoTokenizer.from_pretrained(OUT)
    assert tok.chat_template == template
    chats = []
    for chat in CHATS:
        text = tok.apply_chat_template(chat["messages"], add_generation_prompt=chat["add_generation_prompt"], tokenize=False)
        ids = tok.apply_chat_template(
            chat["messages"], add_generation_prompt=chat["add_generation_prompt"], tokenize=True, return_dict=False
        )
        assert "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" in text, text
        chats.append({**chat, "input_ids": ids, "text": text})
    reference = {"transformers_version": transformers.__version__, "chat": chats}
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")
    for path in sorted(OUT.iterdir()):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
