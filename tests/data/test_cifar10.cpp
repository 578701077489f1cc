// CIFAR-10 binary batches: planar records to NHWC, folders, and error paths.
#include <gtest/gtest.h>

#include "engine/data/cifar10.h"
#include "tests/data/temp_dir.h"

namespace ddpm {
namespace {

using testing_data::TempDir;
using testing_data::write_file;

// Record r of a batch: label, then planes; pixel (c, p) = (first + r) * 7 + c * 50 + p.
std::vector<uint8_t> cifar_batch(int records, int first, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> b;
  for (int r = 0; r < records; ++r) {
    b.push_back(labels[static_cast<size_t>(r)]);
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p)
        b.push_back(static_cast<uint8_t>((first + r) * 7 + c * 50 + p));
  }
  return b;
}

uint8_t expected_pixel(int image, int y, int x, int c) {
  return static_cast<uint8_t>(image * 7 + c * 50 + y * 32 + x);
}

TEST(DataCifar10, ReadsOneFileAsNhwc) {
  TempDir dir;
  write_file(dir / "test_batch.bin", cifar_batch(2, 0, {3, 9}));
  const ImageDataset ds = load_cifar10(dir / "test_batch.bin");
  EXPECT_EQ(ds.count, 2);
  EXPECT_EQ(ds.height, 32);
  EXPECT_EQ(ds.width, 32);
  EXPECT_EQ(ds.channels, 3);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{3, 9}));
  for (int n : {0, 1})
    for (int y : {0, 5, 31})
      for (int x : {0, 17, 31})
        for (int c = 0; c < 3; ++c)
          EXPECT_EQ(ds.pixels[static_cast<size_t>(((n * 32 + y) * 32 + x) * 3 + c)],
                    expected_pixel(n, y, x, c))
              << n << " " << y << " " << x << " " << c;
}

TEST(DataCifar10, FolderReadsDataBatchesInOrder) {
  TempDir dir;
  write_file(dir / "data_batch_2.bin", cifar_batch(1, 2, {5}));
  write_file(dir / "data_batch_1.bin", cifar_batch(2, 0, {0, 1}));
  write_file(dir / "test_batch.bin", cifar_batch(1, 9, {8}));  // not training data
  write_file(dir / "batches.meta.txt", {'a'});
  const ImageDataset ds = load_cifar10(dir.path());
  EXPECT_EQ(ds.count, 3);
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{0, 1, 5}));
  EXPECT_EQ(ds.pixels[2 * 3072 + 3 * 33 + 1], expected_pixel(2, 1, 1, 1));
}

TEST(DataCifar10, WrongFileSize) {
  TempDir dir;
  std::vector<uint8_t> b = cifar_batch(2, 0, {1, 2});
  b.pop_back();
  write_file(dir / "data_batch_1.bin", b);
  EXPECT_THROW_WITH(load_cifar10(dir.path()), DataError, (dir / "data_batch_1.bin").string(),
                    "size 6145 bytes is not a positive multiple of the 3073-byte CIFAR-10 record");
  write_file(dir / "empty.bin", {});
  EXPECT_THROW_WITH(load_cifar10(dir / "empty.bin"), DataError, "size 0 bytes");
}

TEST(DataCifar10, LabelOutOfRange) {
  TempDir dir;
  write_file(dir / "b.bin", cifar_batch(2, 0, {1, 12}));
  EXPECT_THROW_WITH(load_cifar10(dir / "b.bin"), DataError, (dir / "b.bin").string(),
                    "record 1 has label 12; CIFAR-10 labels are 0 to 9");
}

TEST(DataCifar10, MissingFileOrBatches) {
  TempDir dir;
  EXPECT_THROW_WITH(load_cifar10(dir / "nope"), DataError, (dir / "nope").string(),
                    "no such file or folder");
  EXPECT_THROW_WITH(load_cifar10(dir.path()), DataError, dir.path().string(),
                    "no data_batch_*.bin files");
}

}  // namespace
}  // namespace ddpm
