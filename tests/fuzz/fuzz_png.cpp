// Fuzzes the PNG decoder (engine/data/png_decode.cpp, libpng underneath;
// built with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, under which it ignores
// chunk CRCs so mutations reach the chunk parsing). Must hold: no crash, no
// hang, no allocation out of proportion to the input (a header claiming a
// huge image is refused before the pixels are allocated); a bad file is a
// DataError; a decoded image is grey or RGB with height x width x channels
// bytes.
#include <cstdint>

#include "engine/data/data_error.h"
#include "engine/data/png_decode.h"
#include "fuzz_util.h"

using namespace ddpm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const DecodedImage img = decode_png(data, size, "fuzz.png");
    if (img.height < 1 || img.width < 1 || (img.channels != 1 && img.channels != 3) ||
        img.pixels.size() != static_cast<size_t>(img.height * img.width * img.channels))
      fuzz::property_failed("a decoded PNG's sizes do not match its pixels");
  } catch (const DataError& e) {
    fuzz::rejected(e);
  }
  return 0;
}
