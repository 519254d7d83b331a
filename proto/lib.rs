//! Generated protobuf and gRPC code for etcd's API (`mvccpb`, `authpb`, `etcdserverpb`)
//! and rustcd's internal Raft/snapshot messages (`rustcdpb`).
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod rustcdpb {
    tonic::include_proto!("rustcdpb");
}
