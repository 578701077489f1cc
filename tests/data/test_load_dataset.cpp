// The load_dataset entry point: dispatch by kind, messages that say how to get
// the data, and the real Fashion-MNIST when its Debian package is installed.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/data/image_dataset.h"
#include "tests/data/temp_dir.h"

namespace ddpm {
namespace {

using testing_data::TempDir;
using testing_data::write_file;

TEST(DataLoad, UnknownKindAndMissingPaths) {
  EXPECT_THROW_WITH(load_dataset("imagenet", "/x"), DataError,
                    "unknown dataset kind 'imagenet': expected one of idx, fashion-mnist, "
                    "cifar10, png-folder");
  TempDir dir;
  EXPECT_THROW_WITH(load_dataset("cifar10", dir / "cifar"), DataError,
                    "dataset 'cifar10': " + (dir / "cifar").string() + ": no such file or folder",
                    "download the 'CIFAR-10 binary version' from "
                    "https://www.cs.toronto.edu/~kriz/cifar.html",
                    "folder holding data_batch_*.bin");
  EXPECT_THROW_WITH(load_dataset("idx", dir / "x.gz"), DataError,
                    (dir / "x.gz").string() + ": no such file",
                    "install the Debian package dataset-fashion-mnist");
  EXPECT_THROW_WITH(load_dataset("png-folder", dir.path()), DataError, "no *.png files",
                    "Pass a folder of .png images");
  EXPECT_THROW_WITH(load_dataset("png-folder", ""), DataError, "no path given");
  EXPECT_THROW_WITH(load_dataset("fashion-mnist", dir.path()), DataError,
                    (dir / "train-images-idx3-ubyte.gz").string() + ": no such file",
                    "Install the Debian package dataset-fashion-mnist (tools/setup.sh does)");
}

TEST(DataLoad, IdxFolderWithLabels) {
  TempDir dir;
  // One 1x2 image and its label, in MNIST's file names.
  write_file(dir / "train-images-idx3-ubyte",
             {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 10, 20});
  write_file(dir / "train-labels-idx1-ubyte", {0, 0, 8, 1, 0, 0, 0, 1, 6});
  const ImageDataset ds = load_dataset("idx", dir.path());
  EXPECT_EQ(ds.count, 1);
  EXPECT_EQ(ds.width, 2);
  EXPECT_EQ(ds.pixels, (std::vector<uint8_t>{10, 20}));
  EXPECT_EQ(ds.labels, std::vector<int32_t>{6});
}

TEST(DataLoad, RealFashionMnist) {
  if (!std::filesystem::exists(kFashionMnistTrainImages))
    GTEST_SKIP() << kFashionMnistTrainImages
                 << " is absent: install the Debian package dataset-fashion-mnist";
  const ImageDataset ds = load_dataset("fashion-mnist", "");
  EXPECT_EQ(ds.count, 60000);
  EXPECT_EQ(ds.height, 28);
  EXPECT_EQ(ds.width, 28);
  EXPECT_EQ(ds.channels, 1);
  EXPECT_EQ(ds.pixels.size(), 60000u * 28 * 28);
  ASSERT_EQ(ds.labels.size(), 60000u);
  EXPECT_EQ(*std::max_element(ds.labels.begin(), ds.labels.end()), 9);
  EXPECT_EQ(*std::min_element(ds.labels.begin(), ds.labels.end()), 0);
  // Every class holds 6000 training images.
  EXPECT_EQ(std::count(ds.labels.begin(), ds.labels.end(), 3), 6000);
  EXPECT_EQ(*std::max_element(ds.pixels.begin(), ds.pixels.end()), 255);
}

}  // namespace
}  // namespace ddpm
