"""Settings, read from the environment in one place (django-environ). Every variable is in docs/settings.md."""

import math
import os
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from chat import names, served
from chat.store import connection_options
from chatsite.embedded import recorded_redis_url
from chatsite.launcher_settings import LauncherSettingsError, model_precision, stream_pacing
from chatsite.secret import (
    local_secret_key,
    private_database_file,
    private_dir,
    read_secret_key,
)
from inference.precision import PrecisionError

BASE_DIR = Path(__file__).resolve().parent.parent
# Secret key, SQLite file, Redis file: var/ is for this account only (0700, narrowed if it was wider).
VAR_DIR = private_dir(BASE_DIR / "var")

env = environ.Env()


@contextmanager
def _settings_refused():
    """A value the checks shared with the launcher (chatsite/launcher_settings.py, chat/served.py) refuse stops
    every process with their sentence alone, as the launcher says it, not a traceback through this file."""
    try:
        yield
    except (LauncherSettingsError, PrecisionError, served.ServedModelsError) as exc:
        raise ImproperlyConfigured(str(exc)) from None


# --- core ------------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
# The key comes from SECRET_KEY, else from a file (SECRET_KEY_FILE, default var/secret_key) that `make run`
# generates once, so the embedded default needs no setup and no key is ever in code. A process with DEBUG off
# never invents a key itself: several hosts would each invent their own (sessions signed by one Daphne would
# be refused by the next), so a missing key is an error that says what to do.
SECRET_KEY_FILE = Path(env.str("SECRET_KEY_FILE", default=str(VAR_DIR / "secret_key")))
SECRET_KEY = env.str("SECRET_KEY", default="") or read_secret_key(SECRET_KEY_FILE) or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and {SECRET_KEY_FILE} does not exist: set SECRET_KEY "
            f"(the same on every host), or create the file once with "
            f"`python -m chatsite.secret {SECRET_KEY_FILE}` (make run does)."
        )
    SECRET_KEY = local_secret_key(SECRET_KEY_FILE)
# LOG_FORMAT=json: one JSON object per line with the reply and user ids (chat/logs.py), for a log shipper.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS behind a proxy (deploy/production.env.example sets these; docs/deployment.md) -----------------------
# TRUSTED_PROXY: a proxy we run (nginx) is the only way in, and it overwrites X-Forwarded-For and
# X-Forwarded-Proto. Only then are those headers believed: here for the scheme, and by Daphne (the launcher
# passes --proxy-headers) for the client address that the logs, throttling and METRICS_ALLOWED_IPS see.
TRUSTED_PROXY = env.bool("TRUSTED_PROXY", default=False)
if "CHAT_TRUSTED_PROXY_COUNT" in os.environ:
    # Removed: a deployment still setting it expects the client address from the header, and without
    # TRUSTED_PROXY would count every login failure against the proxy, locking everyone out. Say so at start.
    raise ImproperlyConfigured(
        "CHAT_TRUSTED_PROXY_COUNT is no longer read: remove it. The client address is the one Daphne gives: set "
        "TRUSTED_PROXY=true when a proxy you run (nginx, deploy/nginx/chat.conf) is the only way in and sets "
        "X-Forwarded-For; behind more proxies, let that nginx find the client with its realip module "
        "(set_real_ip_from <the proxy in front>; real_ip_header X-Forwarded-For;), as docs/accounts.md's login "
        "throttling section shows."
    )
if TRUSTED_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /metrics and /readyz's details: only from these addresses or networks (the client's, see TRUSTED_PROXY), or
# with "Authorization: Bearer <METRICS_TOKEN>" (empty: no token accepted).
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# HTTPS: the site is served over https; it turns on what a browser must only ever use over TLS.
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
# Probes and the Prometheus scraper may talk plain HTTP to Daphne itself, past the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Checks a deployment has decided against, by id (deploy/production.env.example: security.W021, no preload).
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # intcomma: counts grouped as the page's language writes them (200,000)
    "channels",
    "csp",
    "axes",
    "chat",
]

