//! Gives every binary of this package (CLI, tests, examples) a RUNPATH to libtorch, so that
//! they run without `LD_LIBRARY_PATH`, records where libtorch lives so that CUDA support
//! (`libtorch_cuda.so`) can be loaded explicitly at run time, passes the location on to
//! dependent crates (the plugin) as `DEP_UNMASK_LIBTORCH_LIB`, and compiles the small C++
//! shim over libtorch's `torch::jit::freeze` (`src/cxx/freeze.cpp`), which `tch` lacks.
use std::path::{Path, PathBuf};

fn main() {
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its lib dir");
    let lib_dir = std::fs::canonicalize(&lib_dir).unwrap_or_else(|_| lib_dir.clone().into());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rustc-env=UNMASK_LIBTORCH_LIB={}", lib_dir.display());
    println!("cargo:libtorch_lib={}", lib_dir.display());
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    compile_freeze_shim(&lib_dir);
}

/// Compiles `src/cxx/freeze.cpp` against the headers next to libtorch's `lib` folder, with
/// the flags `torch-sys` uses for its own wrapper.
fn compile_freeze_shim(lib_dir: &Path) {
    let source = "src/cxx/freeze.cpp";
    println!("cargo:rerun-if-changed={source}");
    let include = lib_dir
        .parent()
        .map(|root| root.join("include"))
        .unwrap_or_else(|| PathBuf::from("include"));
    // PyTorch wheels since 2.7 and libtorch's cxx11 builds use the new ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file(source)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("unmask_freeze");
}
