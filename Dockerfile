# syntax=docker/dockerfile:1
# tenantry: multi-stage build. The runtime image holds the binary, the plan catalog, pg_dump (for
# `tenantry tenants export`) and curl (for HEALTHCHECK), and runs as an unprivileged user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tenantry \
    && strip target/release/tenantry

FROM debian:bookworm-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tenantry \
    && useradd --system --uid 10001 --gid tenantry --home-dir /app --shell /usr/sbin/nologin tenantry
WORKDIR /app
COPY --from=build /src/target/release/tenantry /usr/local/bin/tenantry
COPY --from=build /src/plans.toml /app/plans.toml
ENV BIND=0.0.0.0:8090 \
    APP_ENV=production \
    LOG_FORMAT=json \
    PLANS_FILE=/app/plans.toml \
    DATA_DIR=/tmp/tenantry
USER 10001:10001
EXPOSE 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8090/livez"]
ENTRYPOINT ["/usr/local/bin/tenantry"]
CMD ["serve"]
