# The swarmlog image: one static binary in an empty image.
#
# With a registry:      docker build -t swarmlog .
# Without one (here):   cargo build --release --target x86_64-unknown-linux-gnu
#                       (with RUSTFLAGS="-C target-feature=+crt-static"), then
#                       docker build --target prebuilt -t swarmlog .
# The operator's stack file, health check subcommand and signal handling as
# PID 1 come with the controller (see the issues); this image runs the
# one-shot commands (render, validate, plan, apply).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/swarmlog /swarmlog

FROM scratch AS prebuilt
COPY target/x86_64-unknown-linux-gnu/release/swarmlog /swarmlog
ENTRYPOINT ["/swarmlog"]

FROM scratch
LABEL org.opencontainers.image.title="swarmlog" \
      org.opencontainers.image.description="Reconciliation operator for a logging stack on Docker Swarm"
COPY --from=build /swarmlog /swarmlog
ENTRYPOINT ["/swarmlog"]
