#include "engine/ops/mse_loss.h"

namespace ddpm {

OpSignature signature(const MseLossParams&, std::span<const Shape> in) {
  expect_inputs(MseLossParams::kName, in, 2);
  expect_shape(MseLossParams::kName, "target", in[1], in[0]);
  OpSignature s;
  s.outputs = {Shape{1}};
  s.saved_inputs = bit(0) | bit(1);
  return s;
}

}  // namespace ddpm