MIDDLEWARE = [
    # First, so it counts every answer, redirects and lockouts included (chat/metrics.py, /metrics).
    "chat.ops.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the cookie (set from the Account page, and at login from the person's stored choice by
    # chat.accounts.language) or Accept-Language. No session or database read per request.
    "django.middleware.locale.LocaleMiddleware",
    "chat.accounts.language.StoredLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a login refused for a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]
X_FRAME_OPTIONS = "DENY"
# No inline script and no eval anywhere: pages load script files only. Replies are rendered in the browser as
# Markdown sanitised by DOMPurify (static/chat/page/markdown.js); what people type is shown as text.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database: SQLite file by default, DATABASE_URL (PostgreSQL) when hosted ----------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Daphne, the worker and the test runner are separate processes: WAL lets readers and one writer
    # overlap, and the busy timeout makes a writer wait instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
    private_database_file(DATABASES["default"]["NAME"])  # 0600, before SQLite creates it with the umask's mode
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # PostgreSQL's JIT compiles any query its planner prices high; the review lists' correlated counts are
    # priced high but run in milliseconds, and compiling them took 1.5 s a page (make bench-admin).
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        options = DATABASES["default"].setdefault("OPTIONS", {})
        options["options"] = (options.get("options", "") + " -c jit=off").strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username or address before any password is checked, on the chat
# login page and the admin login alike (both go through authenticate with the request).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Who may sign up: "open" (anyone), "approval" (anyone, but staff approve them before they can chat), "invite"
# (only through an invite link staff create in the admin). chat/accounts/services.py.
CHAT_SIGNUP = env.str("CHAT_SIGNUP", default="open")
if CHAT_SIGNUP not in ("open", "approval", "invite"):
    raise ImproperlyConfigured(f"CHAT_SIGNUP is {CHAT_SIGNUP!r}: use open, approval or invite.")
CHAT_INVITE_DAYS = env.int("CHAT_INVITE_DAYS", default=7)
# Accounts one client address may make in an hour without an invite (0: no limit): every account brings its
# own allowance, so a script making accounts would multiply every per-person limit (chat/limits/quotas.py).
CHAT_SIGNUPS_PER_HOUR = env.int("CHAT_SIGNUPS_PER_HOUR", default=5)
# Sign-up forms one client address may send in an hour, whatever each led to (0: no limit): the form says when an
# email address has an account already, so counting only the accounts made left that answer unlimited.
CHAT_SIGNUP_ATTEMPTS_PER_HOUR = env.int("CHAT_SIGNUP_ATTEMPTS_PER_HOUR", default=20)
# Password reset requests in an hour (0: no limit), one client address's and one email address's, each counted
# whether or not an account has the address (counting only real ones would tell which exist): a reset page
# that mails on every request mails anyone as often as someone asks.
CHAT_RESETS_PER_HOUR = env.int("CHAT_RESETS_PER_HOUR", default=10)
CHAT_RESETS_PER_EMAIL_PER_HOUR = env.int("CHAT_RESETS_PER_EMAIL_PER_HOUR", default=3)
# Login throttling (django-axes): failures are counted per client address, whatever usernames they tried (one
# person's guesses at one account, or at many), and reaching the limit locks that address for the cool-off (each
# refused try restarts it). Not per username: then anyone, from anywhere, could keep any person (an admin too)
# locked out with five wrong passwords every quarter of an hour. A success does not reset the count: axes would
# reset the address's failures with it, so someone with an account of their own could wipe the count of the
# account they are guessing from the same address.
AXES_FAILURE_LIMIT = env.int("CHAT_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("CHAT_LOGIN_COOLOFF_S", default=900))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = False
# Its start-up banner ("AXES: BEGIN version …") on every manage.py command and process start: off. Failures and
# lockouts are still logged as warnings, naming the address they count by, not the username and user agent.
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "chat.accounts.views.locked_out"
# The address Daphne gives the request: the socket's, or with TRUSTED_PROXY the one the proxy set in
# X-Forwarded-For; never what a client wrote in that header itself (chat/accounts/client_address.py).
AXES_CLIENT_IP_CALLABLE = "chat.accounts.client_address.throttle_address"  # IPv6 counted per /64
# Mail (password reset): printed on the console unless EMAIL_URL names an SMTP server,
# e.g. smtp+tls://user:password@mail.example.com:587
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")

# The pages speak English or Simplified Chinese (docs/translating.md): the person's choice on the Account page
# (kept on their ChatDefaults row, carried in Django's language cookie), else the browser's Accept-Language.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]  # each named in itself: a person finds their own
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = HTTPS
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))  # collectstatic; nginx serves it
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing root on every start
# Daphne serves the whole app, static files included; WhiteNoise serves them from the app dirs in DEBUG
# and from STATIC_ROOT otherwise.
WHITENOISE_USE_FINDERS = True

