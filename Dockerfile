# cnstream in a container: a static binary (no cgo: os/user then reads
# /etc/passwd and /etc/group, which docker-compose.yml and the Kubernetes
# DaemonSet mount from the host) on a distroless base, with
# examples/container.yaml as /etc/cnstream/cnstream.yaml.
#
#   docker build -t cnstream .
#   docker run --rm --network host --pid host --cgroupns host \
#     --cap-drop ALL --cap-add NET_ADMIN --cap-add SYS_PTRACE \
#     --security-opt apparmor=unconfined cnstream tail
#
# The container only works in the host's network and pid namespaces with
# CAP_NET_ADMIN: README.md, "Containers", says why.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/cnstream ./cmd/cnstream

# static-debian12: no shell, no package manager; CA certificates (Kafka and
# NATS over TLS) and tzdata are there. It runs as root (uid 0) by default:
# the capabilities it needs are those of the container's root, and the
# compose file and the DaemonSet drop every other one.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/cnstream /usr/local/bin/cnstream
COPY examples/container.yaml /etc/cnstream/cnstream.yaml
# /metrics, /healthz, /readyz (telemetry.listen)
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/cnstream"]
CMD ["run", "--config", "/etc/cnstream/cnstream.yaml"]
