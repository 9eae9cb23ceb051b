"""Magpie: the pre-query cut from real chat templates, the `query_form` filter, a fake-server run
(exact request shapes, resume) and a real run on the session vLLM server."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from fake_openai import FakeOpenAI
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from filters.base import FilterContext
from filters.query import QueryFormFilter
from generator.config import load_config, parse_config
from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.llm.model import load_tokenizer
from generator.prompting.magpie import pre_queries, pre_query
from generator.prompting.seeds import load_seeds
from generator.run.merge import merge_runs
from generator.run.pipeline import generate

# The chat templates as their models publish them (tokenizer_config.json), Jinja as written.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


def _tokenizer(template: str, bos: str, eos: str) -> PreTrainedTokenizerFast:
    """A real transformers tokenizer with the model's template and special tokens (a toy vocabulary:
    only the template is rendered)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")),
        bos_token=bos,
        eos_token=eos,
        chat_template=template,
    )


FAMILIES = {
    "llama3": lambda: _tokenizer(LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    "llama2": lambda: _tokenizer(LLAMA2, "<s>", "</s>"),
    "mistral": lambda: _tokenizer(MISTRAL, "<s>", "</s>"),
    "gemma": lambda: _tokenizer(GEMMA, "<bos>", "<eos>"),
    "smollm2": lambda: load_tokenizer("bundled"),
}

SMOLLM_DEFAULT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n"
)

