# syntax=docker/dockerfile:1
# mcp-router with the repository's example configuration in /config.
# Mount your own topology.yaml, schemas/ and policies/ over /config to use it
# for real (compose.yaml does).

# Build wheels for the package and all its dependencies once, so the final
# image installs offline and carries no build tooling or sources.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router/ router/
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels mcp-router \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin router

COPY topology.yaml /config/topology.yaml
COPY schemas/ /config/schemas/
COPY policies/ /config/policies/

USER router
WORKDIR /config
EXPOSE 8080
ENTRYPOINT ["mcp-router"]
CMD ["run", "--config", "/config", "--http", "0.0.0.0:8080"]
