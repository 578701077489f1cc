// ldmatrix under the emulator (kernels/ldmatrix.cuh's shuffle twin), checked
// against the PTX ISA ("ldmatrix", "Matrix fragments for ldmatrix"): for
// .m8n8.b16, lane l receives in register j the elements of matrix j at row
// l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 (the lower column in the low 16
// bits); .trans receives the transposed matrix, rows 2 (l % 4) and
// 2 (l % 4) + 1 at column l / 4. Lanes 8j..8j+7 give the row addresses of
// matrix j; here each row sits in its own, permuted 16-byte slot of shared
// memory, so a lane reading another lane's row address shows, and in x1 / x2
// the lanes whose addresses the instruction ignores point at other matrices.
// Then the two uses the bf16 kernels rely on: x4 on a 16x16 tile gives
// mma m16n8k16's A fragment, x2_trans on a [k][n] 16x8 tile its B fragment
// (fragment_row / fragment_col of kernels/warp_mma.cuh).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/warp_mma.cuh"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

using kernels::mma::fragment_col;
using kernels::mma::fragment_row;
using kernels::mma::Operand;

constexpr LdsmForm kForms[] = {LdsmForm::kX1,      LdsmForm::kX2,      LdsmForm::kX4,
                               LdsmForm::kX1Trans, LdsmForm::kX2Trans, LdsmForm::kX4Trans};

// Element (row, col) of matrix m, as a 16-bit value that reads 0x0mrc in hex.
uint16_t element(int m, int row, int col) {
  return uint16_t((m << 8) | (row << 4) | col);
}

// Row r of matrix m lives in slot kSlot[8 m + r]: a permutation of 0..31
// (13 is odd, so i -> 13 i + 7 mod 32 is one) that keeps no row in place.
int slot_of(int m, int row) {
  return (13 * (8 * m + row) + 7) % 32;
}

struct Image {
  std::vector<uint4> slots = std::vector<uint4>(32);
  std::vector<int> lane_slot = std::vector<int>(32);
  void set_row(int slot, const uint16_t (&values)[8]) { std::memcpy(&slots[slot], values, 16); }
};

// Four 8x8 matrices of element(); lane l gives row l % 8 of matrix l / 8 (for
// x1 and x2 the upper lanes' addresses, of matrices 1-3, must be ignored).
Image isa_image() {
  Image image;
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 8; ++r) {
      uint16_t row[8];
      for (int c = 0; c < 8; ++c) row[c] = element(m, r, c);
      image.set_row(slot_of(m, r), row);
    }
  for (int lane = 0; lane < 32; ++lane) image.lane_slot[lane] = slot_of(lane / 8, lane % 8);
  return image;
}

std::vector<uint32_t> run(LdsmForm form, const Image& image) {
  DeviceBuffer<uint4> dimage(image.slots);
  DeviceBuffer<int> dslots(image.lane_slot);
  DeviceBuffer<uint32_t> out(32 * 4);
  ldmatrix_load(form, dimage.get(), dslots.get(), out.get(), nullptr);
  return out.download();
}

// Typed from the ISA's fragment figures, not computed: lanes 0, 5, 14 and 31,
// registers 0-3 (matrix j's word is the high:low pair of elements 0x0jrc).
struct HandRow {
  int lane;
  uint32_t regs[4];
};
constexpr HandRow kHandPlain[] = {
    // lane 0: row 0, columns 0 and 1
    {0, {0x00010000, 0x01010100, 0x02010200, 0x03010300}},
    // lane 5: row 1, columns 2 and 3
    {5, {0x00130012, 0x01130112, 0x02130212, 0x03130312}},
    // lane 14: row 3, columns 4 and 5
    {14, {0x00350034, 0x01350134, 0x02350234, 0x03350334}},
    // lane 31: row 7, columns 6 and 7
    {31, {0x00770076, 0x01770176, 0x02770276, 0x03770376}},
};
constexpr HandRow kHandTrans[] = {
    // lane 0: rows 0 and 1 of column 0
    {0, {0x00100000, 0x01100100, 0x02100200, 0x03100300}},
    // lane 5: rows 2 and 3 of column 1
    {5, {0x00310021, 0x01310121, 0x02310221, 0x03310321}},
    // lane 14: rows 4 and 5 of column 3
    {14, {0x00530043, 0x01530143, 0x02530243, 0x03530343}},
    // lane 31: rows 6 and 7 of column 7
    {31, {0x00770067, 0x01770167, 0x02770267, 0x03770367}},
};

