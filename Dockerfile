# The swarmlog image: one static binary in an empty image, PID 1, handling
# SIGTERM itself; HEALTHCHECK uses its own subcommand (there is no curl).
#
# Without a registry (as in this project's sandbox), build the binary first
# and take the `prebuilt` stage, which pulls nothing:
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu
#   DOCKER_BUILDKIT=0 docker build --target prebuilt -t swarmlog:0.1.0 .
# With a registry, the default stage compiles in a Rust image:
#   docker build -t swarmlog:0.1.0 .
# (The prebuilt stage comes first: the legacy builder builds every stage up
# to the target, in order.)

FROM scratch AS prebuilt
COPY target/x86_64-unknown-linux-gnu/release/swarmlog /swarmlog
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/swarmlog", "healthcheck"]
LABEL org.opencontainers.image.title="swarmlog" \
      org.opencontainers.image.description="Reconciliation operator for a logging stack on Docker Swarm" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/swarmlog"]
CMD ["run"]

FROM rust:1-bookworm AS build
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
