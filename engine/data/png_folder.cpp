#include "engine/data/png_folder.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "engine/data/png_decode.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

bool has_png_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png";
}

std::string describe(const DecodedImage& img) {
  return std::to_string(img.width) + "x" + std::to_string(img.height) +
         (img.channels == 1 ? " grey" : " RGB");
}

}  // namespace

ImageDataset load_png_folder(const fs::path& folder) {
  std::error_code ec;
  if (!fs::exists(folder, ec)) throw DataError(folder.string() + ": no such folder");
  if (!fs::is_directory(folder, ec)) throw DataError(folder.string() + ": not a folder");
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(folder, ec))
    if (has_png_extension(e.path()) && e.is_regular_file()) files.push_back(e.path());
  if (ec) throw DataError(folder.string() + ": cannot list the folder: " + ec.message());
  if (files.empty()) throw DataError(folder.string() + ": no *.png files in the folder");
  std::sort(files.begin(), files.end());

  ImageDataset ds;
  ds.source = folder.string();
  DecodedImage first;
  for (size_t i = 0; i < files.size(); ++i) {
    DecodedImage img = read_png(files[i]);
    if (i == 0) {
      ds.height = img.height;
      ds.width = img.width;
      ds.channels = img.channels;
      ds.pixels.reserve(files.size() * img.pixels.size());
      first = DecodedImage{img.height, img.width, img.channels, {}};
    } else if (img.height != ds.height || img.width != ds.width || img.channels != ds.channels) {
      throw DataError(files[i].string() + ": " + describe(img) + ", but " + files[0].string() +
                      " is " + describe(first) +
                      "; every image in the folder must share one size and channel count");
    }
    ds.pixels.insert(ds.pixels.end(), img.pixels.begin(), img.pixels.end());
    ++ds.count;
  }
  return ds;
}

}  // namespace ddpm
