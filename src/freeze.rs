//! Freezing TorchScript modules for inference through libtorch's `torch::jit::freeze`, the
//! C++ side of `torch.jit.freeze`: parameters and attributes become constants, batch norms
//! are folded into the convolutions before them and constants are propagated. `tch` does not
//! expose it, so a small C++ shim (`src/cxx/freeze.cpp`) does it and hands the frozen module
//! back serialised.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;

unsafe extern "C" {
    fn unmask_freeze_torchscript(
        path: *const c_char,
        out: *mut *mut c_char,
        out_len: *mut usize,
        error: *mut *mut c_char,
    ) -> c_int;
    fn unmask_freeze_free(buffer: *mut c_char);
}

/// A buffer from the shim, released with the shim's `free` when dropped.
struct ShimBuffer(*mut c_char);

impl Drop for ShimBuffer {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the shim's malloc and is released once.
            unsafe { unmask_freeze_free(self.0) }
        }
    }
}

/// Loads the TorchScript file at `path` on the CPU, puts it in eval mode, freezes it and
/// returns the frozen module serialised (load it with `CModule::load_data_on_device`).
/// The error is libtorch's message (with its C++ context lines).
pub fn freeze_torchscript(path: &Path) -> Result<Vec<u8>, String> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "path contains a NUL byte".to_owned())?;
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut out_len = 0usize;
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path and out-pointers; the shim catches every C++
    // exception and sets either `out` or `error`, both owned by the guards below.
    let status =
        unsafe { unmask_freeze_torchscript(c_path.as_ptr(), &mut out, &mut out_len, &mut error) };
    let (out, error) = (ShimBuffer(out), ShimBuffer(error));
    if status == 0 && !out.0.is_null() {
        // SAFETY: the shim wrote `out_len` bytes at `out`.
        let bytes = unsafe { std::slice::from_raw_parts(out.0.cast::<u8>(), out_len) };
        return Ok(bytes.to_vec());
    }
    if error.0.is_null() {
        return Err("libtorch could not freeze it".to_owned());
    }
    // SAFETY: the shim NUL-terminates its messages.
    Err(unsafe { CStr::from_ptr(error.0) }
        .to_string_lossy()
        .into_owned())
}
