# syntax=docker/dockerfile:1

# strictly's container image: the `strictly` binary on a distroless base,
# running as an unprivileged user.
#
#   docker build -t strictly:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t strictly:0.1.0 .
#
# Both base images are pinned by tag. Pinning them by digest as well
# (rust:1.95-bookworm@sha256:…) would make builds repeatable byte for byte;
# look the digests up with `docker buildx imagetools inspect IMAGE` when
# cutting a release.

# Bookworm, because the runtime image is Debian 12 too: the binary links
# against glibc (aws-lc, rustls' crypto provider, needs it) and must not be
# built against a newer glibc than the one it runs on.
FROM rust:1.95-bookworm AS build

WORKDIR /src

# .dockerignore lets in only what the build needs (Cargo.toml, Cargo.lock and
# the crate's source folders), so unrelated changes do not bust this layer.
COPY . .

# Cache mounts keep the crates.io downloads and the target folder between
# builds, so a source change recompiles strictly and not its dependencies.
# The binary is copied out of the cached target folder within the same step,
# because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin strictly \
    && install -D -m 0755 target/release/strictly /out/strictly

# distroless "cc": glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="strictly" \
      org.opencontainers.image.description="Tells Kuma service-mesh users, inbound by inbound, when it is safe to switch from Permissive to Strict mTLS" \
      org.opencontainers.image.source="https://github.com/strictly-dev/strictly" \
      org.opencontainers.image.url="https://github.com/strictly-dev/strictly" \
      org.opencontainers.image.documentation="https://github.com/strictly-dev/strictly#deploy-to-a-cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /out/strictly /usr/local/bin/strictly

# glibc raises its mmap threshold each time a big block is freed, after which
# big short-lived buffers (a listing page, a /metrics body) come from the heap
# and leave it fragmented. A fixed threshold hands them back to the system when
# freed: at 10,000 sidecars the peak resident memory drops from about 61 to 52 MB
# (BENCHMARKS.md).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072

# The numeric id of distroless' "nonroot" user, so that Kubernetes'
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532

# Metrics, health, readiness, the JSON API and the status page.
EXPOSE 9714

ENTRYPOINT ["strictly"]
CMD ["run"]
