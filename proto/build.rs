//! Generates the gRPC code from `proto/` with protox (a pure-Rust protobuf compiler), so building
//! dsops never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/dsops/common/v1/common.proto",
        "proto/dsops/raft/v1/raft.proto",
        "proto/dsops/agent/v1/agent.proto",
        "proto/dsops/admin/v1/admin.proto",
    ];
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
