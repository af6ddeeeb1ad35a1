# syntax=docker/dockerfile:1

# regcred container image: the static regcred binary, a CA bundle and
# /etc/passwd and /etc/group entries for the non-root user 65532 on an empty
# (`scratch`) root filesystem. No shell, no package manager, nothing else.
#
# With a container engine that can pull the Rust image (BuildKit):
#
#   docker buildx build -t regcred:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Cargo's registry and target directory live in BuildKit cache mounts, so a
# rebuild after a source change recompiles only regcred itself.
#
# From a binary built elsewhere (what `.ci/build-image` does, with no pull at
# all): a build context holding `regcred`, `ca-certificates.crt` and
# `image/etc/`, and `--build-arg BINARY_STAGE=prebuilt`. Both ways end in the
# same final stage below.

ARG RUST_VERSION=1.95
ARG ALPINE_VERSION=3.23
# Where /regcred and the CA bundle come from: `build` compiles regcred here,
# `prebuilt` takes both from the build context.
ARG BINARY_STAGE=build

FROM rust:${RUST_VERSION}-alpine${ALPINE_VERSION} AS build
# ring compiles C and the linker needs musl's start files; both come from
# musl-dev. ca-certificates-bundle is Alpine's CA bundle (Mozilla's roots) in
# /etc/ssl/certs/ca-certificates.crt. Their versions follow the Alpine release
# pinned above, and pinning them here as well would break the build whenever
# Alpine publishes a fix.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev ca-certificates-bundle
WORKDIR /src
COPY . .
# On Alpine the host target is x86_64-unknown-linux-musl (aarch64 on arm64),
# which links statically by default. The target directory is a cache mount,
# so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package regcred --bin regcred \
 && mkdir -p /out \
 && cp target/release/regcred /out/regcred \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

# The binary from `.ci/build-static` and the build host's CA bundle, both
# staged into the build context by `.ci/build-image`.
FROM scratch AS prebuilt
COPY regcred ca-certificates.crt /out/

FROM ${BINARY_STAGE} AS binary

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="regcred" \
      org.opencontainers.image.description="Keeps Kubernetes image-pull credentials for Google's container registries fresh" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
# root (no login shell) and nonroot, UID/GID 65532, the user regcred runs as.
COPY --chown=0:0 --chmod=0444 image/etc/passwd image/etc/group /etc/
# rustls-native-certs (through hyper-rustls) reads this path on Linux; without
# a CA bundle regcred refuses to start.
COPY --from=binary --chown=0:0 --chmod=0444 /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary --chown=0:0 --chmod=0555 /out/regcred /regcred
USER 65532:65532
# Admin server (/livez, /readyz, /metrics) in `regcred run`.
EXPOSE 8080
ENTRYPOINT ["/regcred"]
CMD ["run"]
