//! Compiles the Slint view. Debug info is kept in the dev profile so the
//! headless tests can find elements by id and accessible label.
fn main() {
    let debug = std::env::var("PROFILE").map(|p| p == "debug").unwrap_or(false);
    let config = slint_build::CompilerConfiguration::new()
        .with_style("fluent".into())
        .with_debug_info(debug);
    slint_build::compile_with_config("ui/app.slint", config).expect("Slint view compiles");
}
