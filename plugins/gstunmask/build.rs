//! Plugin metadata for GStreamer, and a RUNPATH to libtorch so `libgstunmask.so` loads
//! without `LD_LIBRARY_PATH`.
fn main() {
    gst_plugin_version_helper::info();
    let lib_dir =
        std::env::var("DEP_UNMASK_LIBTORCH_LIB").expect("unmask exports libtorch's lib dir");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
}
