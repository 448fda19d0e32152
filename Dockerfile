# The `flotilla` image, built from source: a Rust builder stage, then a
# slim Debian runtime holding the binary alone.
#
#   docker build -t flotilla .
#   docker compose -f deploy/compose.yaml up -d    # with FLOTILLA_IMAGE=flotilla
#
# Both base images are pulled from a registry. The project's own machines
# have none, so this file is not built there; deploy/build-image.sh makes
# the same runtime image (same paths, user, environment, volume, ports,
# health check) FROM scratch out of a binary built on the machine, and
# the tests run that one. Keep the two in step (deploy/Dockerfile.local).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# --locked: the image gets the dependency versions the tests ran with.
# Debug info is stripped from the copy that ships (symbols stay, so a
# panic's backtrace still names functions).
RUN cargo build --release --locked -p flotilla-cli --bin flotilla \
    && strip --strip-debug -o /flotilla target/release/flotilla

FROM ${RUNTIME_IMAGE}
# A fixed uid/gid (not the next free system id) so that a volume written
# by one image, this one or deploy/build-image.sh's, is writable by the
# other.
RUN groupadd --gid 10001 flotilla \
    && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/flotilla --shell /usr/sbin/nologin flotilla \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/flotilla
COPY --from=build /flotilla /usr/local/bin/flotilla
# The member's settings that are the same in every container; a member
# still needs FLOTILLA_ID and FLOTILLA_PEERS (or --id and --peers). The
# client port also carries the peer traffic; the metrics port serves
# /metrics, /health and the web console. FLOTILLA_ENDPOINTS points the
# client commands (`docker exec ... flotilla kv get k`) at this member.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    FLOTILLA_DATA_DIR=/var/lib/flotilla \
    FLOTILLA_LISTEN=0.0.0.0:2379 \
    FLOTILLA_METRICS_LISTEN=0.0.0.0:2381 \
    FLOTILLA_ENDPOINTS=127.0.0.1:2379
USER 10001:10001
WORKDIR /var/lib/flotilla
VOLUME ["/var/lib/flotilla"]
EXPOSE 2379 2381
# The image has no curl: `flotilla health` GETs /health. It asks the
# metrics port, which speaks plain HTTP even when the client port is
# given TLS certificates. Healthy = this member knows a leader and a
# quorum read completes within a second.
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/flotilla", "health", "--endpoints", "127.0.0.1:2381", "--timeout-secs", "3"]
# The server syncs its log and exits 0 on SIGTERM (docker stop's signal).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/flotilla"]
CMD ["server"]
