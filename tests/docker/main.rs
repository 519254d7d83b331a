//! Tests that run members as containers of the FROM-scratch image on private Docker networks: a
//! 3-member cluster, and partitions with `docker network disconnect`. They print `SKIP:` and pass
//! where Docker is unavailable.

mod container;
mod partition;
