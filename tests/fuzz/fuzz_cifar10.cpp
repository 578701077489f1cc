// Fuzzes the CIFAR-10 binary batch reader (engine/data/cifar10.cpp, on
// engine/data/file_bytes.cpp, which also inflates gzipped input). Must hold:
// no crash, no hang, no allocation out of proportion to the input; a bad file
// (size not a multiple of the 3073-byte record, a label above 9, corrupt
// gzip) is a DataError; a loaded batch is 32x32 RGB with one label 0-9 per
// image.
#include <cstdint>

#include "engine/data/cifar10.h"
#include "fuzz_util.h"

using namespace ddpm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputFile& file = fuzz::input_file();
  file.write(data, size);
  try {
    const ImageDataset ds = load_cifar10(file.path());
    if (ds.count < 1 || ds.height != 32 || ds.width != 32 || ds.channels != 3 ||
        ds.pixels.size() != static_cast<size_t>(ds.count * ds.image_size()) ||
        ds.labels.size() != static_cast<size_t>(ds.count))
      fuzz::property_failed("a loaded CIFAR-10 batch's sizes do not match its data");
    for (int32_t label : ds.labels)
      if (label < 0 || label > 9) fuzz::property_failed("a CIFAR-10 label outside 0-9 loaded");
  } catch (const DataError& e) {
    fuzz::rejected(e);
  }
  return 0;
}
