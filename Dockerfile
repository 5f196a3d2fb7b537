# Parley: a static, cgo-free binary on a small base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/parley ./cmd/parley

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/parley /usr/local/bin/parley
ENV PARLEY_ADDR=0.0.0.0:8080 PARLEY_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/parley"]
CMD ["serve"]
