# syntax=docker/dockerfile:1
#
# jessy-core: the `jessy` binary; `jessy serve` is the HTTP service on :8080.
#
#   development  rust (full Debian image) + cargo-watch; compose bind-mounts the source at /app
#                and keeps cargo's registry and target/ in named volumes.
#   builder      release build of the `jessy` package (glibc, same Debian release as production).
#   production   debian slim, non-root user `jessy`, only the binary, curl (health check) and the
#                data directory /app/data/mmap.
#
# Debian slim rather than Alpine for production: the builder's glibc binary runs as is, with no
# musl cross target and no musl allocator slowdown on a memory-mapped, allocation-heavy store.
# RUST_VERSION and DEBIAN_VERSION together pick the rust image tag (rust:1.95-trixie); the
# production base is debian:${DEBIAN_VERSION}-slim, so builder and runtime share one glibc.

ARG RUST_VERSION=1.95
ARG DEBIAN_VERSION=trixie
ARG CARGO_WATCH_VERSION=8.5.3

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_VERSION} AS development
ARG CARGO_WATCH_VERSION
# The full rust image (buildpack-deps) already ships curl, used by the health check.
RUN cargo install --locked cargo-watch --version "${CARGO_WATCH_VERSION}" \
    && rm -rf /usr/local/cargo/registry /usr/local/cargo/git
WORKDIR /app
RUN mkdir -p /app/data/mmap/consciousness /app/data/mmap/proto /app/data/mmap/temp
ENV JESSY_ADDR=0.0.0.0:8080 \
    MMAP_BASE_PATH=/app/data/mmap \
    MMAP_INITIAL_SIZE=1048576 \
    MMAP_MAX_SIZE=10485760 \
    JESSY_DURABILITY=immediate \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
# The source is not copied: compose mounts the working tree at /app.
CMD ["cargo", "watch", "-x", "run -p jessy -- serve"]

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_VERSION} AS builder
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crates.io registry and target/ between builds; the binary is
# copied out of the cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jessy \
    && install -D -m 0755 target/release/jessy /out/jessy

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_VERSION}-slim AS production
# curl is the health check's client. Debian package versions are not pinned (DL3008): a pinned
# version disappears from the archive at the next point release and breaks the build; the base
# image tag pins the Debian release instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 jessy \
    && useradd --system --uid 10001 --gid jessy --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin jessy \
    && mkdir -p /app/data/mmap/consciousness /app/data/mmap/proto /app/data/mmap/temp \
    && chown -R jessy:jessy /app
COPY --from=builder /out/jessy /usr/local/bin/jessy
COPY --chown=jessy:jessy data/mmap/README.md /app/data/mmap/README.md
WORKDIR /app
ENV JESSY_ADDR=0.0.0.0:8080 \
    MMAP_BASE_PATH=/app/data/mmap \
    MMAP_INITIAL_SIZE=1048576 \
    MMAP_MAX_SIZE=10485760 \
    JESSY_DURABILITY=immediate \
    RUST_LOG=info
# Numeric uid:gid so runtimes that check runAsNonRoot can verify it (user `jessy`).
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["jessy"]
CMD ["serve"]
