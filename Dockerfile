# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user.
# (Not built in this project's CI: its machines have no Docker engine.)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked --bin authedge

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home authedge
COPY --from=build /src/target/dist/authedge /usr/local/bin/authedge
COPY conf/ /etc/authedge/
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/authedge"]
# conf/container.yaml is the quick start listening on 0.0.0.0 (the quick start itself listens
# on 127.0.0.1, which nothing outside the container reaches). Mount your own config over it.
CMD ["run", "--config", "/etc/authedge/container.yaml"]
