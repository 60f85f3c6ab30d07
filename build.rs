//! Gives every binary of this package (CLI, tests, examples) a RUNPATH to libtorch, so that
//! they run without `LD_LIBRARY_PATH`, records where libtorch lives so that CUDA support
//! (`libtorch_cuda.so`) can be loaded explicitly at run time, and passes the location on to
//! dependent crates (the plugin) as `DEP_UNMASK_LIBTORCH_LIB`.
fn main() {
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its lib dir");
    let lib_dir = std::fs::canonicalize(&lib_dir).unwrap_or_else(|_| lib_dir.clone().into());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rustc-env=UNMASK_LIBTORCH_LIB={}", lib_dir.display());
    println!("cargo:libtorch_lib={}", lib_dir.display());
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
