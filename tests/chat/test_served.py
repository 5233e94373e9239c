"""chat/served.py: CHAT_MODELS, CHAT_MODEL_OPTIONS and CHAT_DEFAULT_MODEL read into the served models, and every
value that cannot work refused with its own sentence naming the variable (settings and the launcher show it as
it is: tests/test_deploy.py)."""

import json
import re

import pytest

from chat import served
from chat.served import ServedModel, ServedModelsError

BUNDLED = "bundled:smollm2-135m-instruct"


def refused(models, options=None, one_model=BUNDLED) -> str:
    with pytest.raises(ServedModelsError) as caught:
        served.parse(models, one_model, options)
    return str(caught.value)


def test_unset_the_deployment_serves_chat_model_alone_under_its_own_spec():
    for models in (None, "", "   "):
        assert served.parse(models, BUNDLED) == (ServedModel(name=BUNDLED, spec=BUNDLED, label=BUNDLED),)
    assert served.parse("", "/srv/models/qwen") == (
        ServedModel(name="/srv/models/qwen", spec="/srv/models/qwen", label="/srv/models/qwen"),
    )
    # Options apply to the one-model form too, under that name.
    (one,) = served.parse("", BUNDLED, {BUNDLED: {"label": "SmolLM2", "max_batch": 4}})
    assert (one.label, one.max_batch) == ("SmolLM2", 4)


def test_models_are_listed_in_order_with_their_options_and_defaults():
    options = json.dumps(
        {
            "small": {
                "label": "Small",
                "description": "Quick answers",
                "device": "cuda:0",
                "precision": "bfloat16",
                "max_batch": 8,
                "workers": 2,
                "groups": ["staff", "testers"],
            },
            "HuggingFaceTB/SmolLM2-360M-Instruct": {"workers": 0},
        }
    )
    got = served.parse(
        " small = bundled:smollm2-135m-instruct ,, "
        "HuggingFaceTB/SmolLM2-360M-Instruct=HuggingFaceTB/SmolLM2-360M-Instruct,base-lora=/srv/models/base=v2",
        "ignored when CHAT_MODELS is set",
        options,
    )
    assert [m.name for m in got] == ["small", "HuggingFaceTB/SmolLM2-360M-Instruct", "base-lora"]
    small, hub, local = got
    assert small == ServedModel(
        name="small",
        spec=BUNDLED,
        label="Small",
        description="Quick answers",
        device="cuda:0",
        precision="bfloat16",
        max_batch=8,
        workers=2,
        groups=("staff", "testers"),
    )
    # Unset options fall back to the site's settings (None) and everyone may use the model (no groups).
    assert (hub.label, hub.description, hub.device, hub.precision, hub.max_batch, hub.groups) == (
        hub.name,
        "",
        None,
        None,
        None,
        (),
    )
    assert local.spec == "/srv/models/base=v2"  # the first '=' separates; a spec may hold more
    # Workers on this host: the model's own figure (0: another host serves it), else WORKERS.
    assert (small.host_workers(3), hub.host_workers(3), local.host_workers(3)) == (2, 0, 3)
    # Already-parsed options (a dict) are taken as they are; empty text is no options.
    assert served.parse("a=x", "", {"a": {"label": "A"}})[0].label == "A"
    # `dtype` is the older name of `precision`, read as it.
    assert served.parse("a=x", "", {"a": {"dtype": "int8"}})[0].precision == "int8"
    assert served.parse("a=x", "", "  ")[0].label == "a"


def test_the_default_model_is_checked_against_the_list():
    models = served.parse("a=x,b=y", "")
    assert served.default_name(models, None) == served.default_name(models, "") == "a"  # the first listed
    assert served.default_name(models, "b") == "b"
    with pytest.raises(ServedModelsError) as caught:
        served.default_name(models, "c")
    assert str(caught.value) == "CHAT_DEFAULT_MODEL=c is not one of the served models (a, b)."
    with pytest.raises(ServedModelsError) as caught:
        served.default_name(models, "c", "CHAT_WORKER_MODEL")
    assert str(caught.value) == "CHAT_WORKER_MODEL=c is not one of the served models (a, b)."


