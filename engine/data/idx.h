// MNIST's IDX format (also Fashion-MNIST's): a big-endian header, magic
// 0x000008NN (unsigned bytes, NN dimensions) and NN 32-bit sizes, then the
// bytes. Images are 0x00000803 (count, rows, cols), labels 0x00000801 (count).
// Either file may be gzipped.
#pragma once

#include <filesystem>

#include "engine/data/image_dataset.h"

namespace ddpm {

// Reads the images and, when `labels_path` is not empty, their labels (the
// counts must agree). Throws DataError naming the file at fault.
ImageDataset load_idx(const std::filesystem::path& images_path,
                      const std::filesystem::path& labels_path = {});

// The label file next to an image file by MNIST's naming
// (train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz), or an empty path
// when no such file exists.
std::filesystem::path idx_labels_for(const std::filesystem::path& images_path);

}  // namespace ddpm
