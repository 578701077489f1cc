// A GroupNorm test case and one forward + backward run of a GroupNorm kernel
// pair on the device, shared by the fp32 and bf16 GroupNorm kernel tests
// (test_group_norm.cpp, test_group_norm_bf16.cpp): the shapes, the buffers,
// their poisoning and prior contents, and the downloads are the same; only the
// element type of x, y, dy, dx and the kernels differ.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/group_norm.cuh"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {

struct GroupNormTestCase {
  int64_t n, h, w, c, g;
  bool affine, silu, bias;
  double offset = 0;  // added to every x: a mean far from zero

  int64_t pixels() const { return h * w; }
  size_t numel() const { return size_t(n * h * w * c); }
  kernels::GroupNormShape shape() const { return {n, h * w, c, g}; }
  std::string name() const {
    std::string s = "n" + std::to_string(n) + "_" + std::to_string(h) + "x" + std::to_string(w) +
                    "_c" + std::to_string(c) + "_g" + std::to_string(g);
    if (affine) s += "_affine";
    if (silu) s += "_silu";
    if (bias) s += "_bias";
    if (offset != 0) s += "_offset" + std::to_string(int(offset));
    return s;
  }
};

// gtest prints a failing case's parameter with this.
inline void PrintTo(const GroupNormTestCase& k, std::ostream* os) {
  *os << k.name();
}

struct GroupNormRunOptions {
  size_t offset = 0;  // elements: x, y, dy, dx start this far into their allocations
  bool accumulate = false;
  bool want_dx = true, want_dbias = true, want_dparams = true;
};

struct GroupNormResults {
  std::vector<float> y, mean, rstd, dx, dbias, dgamma, dbeta;
};

// Forward, then backward on the forward's own mean and rstd. dx and dbias are
// poisoned (overwrite) or hold in.dx0 / in.dbias0 (accumulate); dgamma and
// dbeta always start at in.dparam0 (they always accumulate); the workspace is
// poisoned before each kernel. XBuf holds x, y, dy, dx; F32Buf the rest (both
// DeviceVec-like: (values, offset) or (size, offset) constructors, get(),
// download()). forward(x, bias, gamma, beta, y, mean, rstd, work) and
// backward(x, bias, gamma, beta, mean, rstd, dy, dx, dbias, dgamma, dbeta,
// work) call the kernels.
template <class XBuf, class F32Buf, class Case, class Inputs, class Forward, class Backward>
GroupNormResults run_group_norm(const Case& k, const Inputs& in, const GroupNormRunOptions& o,
                                size_t workspace_bytes, Forward&& forward, Backward&& backward) {
  XBuf x(in.x, o.offset), dy(in.dy, o.offset), y(k.numel(), o.offset);
  F32Buf bias(in.bias, 0), gamma(in.gamma, 0), beta(in.beta, 0);
  F32Buf mean(size_t(k.n * k.g), 0), rstd(size_t(k.n * k.g), 0);
  DeviceArray<unsigned char> work(workspace_bytes);
  forward(x.get(), bias.get(), gamma.get(), beta.get(), y.get(), mean.get(), rstd.get(),
          work.get());
  GroupNormResults r;
  r.y = y.download();
  r.mean = mean.download();
  r.rstd = rstd.download();

  const std::vector<float> none;
  const size_t dx_n = o.want_dx ? k.numel() : 0;
  const size_t dbias_n = o.want_dbias && k.bias ? size_t(k.n * k.c) : 0;
  auto dx = o.accumulate && o.want_dx ? std::make_unique<XBuf>(in.dx0, o.offset)
                                      : std::make_unique<XBuf>(dx_n, o.offset);
  auto dbias = o.accumulate && dbias_n ? std::make_unique<F32Buf>(in.dbias0, 0)
                                       : std::make_unique<F32Buf>(dbias_n, 0);
  F32Buf dgamma(o.want_dparams ? in.dparam0 : none, 0);
  F32Buf dbeta(o.want_dparams ? in.dparam0 : none, 0);
  work.poison();
  backward(x.get(), bias.get(), gamma.get(), beta.get(), mean.get(), rstd.get(), dy.get(),
           dx->get(), dbias->get(), dgamma.get(), dbeta.get(), work.get());
  r.dx = dx->download();
  r.dbias = dbias->download();
  r.dgamma = dgamma.download();
  r.dbeta = dbeta.download();
  return r;
}

}  // namespace ddpm::testing
