# syntax=docker/dockerfile:1
# The app-server image: one binary, every role (`serve` with server.role = all | api | worker,
# `migrate`, `admin create-user …`).
#
#   docker build -t hexride/app-server:dev .          # BuildKit (the default builder since 23.0)
#   docker run --rm -p 8080:8080 hexride/app-server:dev   # embedded mode: SQLite in the container
#
# Checked offline by scripts/check-deploy.sh (hadolint, and the stages, user and entry point
# read with BuildKit's own parser); never built here: see deploy/README.md.

# --- build -----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# What the build compiles besides Rust: librdkafka (rdkafka-sys with its default feature
# `libz` only: built by its own ./configure and make, linked to the system zlib; no cmake,
# OpenSSL, SASL, zstd or curl features are enabled, so no libssl-dev or libsasl2-dev) and
# SQLite (bundled by libsqlite3-sys, built with cc). The rust image already carries most of
# these; naming them keeps the build from depending on that. Debian package versions are not
# pinned (hadolint's DL3008): the archive drops a version once it is superseded, so a pin
# breaks the build at the next point release; the base image's tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The whole workspace (see .dockerignore): cargo resolves every member's manifest even for
# -p app-server, and sqlx::migrate! embeds each adapter's migrations/. Caching comes from the
# BuildKit cache mounts: the registry, git checkouts and target/ survive between builds, so a
# source change recompiles only the crates it touches.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p app-server \
    && install -D -m 0755 target/release/app-server /out/app-server

# --- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# The binary needs libc, libm, libgcc_s and libz (ldd), all in bookworm-slim already;
# ca-certificates for TLS to managed databases, brokers and the data platform. Unpinned, as
# above (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hexride \
    && useradd --system --uid 10001 --gid hexride --home-dir /var/lib/hexride \
        --shell /usr/sbin/nologin hexride \
    && install -d -o hexride -g hexride -m 0750 /var/lib/hexride

COPY --from=builder /out/app-server /usr/local/bin/app-server
# The defaults are compiled into the binary (include_str! of config/default.toml): no file is
# needed at run time, every setting comes from APP__SECTION__KEY variables. This copy is the
# reference for operators; a file of overrides is mounted and named with `--config FILE` (or
# APP_CONFIG=FILE), between the defaults and the environment.
COPY config/default.toml /etc/hexride/default.toml

# The working directory is the user's own: the embedded default (sqlite://data/hexride.db)
# writes there. Deployments with PostgreSQL write nothing and can run read-only.
WORKDIR /var/lib/hexride
ENV APP__SERVER__LISTEN=0.0.0.0:8080 \
    APP__SERVER__ADMIN_LISTEN=0.0.0.0:9090
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# 8080: the API (and /health/live, /health/ready); 9090: the admin listener (/metrics,
# readiness with details, /docs): keep 9090 off the public network.
EXPOSE 8080 9090
# The server drains on SIGTERM (readiness 503 for server.drain_secs, still serving), then
# finishes in flight within server.shutdown_grace_secs: give `docker stop` / Compose's
# stop_grace_period / Kubernetes' terminationGracePeriodSeconds more than their sum.
STOPSIGNAL SIGTERM
# The image has no curl or wget, but bookworm-slim has bash, whose /dev/tcp is enough to ask
# the admin listener's /health/ready (the port taken from APP__SERVER__ADMIN_LISTEN) and read
# the status line with builtins only. Unhealthy while draining or while a component is down.
# Kubernetes ignores HEALTHCHECK (the manifests use httpGet probes); Compose uses it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${APP__SERVER__ADMIN_LISTEN##*:}\" && printf 'GET /health/ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
ENTRYPOINT ["app-server"]
CMD ["serve"]
