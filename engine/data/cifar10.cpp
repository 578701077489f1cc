#include "engine/data/cifar10.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/data/file_bytes.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 32, kPlane = kSide * kSide, kRecord = 1 + 3 * kPlane;

void append_batch(const fs::path& file, ImageDataset& ds) {
  const std::vector<uint8_t> bytes = read_file_bytes(file);
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % kRecord != 0)
    throw DataError(file.string() + ": size " + std::to_string(size) +
                    " bytes is not a positive multiple of the " + std::to_string(kRecord) +
                    "-byte CIFAR-10 record (1 label byte + 3072 pixel bytes)");
  const int64_t records = size / kRecord, first = ds.count;
  ds.count += records;
  ds.pixels.resize(static_cast<size_t>(ds.count * kPlane * 3));
  ds.labels.resize(static_cast<size_t>(ds.count));
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = bytes.data() + r * kRecord;
    if (rec[0] > 9)
      throw DataError(file.string() + ": record " + std::to_string(r) + " has label " +
                      std::to_string(rec[0]) + "; CIFAR-10 labels are 0 to 9 (is this CIFAR-100?)");
    ds.labels[static_cast<size_t>(first + r)] = rec[0];
    uint8_t* out = ds.pixels.data() + (first + r) * kPlane * 3;
    // Planar RGB to interleaved (NHWC).
    for (int64_t p = 0; p < kPlane; ++p)
      for (int64_t c = 0; c < 3; ++c) out[p * 3 + c] = rec[1 + c * kPlane + p];
  }
}

}  // namespace

ImageDataset load_cifar10(const fs::path& path) {
  ImageDataset ds;
  ds.height = ds.width = kSide;
  ds.channels = 3;
  ds.source = path.string();
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError(path.string() + ": no such file or folder");
  if (!fs::is_directory(path, ec)) {
    append_batch(path, ds);
    return ds;
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("data_batch_", 0) == 0 && e.path().extension() == ".bin") files.push_back(e);
  }
  if (ec) throw DataError(path.string() + ": cannot list the folder: " + ec.message());
  if (files.empty()) throw DataError(path.string() + ": no data_batch_*.bin files in the folder");
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) append_batch(f, ds);
  return ds;
}

}  // namespace ddpm
