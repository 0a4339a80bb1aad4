//! Generates the runtime API's gRPC code from `proto/runtime.proto` (needs `protoc`, which
//! `scripts/install-deps.sh` installs for etcd-client too).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/runtime.proto");
    tonic_prost_build::configure().compile_protos(&["proto/runtime.proto"], &["proto"])?;
    Ok(())
}
