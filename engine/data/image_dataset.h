// A dataset of 8-bit images held in memory as NHWC, with optional labels, and
// the one entry point that loads any supported format by name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/data/data_error.h"

namespace ddpm {

struct ImageDataset {
  int64_t count = 0, height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // count x height x width x channels (NHWC)
  std::vector<int32_t> labels;  // count entries, or empty when the format has none
  std::string source;           // the file or folder it was read from

  int64_t image_size() const { return height * width * channels; }
  const uint8_t* image(int64_t index) const;
  // Writes image `index` as height x width x channels floats x/127.5 - 1, in
  // [-1, 1], into `out`; mirrored left-right when `flip_horizontal`.
  void to_float(int64_t index, float* out, bool flip_horizontal = false) const;
};

// Where the Debian package dataset-fashion-mnist puts the training images.
inline const std::filesystem::path kFashionMnistTrainImages =
    "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

// kind: "idx" (an IDX image file, gzipped or not; the matching *-labels-idx1-*
// file next to it is read too when present; a folder means its
// train-images-idx3-ubyte[.gz]), "fashion-mnist" (idx; an empty path means
// kFashionMnistTrainImages), "cifar10" (a folder of data_batch_*.bin, or one
// batch file), "png-folder" (every *.png in a folder). Throws DataError naming
// the file, the fault, and how to get the data.
ImageDataset load_dataset(const std::string& kind, const std::filesystem::path& path);

}  // namespace ddpm
