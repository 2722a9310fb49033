# Multi-stage build: compile with the Rust toolchain, ship only the binary on
# a minimal glibc runtime (no shell, no package manager, non-root).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin nats-oidc-callout

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/nats-oidc-callout /usr/local/bin/nats-oidc-callout
USER nonroot
ENTRYPOINT ["/usr/local/bin/nats-oidc-callout"]
CMD ["serve", "--config", "/etc/nats-oidc-callout/callout.toml"]