# --- Redis: Celery broker and channel layer ------------------------------------------------------------
# Without REDIS_URL: the embedded Redis that a running `make run` recorded in its directory (so `manage.py
# shell` and other commands beside it reach the same server), else a Redis on the default port.
_recorded_redis = recorded_redis_url(Path(env.str("CHAT_REDIS_DIR", default=str(VAR_DIR / "redis"))))
REDIS_URL = env.str("REDIS_URL", default="") or _recorded_redis or "redis://127.0.0.1:6379/0"
# Whether that is the embedded Redis a running `make run` started (the launcher gives its children the URL it
# recorded): its append-only file is the project's to keep clean of deleted people's words (docs/security.md);
# a Redis of the operator's own is theirs.
CHAT_REDIS_EMBEDDED = _recorded_redis is not None and REDIS_URL == _recorded_redis
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, equal to the layer's blocking read: an idle
            # consumer would die with "Timeout reading". No timeout on these sockets. Broken connections are
            # retried (a Redis restart leaves every pooled one stale; chat/store.py says how).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None, **connection_options(for_asyncio=True)}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ROUTES = {
    names.GENERATE_REPLY_TASK: {"queue": names.SHARED_QUEUE},
    names.TRAIN_ADAPTER_TASK: {"queue": names.TRAINING_QUEUE},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# JSON logs: the worker keeps Django's LOGGING (chat.logs.JsonFormatter) instead of Celery's own text format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Lost tasks are not retried (a worker acknowledges a task when it accepts it; one that dies mid-reply leaves
# the reply to the sweep, which marks it failed). A task that Redis delivers twice — a worker lost before
# acknowledging, the visibility timeout passing — meets reply_claim's conditional claim and does nothing.
CELERY_TASK_ACKS_LATE = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_S", default=3600),
    **env.json("CELERY_TRANSPORT_OPTIONS", default={}),
}

# --- chat and model --------------------------------------------------------------------------------
# The served models (chat/served.py): CHAT_MODELS as name=spec pairs, or CHAT_MODEL alone under its own name.
with _settings_refused():
    CHAT_SERVED_MODELS = served.parse(
        env.str("CHAT_MODELS", default=""),
        env.str("CHAT_MODEL", default="bundled:smollm2-135m-instruct"),
        env.str("CHAT_MODEL_OPTIONS", default=""),
    )
    # New conversations' model unless a person's defaults pick another.
    CHAT_DEFAULT_MODEL = served.default_name(CHAT_SERVED_MODELS, env.str("CHAT_DEFAULT_MODEL", default=""))
    # The model this worker process holds (the launcher and the systemd unit set it per worker).
    CHAT_WORKER_MODEL = served.default_name(
        CHAT_SERVED_MODELS, env.str("CHAT_WORKER_MODEL", default="") or CHAT_DEFAULT_MODEL, "CHAT_WORKER_MODEL"
    )
# The default model's name, for code and tests that speak of "the" model (its wire name in the one-model form).
CHAT_MODEL = CHAT_DEFAULT_MODEL
CHAT_MODEL_CACHE = Path(env.str("CHAT_MODEL_CACHE", default=str(VAR_DIR / "models")))
CHAT_DEVICE = env.str("CHAT_DEVICE", default="auto")
# The precision workers run their model at (inference/precision.py): auto (bfloat16 on a GPU, float32 on the CPU),
# float32, bfloat16, float16 or int8 (weight-only, torchao). CHAT_DTYPE is its older name, read while it is unset;
# a model's `precision` option overrides both. Checked with the launcher's check, so a typo stops every process.
with _settings_refused():
    CHAT_MODEL_PRECISION = model_precision(os.environ, CHAT_SERVED_MODELS)


