// Stress tests of the CPU backend's thread pool (engine/cpu/thread_pool.h):
// every index of a loop runs exactly once under many short loops, nested
// loops, loops from two outside threads at once, exceptions from tasks and
// resizes between loops. (Exiting a process right after starting the pool is
// tested by thread_pool_exit_main.cpp, run many times by ctest.)
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu/thread_pool.h"

namespace ddpm {
namespace {

using cpu::parallel_for;

// Restores the pool's size after a test that changes it.
class ThreadPoolTest : public ::testing::Test {
 protected:
  void TearDown() override { cpu::set_cpu_threads(threads_); }
  int threads_ = cpu::cpu_threads();
};

// Runs a loop of n and checks that each index ran exactly once.
void expect_each_once(int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n + 1));
  parallel_for(n, [&](int64_t i) { hits[size_t(i)].fetch_add(1, std::memory_order_relaxed); });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n " << n << " i " << i;
  ASSERT_EQ(hits[size_t(n)].load(), 0) << "n " << n << ": an index past the end ran";
}

TEST_F(ThreadPoolTest, ManyShortLoopsRunEachIndexOnce) {
  for (int threads : {2, 3, 4}) {
    cpu::set_cpu_threads(threads);
    ASSERT_EQ(cpu::cpu_threads(), threads);
    // Loops of 0..16 tasks back to back: workers that are still spinning,
    // or still leaving the last loop, when the next one opens.
    for (int rep = 0; rep < 300; ++rep) expect_each_once(rep % 17);
  }
}

TEST_F(ThreadPoolTest, ResultsDoNotDependOnTheThreadCount) {
  // One partial per task, summed in task order afterwards (the pool's
  // documented reduction pattern): the same bits at any thread count.
  auto sum = [] {
    std::vector<float> part(64);
    parallel_for(64, [&](int64_t t) {
      float s = 0;
      for (int i = 0; i < 1000; ++i) s += 1.0f / float(t * 1000 + i + 1);
      part[size_t(t)] = s;
    });
    float total = 0;
    for (float p : part) total += p;
    return total;
  };
  cpu::set_cpu_threads(1);
  const float one = sum();
  for (int threads : {2, 3}) {
    cpu::set_cpu_threads(threads);
    EXPECT_EQ(sum(), one) << threads << " threads";
  }
}

TEST_F(ThreadPoolTest, NestedLoopsRunSeriallyInTheTask) {
  cpu::set_cpu_threads(3);
  std::vector<std::atomic<int>> hits(7 * 5);
  parallel_for(7, [&](int64_t i) {
    const std::thread::id outer = std::this_thread::get_id();
    parallel_for(5, [&](int64_t j) {
      EXPECT_EQ(std::this_thread::get_id(), outer) << "a nested loop left its task's thread";
      hits[size_t(i * 5 + j)].fetch_add(1);
    });
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  expect_each_once(100);  // the pool still works
}

TEST_F(ThreadPoolTest, ChunksCoverTheRangeInFixedPieces) {
  cpu::set_cpu_threads(3);
  for (int64_t n : {0, 1, 9, 10, 11, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int64_t> chunks{0};
    cpu::parallel_for_chunks(n, 10, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 10, 0);
      EXPECT_EQ(e, std::min<int64_t>(n, b + 10));
      for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
      chunks.fetch_add(1);
    });
    EXPECT_EQ(chunks.load(), (n + 9) / 10);
    for (auto& h : hits) EXPECT_EQ(h.load(), 1) << "n " << n;
  }
}

TEST_F(ThreadPoolTest, ATasksExceptionReachesTheCallerAndThePoolRecovers) {
  for (int threads : {1, 2, 3}) {
    cpu::set_cpu_threads(threads);
    for (int rep = 0; rep < 50; ++rep) {
      std::vector<std::atomic<int>> hits(40);
      try {
        parallel_for(40, [&](int64_t i) {
          hits[size_t(i)].fetch_add(1);
          if (i == 7 || i == 23) throw std::runtime_error("task " + std::to_string(i));
        });
        FAIL() << "no exception, " << threads << " threads";
      } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_TRUE(what == "task 7" || what == "task 23") << what;
      }
      // No task runs twice; tasks not started when it threw may be skipped.
      for (auto& h : hits) EXPECT_LE(h.load(), 1);
      EXPECT_EQ(hits[7].load(), 1);
      expect_each_once(33);
    }
  }
}

TEST_F(ThreadPoolTest, ResizeWhileIdleKeepsWorking) {
  for (int rep = 0; rep < 40; ++rep) {
    const int threads = 1 + rep % 5;
    cpu::set_cpu_threads(threads);
    ASSERT_EQ(cpu::cpu_threads(), threads);
    expect_each_once(1 + rep);
  }
  EXPECT_THROW(cpu::set_cpu_threads(0), std::invalid_argument);
  expect_each_once(10);
}

TEST_F(ThreadPoolTest, LoopsFromTwoOutsideThreadsAtOnce) {
  // One loop holds the pool; the other thread's loops run serially in it.
  cpu::set_cpu_threads(3);
  std::atomic<int> failures{0};
  auto client = [&] {
    for (int rep = 0; rep < 200; ++rep) {
      const int64_t n = 1 + rep % 13;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      parallel_for(n, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
      for (auto& h : hits)
        if (h.load() != 1) failures.fetch_add(1);
    }
  };
  std::thread a(client), b(client);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace ddpm
