# One image pattern for every bmslink service: `--build-arg SERVICE=<workspace package>`, e.g.
# bmslink-pylontech-rs485-reader. Built for linux/arm64 and linux/arm/v7 (Raspberry Pi OS 64/32).
#
# Builder: uv resolves from the committed uv.lock and installs ONLY the service's own dependencies
# (the dependency layer first, so code changes do not re-download). On arm/v7 some dependencies
# have no wheels on PyPI (msgspec; dbus-fast for the BLE reader), so the builder has a compiler.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "uv>=0.5,<1"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
ARG SERVICE
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/ services/
RUN find services -mindepth 2 -not -name pyproject.toml -not -type d -delete \
    && uv sync --frozen --no-dev --no-install-workspace --package "${SERVICE}"
COPY shared/ shared/
COPY services/ services/
RUN uv sync --frozen --no-dev --no-editable --package "${SERVICE}"

# Runtime: no compiler, no sources, non-root; `dialout` (GID 20 on Debian) for serial adapters.
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --gid 20 --home-dir /data bmslink \
    && mkdir -p /data && chown bmslink /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 BMSLINK_HEALTH_FILE=/tmp/bmslink-health
USER bmslink
WORKDIR /data
