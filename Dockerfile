# syntax=docker/dockerfile:1
# Vitals and aisim as static binaries on distroless, running as non-root.
#
#   docker build -t vitals .                    # the agent (the default target)
#   docker build --target aisim -t aisim .      # the simulated AI server
#   docker build --build-arg TAGS=nokubernetes -t vitals .   # without Kubernetes discovery
#
# compose.yaml builds both from this file.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# .git is not in the context, so the build has no VCS stamp; pass the
# revision for vitals_build_info: --build-arg REVISION=$(git rev-parse HEAD)
ARG REVISION=
# Build tags for the agent: --build-arg TAGS=nokubernetes leaves out
# Kubernetes discovery and client-go (half the binary, 20 MiB of resident
# memory; kubernetes_sd_configs is then refused). Default: everything.
ARG TAGS=
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -tags "${TAGS}" -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/vitals ./cmd/vitals && \
    go build -trimpath -ldflags "-s -w" -o /out/aisim ./cmd/aisim

# aisim: a simulated AI server; pass --kind and --listen 0.0.0.0:PORT.
FROM gcr.io/distroless/static-debian12:nonroot AS aisim
COPY --from=build /out/aisim /usr/local/bin/aisim
USER nonroot:nonroot
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/aisim"]
CMD ["--kind", "openai", "--listen", "0.0.0.0:8000"]

# vitals: the agent. Mount a core.yaml whose listen address is 0.0.0.0.
FROM gcr.io/distroless/static-debian12:nonroot AS vitals
COPY --from=build /out/vitals /usr/local/bin/vitals
USER nonroot:nonroot
WORKDIR /var/lib/vitals
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/vitals"]
CMD ["--config", "/etc/vitals/core.yaml"]
