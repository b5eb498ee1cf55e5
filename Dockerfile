# One Dockerfile, two images:
#   docker build -t span .                        CPU (default)
#   docker build --build-arg VARIANT=gpu -t span  CUDA base; onnxruntime-gpu then uses the CUDA provider
# The image installs and starts through the same Makefile targets as a checkout (`make install`,
# `make serve`), so the path the test suite exercises is the path that ships.
ARG VARIANT=cpu

FROM python:3.11-slim-bookworm AS base-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
ENV SPAN_PROVIDERS='["CPUExecutionProvider"]'

# onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS base-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends make python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV SPAN_PROVIDERS='["CUDAExecutionProvider","CPUExecutionProvider"]'

FROM base-${VARIANT}
WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY spancore ./spancore
COPY spancli ./spancli
COPY models ./models
COPY service ./service
COPY weights ./weights
RUN make install PYTHON=python3 && rm -rf /root/.cache/pip

RUN useradd --system --uid 10001 span && chown -R span /app
USER span
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD .venv/bin/python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4).status != 200)"
# exec form with make as PID 1's child would swallow SIGTERM; run the same serve command directly.
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec make --no-print-directory serve HOST=$HOST PORT=$PORT"]
