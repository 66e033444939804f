# One image pattern for every bmslink service (first version; the deployment issue adds per-service
# slim images and the arm/v7 builder stage). Build: docker compose build.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /app
# dependencies layer first (changes rarely)
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/pylontech-rs485-reader/pyproject.toml services/pylontech-rs485-reader/pyproject.toml
COPY services/battery-simulator/pyproject.toml services/battery-simulator/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace
COPY shared shared
COPY services services
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --system --uid 10001 --groups dialout bmslink && mkdir -p /data && chown bmslink /data
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER bmslink
WORKDIR /app
