from models.templates import template_for

MSGS = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "See you."},
]


def test_gemma_folds_system_and_spans_cover_render() -> None:
    t = template_for("gemma3")
    text = t.render(MSGS, add_generation_prompt=False)
    assert text.startswith("<start_of_turn>user\nBe kind.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!")
    spans = t.spans(MSGS)
    assert "".join(s for s, _ in spans) == text
    assert [s for s, a in spans if a] == ["Hello!<end_of_turn>\n", "See you.<end_of_turn>\n"]
    assert t.render(MSGS[:2]).endswith("<start_of_turn>model\n")
    assert "<end_of_turn>" in t.stop and "\n" in t.stop


def test_chatml_and_llama3_builtins() -> None:
    assert template_for("qwen2").name == "chatml"
    assert template_for("llama", has_token=lambda s: s == "<|start_header_id|>").name == "llama3"
    assert template_for("llama", has_token=lambda s: False).name == "chatml"


def test_gguf_jinja_template_strips_bos_and_spans() -> None:
    src = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    t = template_for("qwen2", src, bos="<s>", eos="</s>")
    assert t.name == "gguf" and "<|im_end|>" in t.stop and "\n" not in t.stop
    assert t.render(MSGS[1:2]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert [s for s, a in t.spans(MSGS) if a] == ["Hello!<|im_end|>\n", "See you.<|im_end|>\n"]
