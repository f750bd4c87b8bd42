//! Generates the gRPC code with the protoc shipped inside `protoc-bin-vendored`, so a fresh
//! machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/agent/v1/agent.proto"],
        &["proto"],
    )?;
    Ok(())
}
