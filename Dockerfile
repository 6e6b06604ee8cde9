# The swarmlog image: one static binary in an empty image, PID 1, handling
# SIGTERM itself; HEALTHCHECK uses its own subcommand (there is no curl).
#
#   docker build -t swarmlog:0.1.0 .
#
# compiles the binary in a Rust image (which needs a registry to pull from),
# with either builder (BuildKit or the legacy one). Without a registry, build
# the binary on the host and use Dockerfile.prebuilt, which pulls nothing.
# scripts/verify-dockerfile builds this file where no registry is reachable.

FROM rust:1-bookworm AS build
# The sources come without .git: pass the commit for `swarmlog --version`
# (--build-arg SWARMLOG_GIT_COMMIT=$(git rev-parse --short=12 HEAD)), or it says "unknown".
ARG SWARMLOG_GIT_COMMIT
ARG SOURCE_DATE_EPOCH
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/swarmlog /swarmlog

FROM scratch
COPY --from=build /swarmlog /swarmlog
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/swarmlog", "healthcheck"]
LABEL org.opencontainers.image.title="swarmlog" \
      org.opencontainers.image.description="Reconciliation operator for a logging stack on Docker Swarm" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/swarmlog"]
CMD ["run"]
