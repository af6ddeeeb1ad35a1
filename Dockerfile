# syntax=docker/dockerfile:1

# regcred container image: a static musl binary on distroless, running as a
# non-root user with no shell.
#
#   docker buildx build -t regcred:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Cargo's registry and target directory live in BuildKit cache mounts, so a
# rebuild after a source change recompiles only regcred itself.

ARG RUST_VERSION=1.95
ARG ALPINE_VERSION=3.23

FROM rust:${RUST_VERSION}-alpine${ALPINE_VERSION} AS build
# ring compiles C and the linker needs musl's start files; both come from
# musl-dev. Its version follows the Alpine release pinned above, and pinning
# it here as well would break the build whenever Alpine publishes a fix.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# On Alpine the host target is x86_64-unknown-linux-musl (aarch64 on arm64),
# which links statically by default. The target directory is a cache mount,
# so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package regcred --bin regcred \
 && cp target/release/regcred /regcred

# distroless/static: CA certificates, /etc/passwd with the nonroot user
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
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
COPY --from=build --chown=0:0 --chmod=0555 /regcred /regcred
USER 65532:65532
# Admin server (/livez, /readyz, /metrics) in `regcred run`.
EXPOSE 8080
ENTRYPOINT ["/regcred"]
CMD ["run"]
