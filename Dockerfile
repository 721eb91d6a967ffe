# syntax=docker/dockerfile:1
# Two images from one build: the operator and the egress proxy.
#
#   docker build --target operator -t ghcr.io/egress-dev/egress-operator:0.1.0 .
#   docker build --target proxy    -t ghcr.io/egress-dev/egress-proxy:0.1.0 .
#
# Both binaries link the Swift runtime and Foundation statically (--static-swift-stdlib) and BoringSSL is
# compiled in by swift-nio-ssl, so the runtime image needs only glibc, libstdc++ and libgcc_s (distroless/cc)
# plus zlib (linked by AsyncHTTPClient's HTTP compression), which distroless/cc lacks: it is copied in below.
# scripts/build-release.sh builds the same binaries without a container engine and checks exactly that with ldd.
# The build stage is Debian 12 like the runtime stage, so the glibc the binaries were linked against is there.

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
# Dependencies first: this layer is reused while only our sources change.
COPY Package.swift Package.resolve[d] ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
COPY scripts/swift-build-release.sh ./scripts/
RUN scripts/swift-build-release.sh --product egress-operator \
 && scripts/swift-build-release.sh --product egress-proxy \
 && mkdir /out \
 && cp "$(scripts/swift-build-release.sh --show-bin-path)/egress-operator" "$(scripts/swift-build-release.sh --show-bin-path)/egress-proxy" /out/ \
 && /out/egress-operator --version \
 && mkdir /out/lib \
 && cp -L "/usr/lib/$(uname -m)-linux-gnu/libz.so.1" /out/lib/

# distroless/cc:nonroot: glibc, libstdc++, libgcc_s, CA certificates (the proxy's system trust roots), tzdata,
# user 65532 (nonroot); no shell, no package manager.
FROM ${RUNTIME_IMAGE} AS operator
LABEL org.opencontainers.image.source="https://github.com/egress-dev/egress-operator" \
      org.opencontainers.image.title="egress-operator"
COPY --from=build /out/egress-operator /usr/local/bin/egress-operator
COPY --from=build /out/lib/ /usr/local/lib/egress/
ENV LD_LIBRARY_PATH=/usr/local/lib/egress
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/egress-operator"]
CMD ["run"]

FROM ${RUNTIME_IMAGE} AS proxy
LABEL org.opencontainers.image.source="https://github.com/egress-dev/egress-operator" \
      org.opencontainers.image.title="egress-proxy"
COPY --from=build /out/egress-proxy /usr/local/bin/egress-proxy
COPY --from=build /out/lib/ /usr/local/lib/egress/
ENV LD_LIBRARY_PATH=/usr/local/lib/egress
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/egress-proxy"]
