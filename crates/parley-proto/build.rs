//! Compiles `proto/parley.proto` with protox, so building Parley needs no `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/parley.proto");
    let fds = protox::compile(["proto/parley.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
