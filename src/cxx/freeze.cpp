// Freezes a TorchScript module with libtorch's `torch::jit::freeze` (what `torch.jit.freeze`
// does in Python: parameters and attributes inlined as constants, batch norms folded into
// the convolutions before them, constants propagated), which `tch` does not expose. The
// frozen module comes back serialised, for `tch` to load on the model's device.
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

namespace {

// Copies `text` into a malloc'd, NUL-terminated buffer the caller frees with
// `unmask_freeze_free`.
char* copy_out(const std::string& text, size_t* len) {
  char* buffer = static_cast<char*>(std::malloc(text.size() + 1));
  if (buffer == nullptr) return nullptr;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  if (len != nullptr) *len = text.size();
  return buffer;
}

}  // namespace

extern "C" {

// Loads the TorchScript file at `path` on the CPU, puts it in eval mode, freezes it and
// serialises the result into `*out` (`*out_len` bytes). Returns 0 on success; otherwise
// returns 1 and sets `*error` to a message. Whatever is set must be released with
// `unmask_freeze_free`. Never lets a C++ exception escape.
int unmask_freeze_torchscript(const char* path, char** out, size_t* out_len, char** error) {
  *out = nullptr;
  *out_len = 0;
  *error = nullptr;
  try {
    torch::jit::Module module = torch::jit::load(path);
    module.eval();
    torch::jit::Module frozen = torch::jit::freeze(module);
    std::ostringstream stream;
    frozen.save(stream);
    *out = copy_out(stream.str(), out_len);
    if (*out == nullptr) {
      *error = copy_out("out of memory while copying the frozen module", nullptr);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    *error = copy_out(e.what(), nullptr);
  } catch (...) {
    *error = copy_out("unknown C++ exception", nullptr);
  }
  return 1;
}

// Releases a buffer handed out by `unmask_freeze_torchscript`.
void unmask_freeze_free(char* buffer) { std::free(buffer); }

}  // extern "C"
