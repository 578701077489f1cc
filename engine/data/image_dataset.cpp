#include "engine/data/image_dataset.h"

#include "engine/data/cifar10.h"
#include "engine/data/idx.h"
#include "engine/data/png_folder.h"

namespace ddpm {

namespace fs = std::filesystem;

const uint8_t* ImageDataset::image(int64_t index) const {
  if (index < 0 || index >= count)
    throw DataError(source + ": image " + std::to_string(index) + " out of range (" +
                    std::to_string(count) + " images)");
  return pixels.data() + index * image_size();
}

void ImageDataset::to_float(int64_t index, float* out, bool flip_horizontal) const {
  const uint8_t* in = image(index);
  const int64_t row = width * channels;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* src = in + y * row;
    float* dst = out + y * row;
    for (int64_t x = 0; x < width; ++x) {
      const int64_t from = flip_horizontal ? width - 1 - x : x;
      for (int64_t c = 0; c < channels; ++c)
        dst[x * channels + c] = static_cast<float>(src[from * channels + c]) / 127.5f - 1.0f;
    }
  }
}

namespace {

const char* const kIdxHint =
    "For Fashion-MNIST, install the Debian package dataset-fashion-mnist (tools/setup.sh does), "
    "which puts it in /usr/share/datasets/fashion-mnist; other IDX files (MNIST) are read "
    "the same way, gzipped or not";
const char* const kFashionMnistHint =
    "Install the Debian package dataset-fashion-mnist (tools/setup.sh does)";
const char* const kCifarHint =
    "To get CIFAR-10, download the 'CIFAR-10 binary version' from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and pass the folder holding "
    "data_batch_*.bin";
const char* const kPngHint = "Pass a folder of .png images that share one size";

// A folder given for IDX images means its training images file.
fs::path idx_images_in(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return path;
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"})
    if (fs::exists(path / name, ec)) return path / name;
  return path / "train-images-idx3-ubyte.gz";
}

ImageDataset load_idx_with_labels(const fs::path& path) {
  const fs::path images = idx_images_in(path);
  return load_idx(images, idx_labels_for(images));
}

}  // namespace

ImageDataset load_dataset(const std::string& kind, const fs::path& path) {
  const char* hint = kind == "idx"             ? kIdxHint
                     : kind == "fashion-mnist" ? kFashionMnistHint
                     : kind == "cifar10"       ? kCifarHint
                     : kind == "png-folder"    ? kPngHint
                                               : nullptr;
  if (!hint)
    throw DataError("unknown dataset kind '" + kind +
                    "': expected one of idx, fashion-mnist, cifar10, png-folder");
  try {
    if (kind == "fashion-mnist")
      return load_idx_with_labels(path.empty() ? kFashionMnistTrainImages : path);
    if (path.empty())
      throw DataError("no path given (this kind of dataset has no default location)");
    if (kind == "idx") return load_idx_with_labels(path);
    if (kind == "cifar10") return load_cifar10(path);
    return load_png_folder(path);
  } catch (const DataError& e) {
    throw DataError("dataset '" + kind + "': " + e.what() + ". " + hint);
  }
}

}  // namespace ddpm
