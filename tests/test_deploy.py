"""The production environment (deploy/production.env.example) and the settings it drives, each read by a fresh
interpreter with a clean environment, as systemd or a shell that sources the file would start one."""

import json
import re
import subprocess
import sys

import pytest

from chatsite import stack
from chatsite.embedded import forget_redis_url, record_redis_url

EXAMPLE = stack.ROOT / "deploy" / "production.env.example"
WORKER_EXAMPLE = stack.ROOT / "deploy" / "worker.env.example"
SETTINGS_TABLE = (stack.ROOT / "docs" / "settings.md").read_text()
SHOW = (
    "import django; django.setup(); from django.conf import settings as s; import json; print(json.dumps("
    "{k: getattr(s, k, None) for k in ('DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
    "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER', 'CSRF_TRUSTED_ORIGINS', "
    "'REDIS_URL', 'CHAT_REDIS_EMBEDDED', 'CHAT_TORCH_THREADS')}))"
)


def sourced_run(args: list[str], *, extra: str = "", source: bool = True) -> subprocess.CompletedProcess:
    """``args`` in ``env -i bash``, after sourcing the example (unless not ``source``) and ``extra`` lines."""
    script = (
        (f'set -a; . "{EXAMPLE}"; ' if source else "set -a; ")
        + "DJANGO_SETTINGS_MODULE=chatsite.settings; "
        + extra
        + "; set +a; exec "
        + " ".join(args)
    )
    return subprocess.run(
        ["env", "-i", f"PATH={stack.BIN}:/usr/bin:/bin", "bash", "-c", script],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "secret_key"
    subprocess.run([sys.executable, "-m", "chatsite.secret", str(path)], check=True, timeout=30)
    return path


def example_names(path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        # systemd's EnvironmentFile, a POSIX shell and honcho read these lines the same way: no quotes, expansions,
        # spaces; or the whole value in single quotes (CHAT_MODEL_OPTIONS' JSON), which all three take as written
        # (nothing in it that systemd or a shell would treat: no quote, $, backquote or backslash).
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=([^\s'\"$`\\;&|<>()]*|'[^'$`\\]*')", line), line
        names.append(line.split("=", 1)[0])
    assert len(names) == len(set(names))
    return names


def test_the_example_is_variables_only_and_every_variable_is_in_the_settings_table():
    names = example_names(EXAMPLE) + example_names(WORKER_EXAMPLE)
    assert "HTTPS" in names and "TRUSTED_PROXY" in names and "CHAT_WORKER_MODEL" in names
    missing = [n for n in names if not re.search(rf"^\| [^|]*`{n}`", SETTINGS_TABLE, re.M)]
    assert missing == [], f"not in the settings table (docs/settings.md): {missing}"


def test_check_deploy_reports_no_issue_with_the_production_environment(key_file):
    out = sourced_run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        extra=f"SECRET_KEY_FILE={key_file}",
    )
    assert out.returncode == 0 and "System check identified no issues" in out.stdout, out.stdout + out.stderr


def test_the_production_environment_turns_on_https_behind_the_trusted_proxy(key_file):
    out = sourced_run([sys.executable, "-c", f'"{SHOW}"'], extra=f"SECRET_KEY_FILE={key_file}")
    got = json.loads(out.stdout)
    assert got["DEBUG"] is False and got["SESSION_COOKIE_SECURE"] and got["CSRF_COOKIE_SECURE"]
    assert got["SECURE_SSL_REDIRECT"] and got["SECURE_HSTS_SECONDS"] == 31536000
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert got["CSRF_TRUSTED_ORIGINS"] == ["https://chat.example.com"]
    # Without TRUSTED_PROXY no forwarded header is believed, neither by Django nor by Daphne.
    out = sourced_run([sys.executable, "-c", f'"{SHOW}"'], extra=f"SECRET_KEY_FILE={key_file}; TRUSTED_PROXY=false")
    assert json.loads(out.stdout)["SECURE_PROXY_SSL_HEADER"] is None
    trusted = stack.LauncherSettings.from_env({"TRUSTED_PROXY": "true", "BIND_ADDRESS": "10.0.0.5"})
    assert "--proxy-headers" in stack.daphne_args(8000, trusted) and "10.0.0.5" in stack.daphne_args(8000, trusted)
    assert "--proxy-headers" not in stack.daphne_args(8000, stack.LauncherSettings.from_env({}))


def test_without_debug_a_missing_secret_key_is_an_error_that_says_what_to_do(tmp_path):
    missing = tmp_path / "no_key"
    out = sourced_run([sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={missing}")
    assert out.returncode != 0 and f"SECRET_KEY is not set and {missing} does not exist" in out.stderr
    assert not missing.exists()  # never invented: another host would invent a different one
    out = sourced_run([sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={missing}; DEBUG=true")
    assert out.returncode == 0 and len(missing.read_text()) > 40  # a development machine gets one generated
    out = sourced_run(
        [sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={missing}; SECRET_KEY=" + "k" * 60
    )
    assert out.returncode == 0


def test_the_removed_chat_trusted_proxy_count_is_an_error_naming_what_replaces_it(key_file):
    """A deployment upgraded with CHAT_TRUSTED_PROXY_COUNT still set must not start counting every failure
    against its proxy's address: it refuses to start, and says what to set instead."""
    for proxies in ("1", "0", ""):  # any value, empty too: the variable is there
        out = sourced_run(
            [sys.executable, "manage.py", "check"],
            extra=f"SECRET_KEY_FILE={key_file}; CHAT_TRUSTED_PROXY_COUNT={proxies}",
        )
        assert out.returncode != 0 and "ImproperlyConfigured: CHAT_TRUSTED_PROXY_COUNT is no longer read" in out.stderr
        assert "TRUSTED_PROXY=true" in out.stderr and "real_ip_header X-Forwarded-For" in out.stderr
    assert sourced_run([sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={key_file}").returncode == 0


def test_commands_find_the_embedded_redis_that_make_run_recorded(tmp_path, key_file):
    """The launcher records its embedded Redis's URL in CHAT_REDIS_DIR; settings read it when REDIS_URL is
    unset, and an explicit REDIS_URL still wins."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    show = [sys.executable, "-c", f'"{SHOW}"']
    base = f"SECRET_KEY_FILE={key_file}; CHAT_REDIS_DIR={redis_dir}"
    assert json.loads(sourced_run(show, extra=base, source=False).stdout)["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    record_redis_url(redis_dir, "redis://127.0.0.1:41234/0")
    assert json.loads(sourced_run(show, extra=base, source=False).stdout)["REDIS_URL"] == "redis://127.0.0.1:41234/0"
    got = sourced_run(show, extra=base + "; REDIS_URL=redis://10.0.0.9:6379/1", source=False)
    assert json.loads(got.stdout)["REDIS_URL"] == "redis://10.0.0.9:6379/1"
    forget_redis_url(redis_dir, "redis://127.0.0.1:9/0")  # another launcher's URL: left alone
    assert (redis_dir / "redis.url").exists()
    forget_redis_url(redis_dir, "redis://127.0.0.1:41234/0")
    assert not (redis_dir / "redis.url").exists()


def test_only_the_redis_make_run_started_counts_as_embedded(tmp_path, key_file):
    """Settings mark the Redis as the embedded one (whose append-only file an account deletion rewrites,
    docs/security.md) only when it is the one the launcher recorded: for its children (REDIS_URL is the recorded
    URL) and for a command beside it (no REDIS_URL); never for a Redis of the operator's own."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    show = [sys.executable, "-c", f'"{SHOW}"']
    base = f"SECRET_KEY_FILE={key_file}; CHAT_REDIS_DIR={redis_dir}"

    def embedded(extra: str = "") -> bool:
        return json.loads(sourced_run(show, extra=base + extra, source=False).stdout)["CHAT_REDIS_EMBEDDED"]

    assert not embedded() and not embedded("; REDIS_URL=redis://10.0.0.9:6379/1")
    record_redis_url(redis_dir, "redis://127.0.0.1:41234/0")
    assert embedded() and embedded("; REDIS_URL=redis://127.0.0.1:41234/0")
    assert not embedded("; REDIS_URL=redis://10.0.0.9:6379/1")


def test_torch_threads_divide_the_cores_among_the_workers_of_a_host(key_file):
    import os

    cores = len(os.sched_getaffinity(0))
    show = [sys.executable, "-c", f'"{SHOW}"']
    for workers in (1, 2, cores + 1):
        got = json.loads(sourced_run(show, extra=f"SECRET_KEY_FILE={key_file}; WORKERS={workers}").stdout)
        # Settings count as make run starts workers: WORKERS of each of the example's two models.
        assert got["CHAT_TORCH_THREADS"] == max(1, cores // (2 * workers))
        # A worker a service manager starts alone (the unit, the Procfile): WORKERS is the host's instances.
        env = {"WORKERS": str(workers), "PATH": "/usr/bin"}
        served_alone = stack.service_env(env, stack.LauncherSettings.from_env(env), "worker")
        assert served_alone["CHAT_TORCH_THREADS"] == str(max(1, cores // workers)) and "CHAT_TORCH_THREADS" not in env
    got = json.loads(sourced_run(show, extra=f"SECRET_KEY_FILE={key_file}; WORKERS=2; CHAT_TORCH_THREADS=3").stdout)
    assert got["CHAT_TORCH_THREADS"] == 3
    env = {"WORKERS": "2", "CHAT_TORCH_THREADS": "3"}
    assert stack.service_env(env, stack.LauncherSettings.from_env(env), "worker")["CHAT_TORCH_THREADS"] == "3"
    assert "CHAT_TORCH_THREADS" not in stack.service_env({}, stack.LauncherSettings.from_env({}), "web")


def test_a_chat_worker_gpus_entry_that_is_no_gpu_stops_the_launcher_before_it_starts_anything(tmp_path):
    for good in (
        "0,1",
        "GPU-5f3c1a2b-0e4d-11ee-9d3a-0242ac120002",
        "MIG-5f3c1a2b-0e4d-11ee-9d3a-0242ac120002",
        "MIG-GPU-5f3c1a2b/1/0",
    ):
        assert stack.LauncherSettings.from_env({"CHAT_WORKER_GPUS": good}).worker_gpus == tuple(good.split(","))
    for bad in ("cuda:1", "0,gpu1", "1.5"):
        with pytest.raises(stack.LauncherSettingsError, match=r"^CHAT_WORKER_GPUS=.* not a GPU\. Give each"):
            stack.LauncherSettings.from_env({"CHAT_WORKER_GPUS": bad})
    with pytest.raises(stack.LauncherSettingsError, match="CHAT_DEVICE=cuda:1 cannot work beside CHAT_WORKER_GPUS"):
        stack.LauncherSettings.from_env({"CHAT_WORKER_GPUS": "0,1", "CHAT_DEVICE": "cuda:1"})
    assert stack.LauncherSettings.from_env({"CHAT_WORKER_GPUS": "0", "CHAT_DEVICE": "cuda:0"}).worker_gpus == ("0",)
    # The launcher itself: a sentence and exit status 2, no embedded Redis started (its directory stays empty).
    for args in ([], ["worker"]):
        out = subprocess.run(
            [sys.executable, "-m", "chatsite.stack", *args],
            cwd=stack.ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "CHAT_WORKER_GPUS": "cuda:1", "CHAT_REDIS_DIR": str(tmp_path / "redis")},
        )
        assert out.returncode == 2 and "CHAT_WORKER_GPUS='cuda:1': 'cuda:1' is not a GPU" in out.stderr, out
        assert not (tmp_path / "redis").exists()


def test_every_deployed_daphne_gets_the_launchers_command_line():
    """chat.access's "one access log, never two" holds for Daphne as the launcher starts it (daphne_args: -v 0
    with JSON logs): the systemd unit and the Procfile start it that way too."""
    unit = (stack.ROOT / "deploy" / "systemd" / "chat-web@.service").read_text()
    assert re.search(r"^ExecStart=\S+/python -m chatsite\.stack web$", unit, re.M)
    assert re.search(r"^web: python -m chatsite\.stack web$", (stack.ROOT / "deploy" / "Procfile").read_text(), re.M)


def test_chat_worker_gpus_give_each_launched_worker_its_own_gpu():
    env = {"PATH": "/usr/bin", "WORKERS": "3", "CHAT_WORKER_GPUS": " 0, 1 "}
    conf = stack.LauncherSettings.from_env(env)
    assert conf.worker_gpus == ("0", "1")
    got = [stack.worker_env(env, conf, i) for i in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in got] == ["0", "1", "0"]  # wrapping round: two share GPU 0
    assert all(e["PATH"] == "/usr/bin" for e in got) and "CUDA_VISIBLE_DEVICES" not in env  # a copy each
    unset = {"WORKERS": "2", "CUDA_VISIBLE_DEVICES": "3"}  # unset: every worker inherits the launcher's
    conf = stack.LauncherSettings.from_env(unset)
    assert conf.worker_gpus == () and [stack.worker_env(unset, conf, i)["CUDA_VISIBLE_DEVICES"] for i in range(2)] == [
        "3",
        "3",
    ]


def test_json_logs_turn_off_daphnes_plain_text_access_log():
    assert stack.daphne_args(8000, stack.LauncherSettings.from_env({"LOG_FORMAT": "json"}))[-3:-1] == ["-v", "0"]
    assert "-v" not in stack.daphne_args(8000, stack.LauncherSettings.from_env({}))  # text: Daphne's own log


def test_https_without_a_trusted_proxy_is_a_warning(settings):
    from django.core.checks import run_checks

    settings.HTTPS, settings.TRUSTED_PROXY = True, False
    assert "chat.W001" in [m.id for m in run_checks(tags=["security"])]
    settings.TRUSTED_PROXY = True
    assert "chat.W001" not in [m.id for m in run_checks(tags=["security"])]
    settings.HTTPS, settings.TRUSTED_PROXY = False, False  # plain HTTP, no proxy: nothing to say
    assert "chat.W001" not in [m.id for m in run_checks(tags=["security"])]


TWO_MODELS = {
    "PATH": "/usr/bin",
    "CHAT_MODELS": "small=bundled:smollm2-135m-instruct,big=/srv/models/big,spare=/srv/models/spare",
    "CHAT_MODEL_OPTIONS": json.dumps({"big": {"workers": 2}, "spare": {"workers": 0}}),
}


def test_make_run_starts_workers_for_every_model_each_holding_its_own_and_reading_its_queue():
    conf = stack.LauncherSettings.from_env(TWO_MODELS)
    # WORKERS per model; a model's `workers` option overrides it (0: another host serves it).
    assert conf.worker_plan() == ["small", "big", "big"]
    assert stack.LauncherSettings.from_env({**TWO_MODELS, "WORKERS": "3"}).worker_plan() == [
        "small",
        "small",
        "small",
        "big",
        "big",
    ]
    assert (conf.default_model, conf.worker_model) == ("small", "small")  # the first listed, unless named
    # Each worker reads its model's queue; the default model's also the shared one (an earlier release's tasks).
    assert stack.worker_queues(conf, "small") == "inference.model.small,inference"
    assert stack.worker_queues(conf, "big") == "inference.model.big"
    other = stack.LauncherSettings.from_env({**TWO_MODELS, "CHAT_DEFAULT_MODEL": "big"})
    assert stack.worker_queues(other, "small") == "inference.model.small"
    assert stack.worker_queues(other, "big") == "inference.model.big,inference"

    def queues(args: list[str]) -> str:
        return args[args.index("-Q") + 1]

    assert queues(stack.worker_args(conf, model="big")) == "inference.model.big"
    # `python -m chatsite.stack worker` (systemd, honcho): CHAT_WORKER_MODEL's queue, else the default model's.
    assert queues(stack.worker_args(conf)) == "inference.model.small,inference"
    held = stack.LauncherSettings.from_env({**TWO_MODELS, "CHAT_WORKER_MODEL": "spare"})
    assert held.worker_model == "spare" and queues(stack.worker_args(held)) == "inference.model.spare"

    # Each launched worker's environment names its model; CHAT_WORKER_GPUS spreads every model's workers.
    env = {**TWO_MODELS, "CHAT_WORKER_GPUS": "0,1"}
    conf = stack.LauncherSettings.from_env(env)
    got = [stack.worker_env(env, conf, i, model) for i, model in enumerate(conf.worker_plan())]
    assert [(e["CHAT_WORKER_MODEL"], e["CUDA_VISIBLE_DEVICES"]) for e in got] == [
        ("small", "0"),
        ("big", "1"),
        ("big", "0"),
    ]
    assert "CHAT_WORKER_MODEL" not in env  # a copy each
    # One worker per model, one GPU per model: each model's weights on a GPU of their own.
    env = {**env, "CHAT_MODEL_OPTIONS": json.dumps({"spare": {"workers": 0}})}
    conf = stack.LauncherSettings.from_env(env)
    assert [stack.worker_env(env, conf, i, m)["CUDA_VISIBLE_DEVICES"] for i, m in enumerate(conf.worker_plan())] == [
        "0",
        "1",
    ]


BAD_MODELS = [
    ({"CHAT_MODELS": "small"}, "CHAT_MODELS: 'small' is not name=spec"),
    ({"CHAT_MODELS": "a=x,a=y"}, "CHAT_MODELS names a twice."),
    ({"CHAT_MODELS": "a=x", "CHAT_MODEL_OPTIONS": "{'a': {}}"}, "CHAT_MODEL_OPTIONS is not valid JSON"),
    ({"CHAT_MODELS": "a=x", "CHAT_MODEL_OPTIONS": '{"a": {"workers": -1}}'}, "a.workers must be a whole number"),
    ({"CHAT_MODELS": "a=x", "CHAT_MODEL_OPTIONS": '{"b": {}}'}, "CHAT_MODEL_OPTIONS names model(s) not in"),
    ({"CHAT_MODELS": "a=x,b=y", "CHAT_DEFAULT_MODEL": "c"}, "CHAT_DEFAULT_MODEL=c is not one of the served models"),
    ({"CHAT_MODELS": "a=x,b=y", "CHAT_WORKER_MODEL": "c"}, "CHAT_WORKER_MODEL=c is not one of the served models"),
    (
        {"CHAT_MODELS": "a=x", "CHAT_MODEL_OPTIONS": '{"a": {"device": "cuda:1"}}', "CHAT_WORKER_GPUS": "0,1"},
        "CHAT_MODEL_OPTIONS: a.device=cuda:1 cannot work beside CHAT_WORKER_GPUS",
    ),
    (
        {"CHAT_MODEL_PRECISION": "int4"},
        "CHAT_MODEL_PRECISION is 'int4': use one of auto, float32, bfloat16, float16, int8.",
    ),
    (
        {"CHAT_MODELS": "a=x", "CHAT_MODEL_OPTIONS": '{"a": {"dtype": "fp8"}}'},
        "CHAT_MODEL_OPTIONS: a.precision is 'fp8': use one of auto, float32, bfloat16, float16, int8.",
    ),
]


@pytest.mark.parametrize("bad, sentence", BAD_MODELS)
def test_a_model_list_that_cannot_work_stops_the_launcher_with_a_sentence_before_it_starts_anything(
    tmp_path, bad, sentence
):
    with pytest.raises(stack.LauncherSettingsError) as caught:
        stack.LauncherSettings.from_env(bad)
    assert sentence in str(caught.value)
    redis_dir = tmp_path / "redis"
    for args in ([], ["worker"], ["web"]):  # make run, and each process a service manager starts
        out = subprocess.run(
            [sys.executable, "-m", "chatsite.stack", *args],
            cwd=stack.ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "CHAT_REDIS_DIR": str(redis_dir), **bad},
        )
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [str(caught.value)], out
        assert not redis_dir.exists()


def test_settings_refuse_a_model_list_that_cannot_work_with_the_same_sentence(key_file):
    """manage.py (migrate, check, shell) and every Django process read the list through settings: the same
    sentence, as ImproperlyConfigured."""
    out = sourced_run(
        [sys.executable, "manage.py", "check"],
        extra=f"SECRET_KEY_FILE={key_file}; CHAT_MODELS=a=x,b=y; CHAT_DEFAULT_MODEL=c",
        source=False,
    )
    assert out.returncode != 0
    assert "ImproperlyConfigured: CHAT_DEFAULT_MODEL=c is not one of the served models (a, b)." in out.stderr


def test_settings_refuse_a_precision_workers_cannot_load_with_a_sentence(key_file):
    """CHAT_DTYPE, the older name of CHAT_MODEL_PRECISION, is checked like it while it is the one set."""
    out = sourced_run(
        [sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={key_file}; CHAT_DTYPE=half", source=False
    )
    assert out.returncode != 0
    assert (
        "ImproperlyConfigured: CHAT_DTYPE is 'half': use one of auto, float32, bfloat16, float16, int8." in out.stderr
    )


def test_settings_refuse_negative_delta_pacing_with_a_sentence(key_file):
    """A negative flush interval or delta bound is a typo, not "no bound" (0 is that): refused at start."""
    for extra in ("CHAT_STREAM_FLUSH_MS=-5", "CHAT_STREAM_DELTAS_PER_S=-80"):
        out = sourced_run(
            [sys.executable, "manage.py", "check"], extra=f"SECRET_KEY_FILE={key_file}; {extra}", source=False
        )
        assert out.returncode != 0 and f"ImproperlyConfigured: {extra} cannot be negative: 0 means " in out.stderr


MODELS_SHOWN = (
    "import django, json, os; django.setup(); from django.conf import settings as s; from chatsite import stack; "
    "conf = stack.LauncherSettings.from_env(os.environ); args = stack.worker_args(conf); print(json.dumps({"
    "'models': [[m.name, m.spec, m.label, m.precision, m.max_batch, list(m.groups)] for m in s.CHAT_SERVED_MODELS], "
    "'default': s.CHAT_DEFAULT_MODEL, 'worker_model': s.CHAT_WORKER_MODEL, 'queues': args[args.index('-Q') + 1]}))"
)


def test_one_host_serves_one_model_and_another_host_a_second(key_file, tmp_path):
    """production.env (the same on every host) lists the models; a host's worker.env names the one its workers
    hold. The worker unit reads them in that order, then the instance's own file; `python -m chatsite.stack
    worker` (the unit's and the Procfile's command) then reads that model's queue."""
    unit = (stack.ROOT / "deploy" / "systemd" / "chat-worker@.service").read_text()
    assert re.findall(r"^EnvironmentFile=(.*)$", unit, re.M) == [
        "/etc/chat-server/production.env",
        "-/etc/chat-server/worker.env",
        "-/etc/chat-server/worker-%i.env",
    ]
    assert re.search(r"^ExecStart=\S+/python -m chatsite\.stack worker$", unit, re.M)
    assert re.search(
        r"^worker: python -m chatsite\.stack worker$", (stack.ROOT / "deploy" / "Procfile").read_text(), re.M
    )

    def host(worker_env: str = "") -> dict:
        out = sourced_run(
            [sys.executable, "-c", f'"{MODELS_SHOWN}"'], extra=f"SECRET_KEY_FILE={key_file}; {worker_env or ':'}"
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    bundled = "bundled:smollm2-135m-instruct"
    first = host(f'. "{WORKER_EXAMPLE}"')  # the example worker.env: the bundled model
    assert first["models"] == [
        [bundled, bundled, "SmolLM2 135M", None, None, []],
        ["qwen", "/srv/models/qwen2.5-1.5b-instruct", "Qwen2.5 1.5B", "bfloat16", 32, ["staff"]],
    ]  # the JSON options arrive whole through the shell's quoting
    assert (first["default"], first["worker_model"], first["queues"]) == (
        bundled,
        bundled,
        "inference.model." + bundled + ",inference",
    )
    second_env = tmp_path / "worker.env"
    second_env.write_text(WORKER_EXAMPLE.read_text().replace(f"CHAT_WORKER_MODEL={bundled}", "CHAT_WORKER_MODEL=qwen"))
    second = host(f'. "{second_env}"')
    assert second["models"] == first["models"] and (second["worker_model"], second["queues"]) == (
        "qwen",
        "inference.model.qwen",
    )
    assert host()["worker_model"] == bundled  # no worker.env: the default model
