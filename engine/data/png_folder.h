// A folder of PNG images as a dataset: every *.png in it, in name order.
#pragma once

#include <filesystem>

#include "engine/data/image_dataset.h"

namespace ddpm {

// The images must share one size and channel count after decoding (grey and
// grey+alpha give 1 channel, RGB, RGBA and palette 3: see decode_png). No
// labels. Throws DataError naming the file at fault (corrupt, or a size or
// channel count unlike the first image's), or the folder when it holds no PNG.
ImageDataset load_png_folder(const std::filesystem::path& folder);

}  // namespace ddpm
