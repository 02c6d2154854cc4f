# syntax=docker/dockerfile:1
# One image for both roles: docker-compose.yml picks `imageapi-server` or `imageapi-worker`
# as the command. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

############################ builder ############################
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# The whole workspace (minus target/, data/, .git; see .dockerignore): cargo must read every
# member's manifest, including tests/, even though only two packages are built.
COPY . .

# libavif and libaom (the AVIF encoder) build with cmake, libaom's SIMD code with nasm; libwebp
# builds with the image's gcc.
RUN apt-get update && apt-get install -y --no-install-recommends cmake nasm && rm -rf /var/lib/apt/lists/*

# Cache mounts keep downloaded crates and compiled dependencies between builds, so a source
# change recompiles only the workspace crates. The target dir is a cache mount and therefore
# not part of the image, so the binaries are copied out to /out in the same RUN.
# sharing=locked: two concurrent builds must not write the same cargo/target dirs at once.
# --locked: build exactly the committed Cargo.lock, fail instead of silently re-resolving.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p imageapi-server -p imageapi-worker \
    && mkdir -p /out \
    && cp target/release/imageapi-server target/release/imageapi-worker /out/

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# ca-certificates: for any TLS the binaries may do (e.g. rediss://).
# curl: used by the compose healthchecks (/readyz, /healthz).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# Fixed, non-root uid/gid 10001 so file ownership on volumes is predictable across rebuilds
# and hosts. The data and blob folders exist in the image, owned by that user, because Docker
# initialises an empty named volume from the image's folder (ownership included): without
# this the volumes would be root-owned and the non-root process could not write to them.
# No VOLUME instruction on purpose: it would give the worker an unused anonymous data volume;
# compose declares the volumes each role needs.
RUN groupadd --gid 10001 imageapi \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
       --home-dir /var/lib/imageapi --shell /usr/sbin/nologin imageapi \
    && install -d -o 10001 -g 10001 -m 0750 \
       /var/lib/imageapi /var/lib/imageapi/data /var/lib/imageapi/blobs

COPY --from=builder /out/imageapi-server /out/imageapi-worker /usr/local/bin/

# Container defaults: listen on all interfaces (the binaries default to loopback, which is
# unreachable from outside a container) and keep state under the volume mount points.
ENV IMAGEAPI_BIND=0.0.0.0:8000 \
    IMAGEAPI_DATA_DIR=/var/lib/imageapi/data \
    IMAGEAPI_BLOB_DIR=/var/lib/imageapi/blobs \
    IMAGEAPI_WORKER_METRICS_BIND=0.0.0.0:9100

# Numeric so orchestrators that check runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/imageapi

# 8000: server API; 9100: worker /metrics and /healthz.
EXPOSE 8000 9100

# No HEALTHCHECK here: the two roles answer on different ports, so compose defines one per role.
# Exec form: the binary is PID 1 and receives SIGTERM directly for its graceful shutdown.
CMD ["imageapi-server", "serve"]
