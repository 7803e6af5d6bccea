# syntax=docker/dockerfile:1
#
# txorder images, one Dockerfile, one target per binary:
#
#   docker build --target orderd       -t txorder/orderd:local .
#   docker build --target fulfillmentd -t txorder/fulfillmentd:local .
#   docker build --target ordertool    -t txorder/ordertool:local .
#
# Static binaries (CGO_ENABLED=0) on a small pinned Alpine, run as an
# unprivileged user. Every image also carries ordertool, so
# `docker compose exec orderd ordertool pay <order-id>` works. Alpine rather
# than distroless because the compose healthchecks need wget.

ARG GO_VERSION=1.26.8
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/orderd ./cmd/fulfillmentd ./cmd/ordertool

FROM alpine:${ALPINE_VERSION} AS runtime
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 65532 txorder \
 && adduser -S -D -H -u 65532 -G txorder -s /sbin/nologin txorder
WORKDIR /app
# The commented defaults; the environment (TXORDER_…) overrides every key.
COPY --from=build /src/configs/*.yaml /app/configs/
COPY --from=build /out/ordertool /usr/local/bin/ordertool
USER 65532:65532

FROM runtime AS orderd
COPY --from=build /out/orderd /usr/local/bin/orderd
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/orderd"]

FROM runtime AS fulfillmentd
COPY --from=build /out/fulfillmentd /usr/local/bin/fulfillmentd
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/fulfillmentd"]

FROM runtime AS ordertool
ENTRYPOINT ["/usr/local/bin/ordertool"]
