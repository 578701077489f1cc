// CIFAR-10's binary version: files of 3073-byte records, one label byte (0-9)
// then a 32x32 image as three 1024-byte planes (red, green, blue), row-major.
#pragma once

#include <filesystem>

#include "engine/data/image_dataset.h"

namespace ddpm {

// A folder reads every data_batch_*.bin in it, in name order (the training
// set); a file reads that one batch (e.g. test_batch.bin). Images become NHWC
// RGB. Throws DataError naming the file at fault.
ImageDataset load_cifar10(const std::filesystem::path& path);

}  // namespace ddpm
