# Parley: a static, cgo-free binary on a small base.
FROM golang:1.26 AS build
# The toolchain make builds with (see the Makefile), fetched through the
# module proxy: the image's Go may lack its net/http and crypto/x509 fixes.
ENV GOTOOLCHAIN=go1.27.3
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces a module with this directory: go mod download reads it.
COPY third_party/ third_party/
RUN go mod download
COPY . .
# parley version prints VERSION:
# docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/parley ./cmd/parley
# The data directory, for the embedded SQLite database and its master key
# when no volume is mounted there; distroless has no shell to make it.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/parley /usr/local/bin/parley
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /data
ENV PARLEY_ADDR=0.0.0.0:8080 PARLEY_DATA_DIR=/data
# The SQLite database and its master key outlive the container only on a
# volume; a host directory mounted there must be writable by uid 65532.
VOLUME /data
EXPOSE 8080
# Ready while /readyz answers 200 (distroless has no curl): see parley healthcheck.
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/parley", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["serve"]
