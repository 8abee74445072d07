# Build stage: release binary with the SQL migrations compiled in.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked && strip target/release/emailin

# Runtime stage: the binary, a non-root user, and /data for the embedded database.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin emailin \
    && mkdir -p /data && chown emailin:emailin /data
COPY --from=build /src/target/release/emailin /usr/local/bin/emailin
COPY config/default.toml /etc/emailin/default.toml
USER emailin
WORKDIR /data
VOLUME ["/data"]
ENV EMAILIN__DATABASE__URL=sqlite:///data/emailin.db \
    EMAILIN__SMTP__LISTEN=0.0.0.0:2525 \
    EMAILIN__LOG__FORMAT=json
# The HTTP API stays on loopback unless EMAILIN__HTTP__LISTEN says otherwise;
# beyond loopback it needs an API token (`emailin token create`) to start.
EXPOSE 2525
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["emailin", "healthcheck"]
ENTRYPOINT ["emailin"]
CMD ["serve"]
