// Fuzzes the IDX reader (engine/data/idx.cpp, on engine/data/file_bytes.cpp:
// raw or gzipped MNIST files). The input is read as an image file, and as
// the label file of a valid 1-image file. Must hold: no crash, no hang, no
// allocation out of proportion to the input (sizes in the header, and
// gzip's claimed length, are checked or capped before allocating); a bad file
// is a DataError; a loaded dataset's sizes match its pixels and labels.
#include <cstdint>
#include <vector>

#include "engine/data/idx.h"
#include "fuzz_util.h"

using namespace ddpm;

namespace {

void check(const ImageDataset& ds) {
  if (ds.count < 1 || ds.height < 1 || ds.width < 1 || ds.channels != 1 ||
      ds.pixels.size() != static_cast<size_t>(ds.count * ds.image_size()) ||
      (!ds.labels.empty() && ds.labels.size() != static_cast<size_t>(ds.count)))
    fuzz::property_failed("a loaded IDX dataset's sizes do not match its data");
}

// A valid 1x1x1 image file, as the partner of a fuzzed label file.
const std::string& one_image_file() {
  static fuzz::InputFile file;
  static const bool written = [] {
    const std::vector<uint8_t> idx = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 42};
    file.write(idx.data(), idx.size());
    return true;
  }();
  (void)written;
  return file.path();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputFile& file = fuzz::input_file();
  file.write(data, size);
  try {
    check(load_idx(file.path()));
  } catch (const DataError& e) {
    fuzz::rejected(e);
  }
  try {
    check(load_idx(one_image_file(), file.path()));
  } catch (const DataError& e) {
    fuzz::rejected(e);
  }
  return 0;
}
