# syntax=docker/dockerfile:1
# fleetdns: one static binary (musl; rustls with ring, no OpenSSL) on distroless/static.
#   docker build -t fleetdns:0.1.0 .
# x86_64 only (the musl target below).

FROM rust:1-bookworm AS build
# musl-tools: musl-gcc for ring's C and assembly; protobuf-compiler: protoc for etcd-client.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools protobuf-compiler \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Symbols stay (readable backtraces), debug line tables go: a much smaller binary.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fleetdns --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/fleetdns /fleetdns

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /fleetdns /fleetdns
USER 65532:65532
# deploy/fleetdns.toml listens on 5353 (UDP and TCP), not 53: a non-root process without
# NET_BIND_SERVICE cannot bind below 1024. The Service maps 53 -> 5353. Ops HTTP on 9153.
EXPOSE 5353/udp 5353/tcp 9153/tcp
ENTRYPOINT ["/fleetdns"]
CMD ["serve", "--config", "/etc/fleetdns/fleetdns.toml"]