CASES = [
    ("smollm2", None, SMOLLM_DEFAULT, ("<|im_end|>",)),
    (
        "smollm2",
        "You teach chemistry.",
        "<|im_start|>system\nYou teach chemistry.<|im_end|>\n<|im_start|>user\n",
        ("<|im_end|>",),
    ),
    ("llama3", None, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", ("<|eot_id|>",)),
    (
        "llama3",
        "You teach chemistry.",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou teach chemistry.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
        ("<|eot_id|>",),
    ),
    ("llama2", None, "<s>[INST] ", ("[/INST]", "</s>")),
    ("llama2", "You teach chemistry.", "<s>[INST] <<SYS>>\nYou teach chemistry.\n<</SYS>>\n\n", ("[/INST]", "</s>")),
    ("mistral", None, "<s>[INST] ", ("[/INST]", "</s>")),
    ("gemma", None, "<bos><start_of_turn>user\n", ("<end_of_turn>", "<eos>")),
]


@pytest.mark.parametrize(
    ("family", "system", "expected", "stop"),
    CASES,
    ids=[f"{c[0]}-{'system' if c[1] else 'no-system'}" for c in CASES],
)
def test_pre_query_is_the_text_before_the_user_message(family, system, expected, stop) -> None:
    query = pre_query(FAMILIES[family](), system)
    assert query.text == expected
    assert query.stop == stop
    assert query.system == system


@pytest.mark.parametrize("family", ["mistral", "gemma"])
def test_template_without_a_system_turn_refuses_a_system_prompt(family) -> None:
    with pytest.raises(ConfigError, match=r"refuses a system turn .*generation\.magpie\.system_prompts"):
        pre_query(FAMILIES[family](), "You teach chemistry.", where="model.name 'x'")


def test_template_that_rewrites_the_user_text_is_refused() -> None:
    shouting = _tokenizer("{% for m in messages %}<|user|>{{ m['content'] | upper }}{% endfor %}", "<s>", "</s>")
    with pytest.raises(ConfigError, match="does not render a user message's text as it is"):
        pre_query(shouting)


def test_topics_cross_system_prompts() -> None:
    tok = FAMILIES["llama3"]()
    queries = pre_queries(tok, ["You are terse."], ["baking", "tax law"], "The user asks about {topic}.")
    assert [(q.topic, q.system) for q in queries] == [
        ("baking", "You are terse.\n\nThe user asks about baking."),
        ("tax law", "You are terse.\n\nThe user asks about tax law."),
    ]
    assert queries[1].text.endswith(
        "You are terse.\n\nThe user asks about tax law.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
    )


def test_missing_tokenizer_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model\.name: '/no/such/model' is no folder"):
        load_tokenizer("/no/such/model")
    with pytest.raises(ConfigError, match=r"^model\.name: no tokenizer found for 'nobody/no-such-model-xyz'"):
        load_tokenizer("nobody/no-such-model-xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="tokenizer files"):
        load_tokenizer(str(tmp_path / "empty"))


def _llama3_folder(folder: Path) -> Path:
    _tokenizer(LLAMA3, "<|begin_of_text|>", "<|eot_id|>").save_pretrained(str(folder))
    return folder


def test_pre_queries_are_kept_in_the_cache_by_the_template_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun reads the pre-queries from the user cache (no tokenizer loaded); a changed template
    file, or another system prompt, derives them again; an unreadable entry is made again."""
    import generator.llm.model as model_module
    from generator.config import ModelConfig
    from generator.methods.magpie import MagpieConfig, magpie_prompts

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = _llama3_folder(tmp_path / "llama3")
    section = MagpieConfig(tokenizer=str(folder), system_prompts=["You teach chemistry."])
    loads = []
    real_load = model_module.load_tokenizer
    monkeypatch.setattr(model_module, "load_tokenizer", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    first = magpie_prompts(section, ModelConfig(), tmp_path)
    again = magpie_prompts(section, ModelConfig(), tmp_path)
    assert len(loads) == 1 and again == first
    assert again.queries[0].text.endswith("You teach chemistry.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n")
    assert "<|eot_id|>" in again.template_tokens and again.queries[0].stop == ("<|eot_id|>",)

    other = MagpieConfig(tokenizer=str(folder), system_prompts=["You teach physics."])
    assert "You teach physics." in magpie_prompts(other, ModelConfig(), tmp_path).queries[0].text
    assert len(loads) == 2

    template = folder / "chat_template.jinja"  # where transformers writes the template now
    template.write_text(template.read_text().replace("<|start_header_id|>", "<|header|>"))
    changed = magpie_prompts(section, ModelConfig(), tmp_path)
    assert len(loads) == 3 and "<|header|>user" in changed.queries[0].text

    for entry in (tmp_path / "cache" / "instructforge" / "magpie").iterdir():
        entry.write_text("{not json")
    assert magpie_prompts(section, ModelConfig(), tmp_path) == changed
    assert len(loads) == 4


# ---------------------------------------------------------------------------------------------
# The fragment and template-leak filter

FILTER_CASES = [
    ("chatml-end", "What is the boiling point of water?<|im_end|>", "template_leak"),
    ("chatml-next-turn", "Explain recursion.\n<|im_start|>assistant\nRecursion is", "template_leak"),
    ("llama3-header", "Name three rivers.<|start_header_id|>assistant", "template_leak"),
    ("inst", "[INST] Write a haiku about rain.", "template_leak"),
    ("gemma", "Summarize the plot of Hamlet.<end_of_turn>", "template_leak"),
    ("model-token", "Describe a cat <custom_tok> please.", "template_leak"),
    ("role-label", "User: How do I sort a list in Python?", "template_leak"),
    ("role-line", "How do tides work?\nassistant\nTides are caused", "template_leak"),
    ("sure", "Sure! Here is a poem about the sea.", "assistant_voice"),
    ("of-course", "Of course! Here are five tips for better sleep.", "assistant_voice"),
    ("happy-to", "I'd be happy to help you plan your trip.", "assistant_voice"),
    ("how-can-i-help", "Hello! How can I help you today?", "assistant_voice"),
    ("sorry", "I'm sorry, but I cannot do that.", "assistant_voice"),
    ("offers-help", "Hello, I think I can assist you with your blog post. Can we start here?", "assistant_voice"),
    ("user-sorry", "I'm sorry to bother you, but how do I reset my router?", None),
    ("user-here-is", "Here is my essay draft; can you proofread it?", None),
    ("sure-inside", "Make sure the function handles empty lists. How would you write it?", None),
    ("greeting", "Hi there!", "greeting_only"),
    ("thanks", "Thank you so much.", "greeting_only"),
    ("join-start", "and then explain why the sky is blue.", "fragment"),
    ("dangling-the", "Can you tell me about the", "fragment"),
    ("dangling-of", "What is the capital of", "fragment"),
    ("open-code", "Fix this code:\n```python\nprint('hi')", "fragment"),
    ("question", "What is the boiling point of water at high altitude?", None),
    ("imperative", "Write a short poem about autumn leaves.", None),
    ("lowercase-question", "how do i center a div in css?", None),
    ("closed-code", "Why does this fail?\n```python\nprint(1/0)\n```", None),
    ("ends-with-of-question", "What are sonnets made of?", None),
    ("here-inside", "Explain why here and now matter in Zen.", None),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
def test_query_form(text: str, reason: str | None) -> None:
    flt = QueryFormFilter(extra_markers=None)
    flt.setup(FilterContext(template_tokens=("<custom_tok>",)))
    verdict = flt.judge([Record(instruction=text)])[0]
    assert verdict.keep is (reason is None)
    assert verdict.reason == (reason or "")


def test_query_form_extra_markers() -> None:
    flt = QueryFormFilter(extra_markers=["### Response"])
    kept, dropped = flt.judge([Record("Write a limerick."), Record("Write a limerick.\n### Response")])
    assert kept.keep and dropped.reason == "template_leak" and dropped.detail == {"marker": "### Response"}


# ---------------------------------------------------------------------------------------------
# Config


def test_magpie_config_defaults() -> None:
    config = load_config("magpie.yaml")
    assert config.generation.method == "magpie" and config.generation.instances == "response"
    names = [s.name for s in config.filters.instructions]
    default_names = [s.name for s in parse_config({}).filters.instructions]
    assert names == ["query_form", *default_names]
    # A chain the user wrote is theirs; an explicit instances setting too.
    own = parse_config(
        {
            "generation": {"method": "magpie", "instances": "self_instruct"},
            "filters": {"instructions": [{"name": "length"}]},
        }
    )
    assert [s.name for s in own.filters.instructions] == ["length"]
    assert own.generation.instances == "self_instruct"


def test_topic_hint_must_name_the_topic() -> None:
    with pytest.raises(ConfigError, match=r"generation\.magpie.*topic_hint .* has no \{topic\}"):
        parse_config({"generation": {"method": "magpie", "magpie": {"topics": ["x"], "topic_hint": "Be nice."}}})


# ---------------------------------------------------------------------------------------------
# A whole run against the fake server: the exact request shapes, records, funnel and resume

INSTRUCTIONS = [
    "What is the difference between a virus and a bacterium?",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Sure! Here is a list of healthy breakfast ideas.",
    "Explain how compound interest works.\n<|im_start|>assistant\nCompound interest is",
    "How do I reverse a linked list in Python?<|im_end|>\n",  # the server stops there
    "Can you tell me about the",
    "Give me three tips for improving my sleep schedule.",
    "<|im_start|>assistant\nHello",
]


def _fake_run_config(tmp_path: Path, url: str, **generation: Any):
    overrides = {
        "server.endpoints": [url],
        "model.served_name": "fake-model",
        "generation.num_instructions": 4,
        "generation.instructions_per_prompt": 2,
        "generation.max_rounds": 2,
        "report.enabled": False,  # not about the report (tests/fake_run.py: NO_REPORT)
        **{f"generation.{k}": v for k, v in generation.items()},
    }
    config = load_config("magpie.yaml", overrides=overrides)
    config.run_dir = tmp_path / "run"
    return config


@pytest.mark.fake_server
def test_fake_server_run(tmp_path: Path) -> None:
    counter = itertools.count()
    bodies: list[dict[str, Any]] = []

    def reply(body: dict[str, Any], i: int) -> str:
        bodies.append(body)
        if "prompt" in body:
            return INSTRUCTIONS[next(counter) % len(INSTRUCTIONS)]
        return f"An answer to: {body['messages'][-1]['content'][:40]}"

    fake = FakeOpenAI(reply=reply)
    url = fake.start_in_thread()
    try:
        config = _fake_run_config(tmp_path, url)
        result = generate(config, progress=False)
        served = sum(fake.served.values())
        again = generate(_fake_run_config(tmp_path, url), progress=False)
        assert sum(fake.served.values()) == served  # the rerun sent nothing
    finally:
        fake.stop_thread()

    completions = [b for b in bodies if "prompt" in b]
    chats = [b for b in bodies if "messages" in b]
    assert completions and chats
    for body in completions:
        assert body["prompt"] == SMOLLM_DEFAULT
        assert body["stop"] == ["<|im_end|>"] and body["n"] == 2
        assert body["add_special_tokens"] is False and body["skip_special_tokens"] is False
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (1.0, 1.0, 96)
    # The instructions came from the model alone: no seed task is in any request.
    seeds = [s.instruction for s in load_seeds("builtin")]
    sent = json.dumps(bodies, ensure_ascii=False)
    assert not [s for s in seeds if s in sent]

    rows = datasets.load_dataset(str(result.dataset_dir))["train"]
    assert rows.num_rows == result.records == again.records == 4
    assert sorted(rows["instruction"]) == [
        "Give me three tips for improving my sleep schedule.",
        "How do I reverse a linked list in Python?",
        "What is the difference between a virus and a bacterium?",
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    ]
    assert all(o.startswith("An answer to: ") for o in rows["output"])
    assert {m["template"] for m in rows["meta"]} == {"magpie"}
    assert "none (Magpie" in (result.dataset_dir / "README.md").read_text()
    funnel = json.loads((result.run_dir / "funnel.json").read_text())
    drops = funnel["drops"]["query_form"]
    assert drops["template_leak"] >= 2 and drops["assistant_voice"] >= 1 and drops["fragment"] >= 1
    assert funnel["candidates"] == funnel["kept"] + funnel["dropped"]
    # A Magpie run merges like any shard.
    merged = merge_runs([result.run_dir], tmp_path / "merged", dedup=[{"name": "exact_dedup"}])
    assert merged.records == 4


# ---------------------------------------------------------------------------------------------
# The real server


@pytest.mark.vllm
def test_the_default_run_is_magpie_on_the_real_model(default_run: Any, default_run_sent: list[Any]) -> None:
    """`make demo`'s config (Magpie) as the session's one real run made it (tests/conftest.py): the
    pre-query is the bundled model's own template on the wire, no seed task is in any request, and
    no row carries the template."""
    config, result = default_run
    assert config.generation.method == "magpie"
    assert result.records > 0
    asked = [r for r in default_run_sent if r.meta.get("stage") == "instructions"]
    assert asked and all(r.prompt == SMOLLM_DEFAULT and r.messages is None for r in asked)
    seeds = [s.instruction for s in load_seeds("builtin")]
    assert not [s for r in default_run_sent for s in seeds if s in (r.prompt or json.dumps(r.messages))]
    rows = datasets.load_dataset(str(result.dataset_dir))["train"]
    for row in rows:
        assert row["instruction"] and row["instruction"] not in SMOLLM_DEFAULT
        assert "<|im_" not in row["instruction"] and row["output"]
        assert row["meta"]["template"] == "magpie"


@pytest.mark.parametrize(
    ("text", "finish", "instruction", "reason"),
    [
        ("  What is a prime number?\n", "stop", "What is a prime number?", None),
        ("Explain this.<|im_start|>assistant", "stop", "Explain this.<|im_start|>assistant", None),
        ("Write an essay about the history of", "length", None, "truncated"),
        ("  \n", "stop", None, "empty_answer"),
    ],
    ids=["kept-stripped", "leak-left-for-the-filter", "cut-off", "empty"],
)
def test_magpie_query_parser(text: str, finish: str, instruction: str | None, reason: str | None) -> None:
    from generator.prompting.parse import parse

    result = parse("magpie_query", text, finish)
    assert [i.instruction for i in result.items] == ([instruction] if instruction else [])
    assert [r.reason for r in result.rejections] == ([reason] if reason else [])


def test_templates_render_magpie(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from generator.cli import main

    config = tmp_path / "magpie.yaml"
    config.write_text("generation: {method: magpie, magpie: {system_prompts: [You teach chemistry.]}}\n")
    assert main(["templates", "render", "magpie", "-c", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "prompt": "<|im_start|>system\nYou teach chemistry.<|im_end|>\n<|im_start|>user\n",
            "stop": ["<|im_end|>"],
            "system": "You teach chemistry.",
            "topic": None,
        }
    ]
    assert main(["templates", "render", "magpie"]) == 0
    assert SMOLLM_DEFAULT in capsys.readouterr().out
    config.write_text("model: {name: /no/such/model}\ngeneration: {method: magpie}\n")
    assert main(["templates", "render", "magpie", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.name: '/no/such/model' is no folder" in err


def test_generate_without_a_tokenizer_stops_before_anything_starts(tmp_path: Path) -> None:
    config = parse_config({"run_dir": str(tmp_path / "run"), "model": {"name": "nobody/no-such-model-xyz"}})
    config.generation.method = "magpie"
    with pytest.raises(ConfigError, match=r"^model\.name: no tokenizer found for 'nobody/no-such-model-xyz'"):
        generate(config, progress=False)
    assert not (tmp_path / "run").exists()  # no run directory, no server
