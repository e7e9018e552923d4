# One image per service, all from this file:
#   docker build --target sb-edge -t switchboard/sb-edge .
# (docker compose builds every target itself.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p sb-auth -p sb-edge -p sb-presence -p sb-messaging -p switchboardctl \
 && mkdir -p /out \
 && cp target/release/sb-auth target/release/sb-edge target/release/sb-presence \
       target/release/sb-messaging target/release/switchboardctl /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home switchboard
USER 10001
WORKDIR /var/lib/switchboard

FROM runtime AS sb-auth
COPY --from=build /out/sb-auth /out/switchboardctl /usr/local/bin/
EXPOSE 50051 9101
ENTRYPOINT ["/usr/local/bin/sb-auth"]

FROM runtime AS sb-presence
COPY --from=build /out/sb-presence /usr/local/bin/
EXPOSE 50052 9102
ENTRYPOINT ["/usr/local/bin/sb-presence"]

FROM runtime AS sb-messaging
COPY --from=build /out/sb-messaging /usr/local/bin/
EXPOSE 50053 9103
ENTRYPOINT ["/usr/local/bin/sb-messaging"]

FROM runtime AS sb-edge
COPY --from=build /out/sb-edge /usr/local/bin/
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/sb-edge"]