def _cores() -> int:
    """Cores this process may run on (a cpuset or taskset narrows them), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Worker processes on this host share its cores: by default each takes cores // WORKERS torch threads, never
# more (two workers with a thread per core each made 8 chats 30x slower here). WORKERS is how many worker
# processes this host runs (`make run` starts that many; a systemd host sets it to its number of instances).
WORKERS = max(1, env.int("WORKERS", default=1))
# WORKERS is per model; a model's `workers` option overrides it (0: another host serves it). All of them share
# this host's cores.
_host_workers = max(1, sum(m.host_workers(WORKERS) for m in CHAT_SERVED_MODELS))
CHAT_TORCH_THREADS = env.int("CHAT_TORCH_THREADS", default=0) or max(1, _cores() // _host_workers)
CHAT_MAX_BATCH = env.int("CHAT_MAX_BATCH", default=16)
# Prompt tokens a worker computes per round at most (inference/prefill.py): a longer prompt is prefilled in chunks
# of this many between decode steps, so it does not freeze running replies; 0 = each prompt in one forward; unset:
# by the worker's device (inference.prefill.default_chunk: a GPU computes many more per forward for its cost).
CHAT_PREFILL_CHUNK = env.int("CHAT_PREFILL_CHUNK", default=None)
# A prompt in chunks' tokens per round while replies are decoding (each of their next tokens waits for every
# round it needs; a prompt that fits CHAT_PREFILL_CHUNK is still computed whole); 0: the same as
# CHAT_PREFILL_CHUNK; unset: by the device (inference.prefill.default_chunk_decoding). Smaller smooths running
# streams and slows long prompts (docs/benchmarks.md).
CHAT_PREFILL_CHUNK_DECODING = env.int("CHAT_PREFILL_CHUNK_DECODING", default=None)
# A long prompt's chunk computed in the running replies' decode step, one forward (inference/fused.py).
CHAT_PREFILL_FUSED = env.bool("CHAT_PREFILL_FUSED", default=True)
# The decode step through that same forward rather than transformers' modules (inference/fused.py); unset: on a CPU.
CHAT_DECODE_DIRECT = env.bool("CHAT_DECODE_DIRECT", default=None)
# A person waiting with no reply running takes a row from one running several (inference/preemption.py).
CHAT_PREEMPT = env.bool("CHAT_PREEMPT", default=True)
# On the CPU, float linear layers multiply through oneDNN with their weights packed once (inference/onednn.py):
# the products 2-2.6x faster, decode steps 1.4-1.5x, on the 2-core AMD EPYC here, for a second copy of those
# weights in memory. 0: torch's default path.
CHAT_CPU_PACKED_LINEARS = env.bool("CHAT_CPU_PACKED_LINEARS", default=True)
# Memory for the running batch's keys and values per worker (inference/budget.py): a reply is admitted only while
# the batch, with it, fits at its largest; the rest wait their turn. 0 = bounded by CHAT_MAX_BATCH alone.
CHAT_KV_BUDGET_MB = env.int("CHAT_KV_BUDGET_MB", default=2048)
# Key/value states of recent prompts and replies kept for reuse (system prompt, next turn, regenerate); 0 = off.
CHAT_PREFIX_CACHE_MB = env.int("CHAT_PREFIX_CACHE_MB", default=256)
# Adapters (finished training runs) a worker serves beside its base model (inference/adapters.py): loaded on first
# use, at most this many and this much memory at once (least recently used out first), unloaded when idle.
CHAT_MAX_ADAPTERS = env.int("CHAT_MAX_ADAPTERS", default=4)
CHAT_ADAPTER_BUDGET_MB = env.int("CHAT_ADAPTER_BUDGET_MB", default=256)
CHAT_ADAPTER_IDLE_S = env.int("CHAT_ADAPTER_IDLE_S", default=600)
CHAT_MAX_NEW_TOKENS = env.int("CHAT_MAX_NEW_TOKENS", default=1024)
CHAT_DEFAULT_MAX_NEW_TOKENS = env.int("CHAT_DEFAULT_MAX_NEW_TOKENS", default=256)
# What a chat reply samples with where its person set nothing (chat/worker/job.py): sampling, so Regenerate gives
# another answer; a person's temperature 0 is greedy. API requests keep the model's own generation config.
CHAT_DEFAULT_TEMPERATURE = env.float("CHAT_DEFAULT_TEMPERATURE", default=0.7)
CHAT_DEFAULT_TOP_P = env.float("CHAT_DEFAULT_TOP_P", default=0.9)
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=16000)
# All the messages of one API request together: each request stores them as a new conversation, so without a
# bound 200 messages of 16,000 characters (a body under 2.5 MB) were stored, twenty times a minute, even when
# they could never fit the model's window.
CHAT_API_MAX_REQUEST_CHARS = env.int("CHAT_API_MAX_REQUEST_CHARS", default=4 * CHAT_MAX_MESSAGE_CHARS)
# The prompt library (chat/prompts/): saved prompts per person and the longest text of one.
CHAT_PROMPTS_PER_PERSON = env.int("CHAT_PROMPTS_PER_PERSON", default=100)
CHAT_PROMPT_MAX_CHARS = env.int("CHAT_PROMPT_MAX_CHARS", default=8000)
# Importing conversations from a file (chat/conversations/imports.py): every bound is checked before anything is
# stored; the file's size before it is parsed at all.
CHAT_IMPORT_MAX_BYTES = env.int("CHAT_IMPORT_MAX_BYTES", default=16 * 1024 * 1024)
CHAT_IMPORT_MAX_CONVERSATIONS = env.int("CHAT_IMPORT_MAX_CONVERSATIONS", default=1000)
CHAT_IMPORT_MAX_MESSAGES = env.int("CHAT_IMPORT_MAX_MESSAGES", default=20000)
CHAT_IMPORT_MAX_DEPTH = env.int("CHAT_IMPORT_MAX_DEPTH", default=500)
CHAT_IMPORT_MAX_TEXT_CHARS = env.int("CHAT_IMPORT_MAX_TEXT_CHARS", default=100_000)
CHAT_IMPORTED_MESSAGES_PER_PERSON = env.int("CHAT_IMPORTED_MESSAGES_PER_PERSON", default=50_000)
# And the UTF-8 bytes of their text (the message count alone allowed ~19 GB a person), and uploads an hour (0: none).
CHAT_IMPORTED_BYTES_PER_PERSON = env.int("CHAT_IMPORTED_BYTES_PER_PERSON", default=200 * 1024 * 1024)
CHAT_IMPORTS_PER_HOUR = env.int("CHAT_IMPORTS_PER_HOUR", default=10)
# Documents attached to messages (chat/documents/, docs/chat-page.md#documents): bounds per file, message,
# conversation and person, checked before a file is read (size) or extracted (pages); the text kept is bounded too.
CHAT_ATTACHMENT_MAX_BYTES = env.int("CHAT_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
CHAT_ATTACHMENT_MAX_PAGES = env.int("CHAT_ATTACHMENT_MAX_PAGES", default=300)
CHAT_ATTACHMENT_MAX_CHARS = env.int("CHAT_ATTACHMENT_MAX_CHARS", default=1_000_000)
CHAT_ATTACHMENT_MAX_UNZIPPED_BYTES = env.int("CHAT_ATTACHMENT_MAX_UNZIPPED_BYTES", default=50 * 1024 * 1024)
CHAT_ATTACHMENTS_PER_MESSAGE = env.int("CHAT_ATTACHMENTS_PER_MESSAGE", default=5)
CHAT_ATTACHMENTS_PER_CONVERSATION = env.int("CHAT_ATTACHMENTS_PER_CONVERSATION", default=20)
CHAT_ATTACHMENT_TOTAL_CHARS = env.int("CHAT_ATTACHMENT_TOTAL_CHARS", default=20_000_000)
CHAT_ATTACHMENT_EXTRACT_S = env.float("CHAT_ATTACHMENT_EXTRACT_S", default=20.0)
# In the prompt: a document this short goes in whole; a longer one is cut into passages of about this many
# characters, and the best-ranked ones for the question go in, all documents together within the budget.
CHAT_ATTACHMENT_WHOLE_CHARS = env.int("CHAT_ATTACHMENT_WHOLE_CHARS", default=3000)
CHAT_ATTACHMENT_PASSAGE_CHARS = env.int("CHAT_ATTACHMENT_PASSAGE_CHARS", default=800)
CHAT_ATTACHMENT_PASSAGES = env.int("CHAT_ATTACHMENT_PASSAGES", default=4)
CHAT_ATTACHMENT_PROMPT_CHARS = env.int("CHAT_ATTACHMENT_PROMPT_CHARS", default=6000)
# A reply's deltas: at most one per CHAT_STREAM_FLUSH_MS (40). CHAT_STREAM_DELTAS_PER_S: the deltas a worker
# publishes per second at most, its replies together: with many replies streaming, each one's interval widens to
# replies / this, up to 1 s (chat/worker/runtime.py). Unset: 80 on a CPU, no bound on a GPU; 0: no bound. Read
# and checked with the launcher's own check (chatsite/launcher_settings.py), so a typo stops every process.
with _settings_refused():
    CHAT_STREAM_FLUSH_MS, CHAT_STREAM_DELTAS_PER_S = stream_pacing(os.environ)
# A reply waiting for a row is told its place at most this often per reply (chat/worker/places.py).
CHAT_QUEUE_FRAME_MS = env.int("CHAT_QUEUE_FRAME_MS", default=500)
CHAT_STREAM_TTL_S = env.int("CHAT_STREAM_TTL_S", default=3600)
# Limits (chat/limits/sockets.py)
CHAT_FRAME_RATE = env.str("CHAT_FRAME_RATE", default="20/second")
CHAT_MAX_SOCKETS_PER_USER = env.int("CHAT_MAX_SOCKETS_PER_USER", default=10)
# Replies one person may have queued or streaming at once, over all their conversations and tabs.
CHAT_MAX_ACTIVE_PER_USER = env.int("CHAT_MAX_ACTIVE_PER_USER", default=3)
# Fair use per person (chat/limits/quotas.py; staff override them per person in the admin); 0 = no limit.
CHAT_MESSAGES_PER_MINUTE = env.int("CHAT_MESSAGES_PER_MINUTE", default=20)
CHAT_TOKENS_PER_DAY = env.int("CHAT_TOKENS_PER_DAY", default=200_000)
# Share links (chat/sharing/, docs/chat-page.md): live links one person may hold at once, and new links they may
# make in an hour (revoked ones count: making and revoking in a loop is bounded too).
CHAT_SHARE_LINKS_MAX = env.int("CHAT_SHARE_LINKS_MAX", default=50)
CHAT_SHARE_LINKS_PER_HOUR = env.int("CHAT_SHARE_LINKS_PER_HOUR", default=20)
# Folders one person may have in the chat page's sidebar (chat/conversations/organise.py).
CHAT_MAX_FOLDERS = env.int("CHAT_MAX_FOLDERS", default=50)
# After a new conversation's first reply the worker asks the model for a short title (up to 16 tokens).
CHAT_AUTO_TITLE = env.bool("CHAT_AUTO_TITLE", default=True)
# How often an open socket re-reads its session (a logout or password change also tells its sockets at once)
# and refreshes its place in the per-user socket count (a socket not refreshed for 3 intervals stops counting).
CHAT_SOCKET_REFRESH_S = env.float("CHAT_SOCKET_REFRESH_S", default=30.0)

# Liveness: workers refresh heartbeats and reply leases every CHAT_HEARTBEAT_S; a lease older than
# CHAT_LEASE_TTL_S means its worker died. Sweeps run every CHAT_SWEEP_INTERVAL_S in Daphne and workers.
CHAT_HEARTBEAT_S = env.float("CHAT_HEARTBEAT_S", default=3.0)
CHAT_SWEEP_INTERVAL_S = env.float("CHAT_SWEEP_INTERVAL_S", default=5.0)
CHAT_QUEUE_TIMEOUT_S = env.int("CHAT_QUEUE_TIMEOUT_S", default=600)
# How long a worker keeps a reply going while Redis is unreachable before failing it. It must give up before
# its lease can expire (the last renewal may be a heartbeat old), or the sweep would fail a reply that is still
# being written: so the grace defaults to the lease minus two heartbeats, and a longer grace lengthens the lease.
_lease_ttl = env.int("CHAT_LEASE_TTL_S", default=15)
CHAT_REDIS_GRACE_S = env.float("CHAT_REDIS_GRACE_S", default=_lease_ttl - 2 * CHAT_HEARTBEAT_S)
CHAT_LEASE_TTL_S = max(_lease_ttl, math.ceil(CHAT_REDIS_GRACE_S + 2 * CHAT_HEARTBEAT_S))
if CHAT_REDIS_GRACE_S <= 0 or CHAT_HEARTBEAT_S <= 0:
    raise ImproperlyConfigured(
        f"CHAT_REDIS_GRACE_S ({CHAT_REDIS_GRACE_S}) and CHAT_HEARTBEAT_S "
        f"({CHAT_HEARTBEAT_S}) must be positive: raise CHAT_LEASE_TTL_S above two "
        "heartbeats."
    )
CHAT_SWEEP_IN_WEB = env.bool("CHAT_SWEEP_IN_WEB", default=True)
# Whether staff reviewers may open people's transcripts (the review panel). The chat page tells people which
# it is; when off, no one — superusers included — opens a transcript, exports or reviews through the panel.
CHAT_REVIEW_ENABLED = env.bool("CHAT_REVIEW_ENABLED", default=True)
# How often the review panel's live generations page reloads itself (whole seconds; tests shorten it).
CHAT_LIVE_REFRESH_S = max(1, env.int("CHAT_LIVE_REFRESH_S", default=5))
# --- The improvement loop: training runs (docs/improvement-loop.md) ----------------------------------------------
# Whether `make run` starts a training worker (the launcher reads it; chatsite/launcher_settings.py).
CHAT_TRAINING = env.bool("CHAT_TRAINING", default=False)
# What this worker process is: "serving" (holds CHAT_WORKER_MODEL) or "training" (reads the training queue, loads
# a base model per run). The launcher and the training unit set it; nobody else needs to.
CHAT_WORKER_ROLE = env.str("CHAT_WORKER_ROLE", default="serving")
# Where finished runs' adapters are saved, one folder per run name. Every host serving a base model with adapters
# reads them from here: a shared folder on a deployment of several hosts.
CHAT_ADAPTER_DIR = Path(env.str("CHAT_ADAPTER_DIR", default=str(VAR_DIR / "adapters")))
# The share of a run's conversations held out for its evaluation (never trained on); at least one is.
CHAT_TRAINING_HELDOUT_SHARE = env.float("CHAT_TRAINING_HELDOUT_SHARE", default=0.2)
# DPO runs after SFT when a run's training conversations give at least this many preference pairs.
CHAT_TRAINING_DPO_MIN_PAIRS = env.int("CHAT_TRAINING_DPO_MIN_PAIRS", default=16)
# Hyperparameters of new runs over the defaults (inference/training.py, Hyperparameters), as JSON.
CHAT_TRAINING_HYPERPARAMETERS = env.json("CHAT_TRAINING_HYPERPARAMETERS", default={})
# Where a training worker trains: auto (a GPU when it has one), cpu, cuda, cuda:1; and the base's dtype there.
CHAT_TRAINING_DEVICE = env.str("CHAT_TRAINING_DEVICE", default="auto")
CHAT_TRAINING_DTYPE = env.str("CHAT_TRAINING_DTYPE", default="auto")
# Tokens of each generated answer in a run's evaluation (the held-out answers are short by nature).
CHAT_TRAINING_EVAL_TOKENS = env.int("CHAT_TRAINING_EVAL_TOKENS", default=48)
# A run's progress is written at most this often (every step would be a database write a second on a GPU).
CHAT_TRAINING_PROGRESS_S = env.float("CHAT_TRAINING_PROGRESS_S", default=2.0)
# Benchmark only (set by `python -m chatsite.bench_stack`): replies run to max_new_tokens, ignoring end of turn.
CHAT_BENCH_IGNORE_EOS = env.bool("CHAT_BENCH_IGNORE_EOS", default=False)

if LOG_FORMAT == "json":
    # Python's warnings print plain text to stderr; through logging they are JSON records like the rest. The
    # progress bars of transformers and huggingface_hub ("Loading weights") are text redrawn in place: off.
    import logging

    logging.captureWarnings(True)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "chat.logs.JsonFormatter"}, "text": {"format": "%(message)s"}},
    "filters": {"refusals": {"()": "chat.logs.RefusalsWithoutTraceback"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["refusals"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
