//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and hands the
//! descriptors to tonic-prost-build. The descriptor set is also written to
//! `OUT_DIR/descriptor.bin` for server reflection, because `compile_fds`
//! ignores `file_descriptor_set_path`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "switchboard/auth/v1/auth.proto",
        "switchboard/presence/v1/presence.proto",
        "switchboard/messaging/v1/messaging.proto",
        "switchboard/edge/v1/edge.proto",
    ];
    let fds = protox::compile(protos, ["../../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
