# A minimal rustcd image: the binaries and the few shared libraries they link, nothing else.
# /usr/local/bin/rustcd is the entrypoint (an etcd member); /usr/local/bin/rustcd-operator is the
# operator, which the Helm chart (charts/rustcd-operator) runs with `command:`.
# No registry is needed: build the context with scripts/build-image.sh, which copies the
# locally built binaries and their libraries (from `ldd`) into .image-rootfs/.
#
#   scripts/build-image.sh            # release build, tags rustcd:latest
#   docker run --rm -p 2379:2379 rustcd:latest \
#     --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379
#   docker run --rm --user 65532 --entrypoint /usr/local/bin/rustcd-operator rustcd:latest --help
FROM scratch
COPY .image-rootfs/ /
WORKDIR /var/lib/rustcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/rustcd"]
