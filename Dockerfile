# A minimal rustcd image: the binary and the few shared libraries it links, nothing else.
# No registry is needed: build the context with scripts/build-image.sh, which copies the
# locally built binary and its libraries (from `ldd`) into .image-rootfs/.
#
#   scripts/build-image.sh            # release build, tags rustcd:latest
#   docker run --rm -p 2379:2379 rustcd:latest \
#     --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379
FROM scratch
COPY .image-rootfs/ /
WORKDIR /var/lib/rustcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/rustcd"]