TEST(EmulatedLdmatrix, MatchesHandTypedIsaTable) {
  const Image image = isa_image();
  for (const LdsmForm form : kForms) {
    const std::vector<uint32_t> out = run(form, image);
    const auto& table = ldsm_transposed(form) ? kHandTrans : kHandPlain;
    for (const HandRow& row : table)
      for (int j = 0; j < ldsm_registers(form); ++j)
        EXPECT_EQ(out[4 * row.lane + j], row.regs[j])
            << "form " << int(form) << " lane " << row.lane << " register " << j << std::hex
            << ": got 0x" << out[4 * row.lane + j] << ", ISA 0x" << row.regs[j];
  }
}

TEST(EmulatedLdmatrix, EveryLaneAndRegisterFollowsTheIsaRule) {
  const Image image = isa_image();
  for (const LdsmForm form : kForms) {
    const std::vector<uint32_t> out = run(form, image);
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < 4; ++j) {
        uint32_t expected = 0;  // the kernel stores 0 past the form's registers
        if (j < ldsm_registers(form)) {
          uint16_t half[2];
          for (int h = 0; h < 2; ++h)
            half[h] = ldsm_transposed(form) ? element(j, 2 * (lane % 4) + h, lane / 4)
                                            : element(j, lane / 4, 2 * (lane % 4) + h);
          expected = uint32_t(half[0]) | uint32_t(half[1]) << 16;
        }
        EXPECT_EQ(out[4 * lane + j], expected)
            << "form " << int(form) << " lane " << lane << " register " << j;
      }
  }
}

// x4 with the header's tile order: matrices (rows 0-7, k 0-7), (rows 8-15,
// k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) of a row-major 16x16 A.
TEST(EmulatedLdmatrix, X4OnA16x16TileIsTheMmaAFragment) {
  const auto a = [](int row, int k) { return uint16_t(0x4000 | (row << 8) | k); };
  // Chunk (row, k half) in slot (7 * (2 row + half) + 3) % 32: permuted.
  const auto slot = [](int row, int half) { return (7 * (2 * row + half) + 3) % 32; };
  Image image;
  for (int row = 0; row < 16; ++row)
    for (int half = 0; half < 2; ++half) {
      uint16_t values[8];
      for (int c = 0; c < 8; ++c) values[c] = a(row, 8 * half + c);
      image.set_row(slot(row, half), values);
    }
  for (int lane = 0; lane < 32; ++lane) {
    const int m = lane / 8;
    image.lane_slot[lane] = slot(lane % 8 + 8 * (m % 2), m / 2);
  }
  const std::vector<uint32_t> out = run(LdsmForm::kX4, image);
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < kernels::mma::kElemsA; ++e) {
      const uint16_t got = uint16_t(out[4 * lane + e / 2] >> (16 * (e % 2)));
      EXPECT_EQ(got, a(fragment_row(Operand::a, lane, e), fragment_col(Operand::a, lane, e)))
          << "lane " << lane << " element a" << e;
    }
}

// x2_trans on B stored [k][n] (16 rows of k, 8 n each): matrix 0 is k 0-7,
// matrix 1 k 8-15; lanes 16-31 are ignored and point at decoy rows.
TEST(EmulatedLdmatrix, X2TransOnAKByNTileIsTheMmaBFragment) {
  const auto b = [](int k, int n) { return uint16_t(0x2000 | (k << 8) | n); };
  const auto slot = [](int k) { return (11 * k + 5) % 32; };
  Image image;
  for (int s = 0; s < 32; ++s) {
    uint16_t decoy[8];
    for (int c = 0; c < 8; ++c) decoy[c] = uint16_t(0xDE00 | s);
    image.set_row(s, decoy);
  }
  for (int k = 0; k < 16; ++k) {
    uint16_t values[8];
    for (int n = 0; n < 8; ++n) values[n] = b(k, n);
    image.set_row(slot(k), values);
  }
  for (int lane = 0; lane < 32; ++lane)
    image.lane_slot[lane] = lane < 16 ? slot(lane) : (11 * lane + 5) % 32;  // decoys
  const std::vector<uint32_t> out = run(LdsmForm::kX2Trans, image);
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < kernels::mma::kElemsB; ++e) {
      const uint16_t got = uint16_t(out[4 * lane + e / 2] >> (16 * (e % 2)));
      EXPECT_EQ(got, b(fragment_row(Operand::b, lane, e), fragment_col(Operand::b, lane, e)))
          << "lane " << lane << " element b" << e;
    }
}

}  // namespace
}  // namespace ddpm::emu_test