@pytest.mark.parametrize(
    "models, options, sentence",
    [
        # CHAT_MODELS
        ("a=x,broken", None, "CHAT_MODELS: 'broken' is not name=spec (e.g. smollm=bundled:smollm2-135m-instruct)."),
        ("=x", None, "CHAT_MODELS: '=x' is not name=spec (e.g. smollm=bundled:smollm2-135m-instruct)."),
        ("a=", None, "CHAT_MODELS: 'a=' is not name=spec (e.g. smollm=bundled:smollm2-135m-instruct)."),
        (
            " , ,",
            None,
            "CHAT_MODELS lists no model; write name=spec pairs separated by commas, or unset it.",
        ),
        (
            "my model=x",
            None,
            "CHAT_MODELS: the name 'my model' may hold only letters, digits and . _ : / - "
            "(at most 100; + names adapters).",
        ),
        (
            "-a=x",
            None,
            "CHAT_MODELS: the name '-a' may hold only letters, digits and . _ : / - (at most 100; + names adapters).",
        ),
        (
            "a" * 101 + "=x",
            None,
            f"CHAT_MODELS: the name '{'a' * 101}' may hold only letters, digits and . _ : / - "
            "(at most 100; + names adapters).",
        ),
        (
            "a+b=x",
            None,
            "CHAT_MODELS: the name 'a+b' may hold only letters, digits and . _ : / - (at most 100; + names adapters).",
        ),
        ("a=x,b=y,a=z", None, "CHAT_MODELS names a twice."),
        # CHAT_MODEL_OPTIONS as a whole
        ("a=x", "{not json", "CHAT_MODEL_OPTIONS is not valid JSON: "),
        ("a=x", "[1, 2]", "CHAT_MODEL_OPTIONS must be a JSON object keyed by model name."),
        ("a=x", {"a": {}, "b": {}, "c": {}}, "CHAT_MODEL_OPTIONS names model(s) not in CHAT_MODELS: b, c."),
        # one model's options
        ("a=x", {"a": ["label"]}, "CHAT_MODEL_OPTIONS: the options of a must be a JSON object."),
        (
            "a=x",
            {"a": {"gpu": 1, "batch": 2}},
            "CHAT_MODEL_OPTIONS: a has unknown option(s) batch, gpu; "
            "known: description, device, dtype, groups, label, max_batch, precision, workers.",
        ),
        ("a=x", {"a": {"label": 5}}, "CHAT_MODEL_OPTIONS: a.label must be a string."),
        ("a=x", {"a": {"description": None}}, "CHAT_MODEL_OPTIONS: a.description must be a string."),
        ("a=x", {"a": {"device": 0}}, "CHAT_MODEL_OPTIONS: a.device must be a string."),
        ("a=x", {"a": {"dtype": ["bfloat16"]}}, "CHAT_MODEL_OPTIONS: a.dtype must be a string."),
        ("a=x", {"a": {"precision": 8}}, "CHAT_MODEL_OPTIONS: a.precision must be a string."),
        (
            "a=x",
            {"a": {"precision": "int8", "dtype": "bfloat16"}},
            "CHAT_MODEL_OPTIONS: a gives both precision and dtype (its older name): keep precision only.",
        ),
        ("a=x", {"a": {"max_batch": 0}}, "CHAT_MODEL_OPTIONS: a.max_batch must be a whole number of at least 1."),
        ("a=x", {"a": {"max_batch": 2.5}}, "CHAT_MODEL_OPTIONS: a.max_batch must be a whole number of at least 1."),
        ("a=x", {"a": {"max_batch": "8"}}, "CHAT_MODEL_OPTIONS: a.max_batch must be a whole number of at least 1."),
        ("a=x", {"a": {"workers": -1}}, "CHAT_MODEL_OPTIONS: a.workers must be a whole number of at least 0."),
        ("a=x", {"a": {"workers": True}}, "CHAT_MODEL_OPTIONS: a.workers must be a whole number of at least 0."),
        ("a=x", {"a": {"groups": "staff"}}, "CHAT_MODEL_OPTIONS: a.groups must be a list of group names."),
        ("a=x", {"a": {"groups": ["staff", ""]}}, "CHAT_MODEL_OPTIONS: a.groups must be a list of group names."),
        ("a=x", {"a": {"groups": [3]}}, "CHAT_MODEL_OPTIONS: a.groups must be a list of group names."),
    ],
)
def test_every_value_that_cannot_work_is_refused_with_its_sentence(models, options, sentence):
    got = refused(models, options)
    assert got.startswith(sentence) if sentence.endswith(": ") else got == sentence, got
    assert re.match(r"^CHAT_(MODELS|MODEL_OPTIONS)\b", got)  # names the variable to fix


def test_options_for_the_one_model_form_must_name_chat_models_value():
    assert refused("", {"other": {}}) == "CHAT_MODEL_OPTIONS names model(s) not in CHAT_MODELS: other."


def test_the_one_model_form_keeps_any_chat_model_value_an_earlier_release_took_as_its_name():
    # A local folder's path was always a valid CHAT_MODEL; it stays the model's name (what conversations and the
    # API's `model` say), though CHAT_MODELS names may not start with a slash.
    for value in ("/srv/models/qwen", "./models/my model"):
        assert [(m.name, m.spec) for m in served.parse(None, value)] == [(value, value)]
    assert refused("/srv/models/qwen=/srv/models/qwen").startswith("CHAT_MODELS: the name '/srv/models/qwen' may")
    for value in ("/srv/a,b", "/" + "x" * 200, "/srv/a\nb"):
        assert refused(None, one_model=value) == (
            f"CHAT_MODEL={value!r} cannot name a model: at most 200 printable characters, no comma and no + "
            "(it names adapters)."
        )
