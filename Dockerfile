# The one mxpulse binary, for docker-compose.yml. Build: docker build -t mxpulse:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mxpulse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mxpulse /usr/local/bin/mxpulse
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/mxpulse"]
