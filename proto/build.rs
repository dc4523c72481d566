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
    // Service stubs only with the `grpc` feature: the replicated state machine uses the messages
    // and must not link a gRPC runtime.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
