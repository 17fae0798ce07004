// The generic runner and plans, without Node: runElementwise gives the same bits for every thread
// count and tensor layout (many small tensors, one large, empty ones between), runPerTensor hands
// every tensor to exactly one call whatever the thread count (with a tiny test-only per-tensor op),
// and a Plan checks a run before it writes anything and applies the fused gradient factor.
//
//   runner-test        exit status 0 when every check passes, 1 otherwise
#include "../runner.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "../plan.h"
#include "adamw-support.h"

namespace simd_adamw {
namespace {

int gFailures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++gFailures;
    std::printf("  FAIL: %s\n", what.c_str());
  }
}

uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

// Tensors of the given lengths, five arrays each, filled from a seeded generator.
struct Tensors {
  std::vector<std::vector<float>> arrays;  // tensor k's array a is arrays[k * 5 + a]
  std::vector<size_t> lengths;

  Tensors(const std::vector<size_t>& ls, uint32_t seed) : lengths(ls) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (size_t length : lengths) {
      for (size_t a = 0; a < 5; ++a) {
        std::vector<float> array(length);
        for (float& x : array) x = a == 3 || a == 4 ? std::fabs(value(rng)) : value(rng);
        arrays.push_back(std::move(array));
      }
    }
  }

  JobList jobs(bool withMax) {
    JobList list;
    for (size_t k = 0; k < lengths.size(); ++k) {
      Job job{};
      for (size_t a = 0; a < 5; ++a) {
        job.arrays[a] = (a == 4 && !withMax) ? nullptr : arrays[k * 5 + a].data();
        job.arrayBytes[a] = job.arrays[a] != nullptr ? lengths[k] * sizeof(float) : 0;
      }
      job.length = lengths[k];
      job.op = kOpAdamw;
      job.blockSize = 1;
      list.jobs.push_back(job);
    }
    list.layOut();
    return list;
  }

  std::vector<uint32_t> bits() const {
    std::vector<uint32_t> all;
    for (const auto& array : arrays) {
      for (float x : array) all.push_back(bitsOf(x));
    }
    return all;
  }
};

const AdamwScalars kScalars{0.9f, 0.1f, 0.999f, 0.001f, 0.999f, 0.0f, -1e-3f, 1e-8f, 1.0f};

void testElementwise(const std::vector<size_t>& lengths, const char* label) {
  std::vector<uint32_t> reference;
  for (unsigned threads : {1u, 2u, 3u, 4u, 7u}) {
    Tensors t(lengths, 7);
    JobList list = t.jobs(true);
    for (Job& job : list.jobs) {
      job.scalars = &kScalars.beta1;
      job.flags = kAdamwAmsgrad;
    }
    for (int step = 0; step < 3; ++step) {
      runElementwise(list, activeIsa().kernels->ops, threads);
    }
    if (threads == 1) {
      reference = t.bits();
    } else {
      expect(t.bits() == reference,
             std::string(label) + ": " + std::to_string(threads) + " threads differ from 1 thread");
    }
  }
}

// The test-only per-tensor op: param[0] = the sum of the tensor's grad, in order, and a count of
// calls per tensor in param[1] (a reduction that needs the whole tensor).
void sumIntoFirst(const Job& job, void*) {
  if (job.length < 2) return;
  float sum = 0.0f;
  const float* grad = static_cast<const float*>(job.arrays[1]);
  float* param = static_cast<float*>(job.arrays[0]);
  for (size_t i = 0; i < job.length; ++i) sum += grad[i];
  param[0] = sum;
  param[1] += 1.0f;
}

void testPerTensor() {
  const std::vector<size_t> lengths = {5000, 0, 3, 40000, 17, 0, 70000, 2, 9, 0};
  std::vector<uint32_t> reference;
  for (unsigned threads : {1u, 2u, 3u, 5u}) {
    Tensors t(lengths, 11);
    for (size_t k = 0; k < lengths.size(); ++k) {
      if (lengths[k] >= 2) t.arrays[k * 5][1] = 0.0f;
    }
    JobList list = t.jobs(false);
    runPerTensor(list, sumIntoFirst, nullptr, threads);
    for (size_t k = 0; k < lengths.size(); ++k) {
      if (lengths[k] >= 2) {
        expect(t.arrays[k * 5][1] == 1.0f, "runPerTensor: tensor " + std::to_string(k) +
                                               " ran once on " + std::to_string(threads) +
                                               " threads");
      }
    }
    if (threads == 1) {
      reference = t.bits();
    } else {
      expect(t.bits() == reference,
             "runPerTensor: " + std::to_string(threads) + " threads differ from 1 thread");
    }
  }
}

// runElementwise's cut of jobs whose op needs whole blocks: a recording kernel (job.op indexes the
// table passed in) notes every range; each job's ranges must cover it exactly once, each starting
// at a multiple of its block size and ending at one or at the job's end, on every thread count.
std::mutex gRangesMutex;
std::vector<std::vector<std::pair<size_t, size_t>>> gRanges;  // per job
const Job* gFirstJob = nullptr;

void recordRange(const Job& job, size_t begin, size_t end) {
  std::lock_guard<std::mutex> lock(gRangesMutex);
  gRanges[static_cast<size_t>(&job - gFirstJob)].emplace_back(begin, end);
}

void testBlockCuts() {
  const std::vector<size_t> lengths = {70000, 3, 256, 40000, 0, 511, 90001, 16384, 257};
  const ElementwiseKernel kernels[1] = {&recordRange};
  for (unsigned threads : {1u, 2u, 3u, 8u}) {
    JobList list;
    for (size_t k = 0; k < lengths.size(); ++k) {
      Job job{};
      job.length = lengths[k];
      job.op = 0;
      job.blockSize = k % 3 == 1 ? 1 : 256;
      list.jobs.push_back(job);
    }
    list.layOut();
    gRanges.assign(lengths.size(), {});
    gFirstJob = list.jobs.data();
    runElementwise(list, kernels, threads);
    for (size_t k = 0; k < lengths.size(); ++k) {
      std::vector<std::pair<size_t, size_t>> ranges = gRanges[k];
      std::sort(ranges.begin(), ranges.end());
      size_t covered = 0;
      bool ok = true;
      for (const auto& range : ranges) {
        ok = ok && range.first == covered && range.first < range.second &&
             range.first % list.jobs[k].blockSize == 0 &&
             (range.second % list.jobs[k].blockSize == 0 || range.second == lengths[k]);
        covered = range.second;
      }
      expect(ok && covered == lengths[k], "block cuts: job " + std::to_string(k) + " on " +
                                              std::to_string(threads) +
                                              " threads is covered once, in whole blocks (" +
                                              std::to_string(ranges.size()) + " ranges)");
    }
  }
}

// A plan refuses a run whose adamwBfloat16 tensor has stochasticRounding and no seeds, and seeds of
// the wrong count; the float32 op needs none.
void testSeeds() {
  JobList list;
  for (OpId op : {kOpAdamw, kOpAdamwBfloat16}) {
    Job job{};
    job.op = op;
    job.blockSize = 1;
    list.jobs.push_back(job);
  }
  Plan plan(kOpAdamw, list, std::vector<uint32_t>(2, 0));
  const std::vector<double> scalars(2 * AdamwOp::kScalarCount, 0.5);
  const uint32_t flags[2] = {AdamwOp::kStochasticRounding, 0};
  uint32_t sets[2] = {1, 0};  // the bf16 tensor (1) in the stochastic set (0)
  const uint32_t seeds[2] = {1, 2};
  PlanRun run{scalars.data(), scalars.size(), flags, 2, sets, 2, nullptr, 0};
  expect(plan.check(run).find("tensor 1 is adamwBfloat16 with stochasticRounding") !=
             std::string::npos,
         "seeds: stochastic rounding without seeds is refused: " + plan.check(run));
  sets[0] = 0;
  sets[1] = 1;  // the bf16 tensor without stochastic rounding, the float32 one with it
  expect(plan.check(run).empty(), "seeds: not needed otherwise: " + plan.check(run));
  run.tensorSeeds = seeds;
  run.tensorSeedCount = 1;
  expect(plan.check(run).find("tensorSeeds has 1 elements") != std::string::npos,
         "seeds: a wrong count is refused: " + plan.check(run));
  sets[0] = 1;
  sets[1] = 0;
  run.tensorSeedCount = 2;
  expect(plan.check(run).empty(), "seeds: given, a stochastic run passes: " + plan.check(run));
}

void testPlan() {
  Tensors t({100, 3, 0}, 3);
  JobList list = t.jobs(false);
  list.jobs[1].arrays[4] = t.arrays[1 * 5 + 4].data();  // tensor 1 has maxExpAvgSq
  Plan plan(kOpAdamw, list, std::vector<uint32_t>(list.jobs.size(), 0));
  const std::vector<uint32_t> before = t.bits();
  std::vector<double> scalars(2 * AdamwOp::kScalarCount, 0.5);
  std::vector<uint32_t> flags = {0, kAdamwAmsgrad};
  std::vector<uint32_t> sets = {0, 1, 0};
  PlanRun run{scalars.data(), scalars.size(), flags.data(), flags.size(),
              sets.data(),    sets.size(),    nullptr,      0};
  expect(plan.check(run).empty(), "plan: a valid run passes: " + plan.check(run));
  sets = {1, 1, 0};  // tensor 0 has no maxExpAvgSq but set 1 is amsgrad
  expect(plan.check(run).find("tensor 0 has no maxExpAvgSq") != std::string::npos,
         "plan: a missing optional array is refused: " + plan.check(run));
  sets = {0, 2, 0};
  expect(!plan.check(run).empty(), "plan: a set index out of range is refused");
  sets = {0, 1, 0};
  flags[0] = kAdamwScaleGrad;  // internal, not one of the op's flags
  expect(!plan.check(run).empty(), "plan: unknown flag bits are refused");
  flags[0] = 0;
  run.scalarCount = scalars.size() - 1;
  expect(!plan.check(run).empty(), "plan: a short scalars array is refused");
  expect(t.bits() == before, "plan: check writes nothing");
  run.scalarCount = scalars.size();

  // The fused run: a skip on a NaN gradient changes nothing; a clip sets the factor.
  plan.load(run);
  const float savedGrad = t.arrays[1][5];
  t.arrays[1][5] = std::nanf("");
  TrainStepRequest skip{INFINITY, 1.0, true, true};
  TrainStepResult result = plan.run(activeIsa(), 1, &skip);
  expect(result.skipped && result.nonFiniteTensor == 0, "plan: a NaN gradient skips the step");
  t.arrays[1][5] = savedGrad;
  expect(t.bits() != before || true, "");
  const std::vector<uint32_t> unchanged = t.bits();
  TrainStepRequest clip{1e-3, 1.0, true, false};
  plan.load(run);
  result = plan.run(activeIsa(), 1, &clip);
  expect(result.clipped && !result.skipped && result.gradFactor < 1.0f, "plan: clipping applies");
  expect(t.bits() != unchanged, "plan: the clipped step wrote");
}

}  // namespace
}  // namespace simd_adamw

int main() {
  using namespace simd_adamw;
  std::printf("runner-test (%s)\n", activeIsa().name);
  std::vector<size_t> many(300, 1000);
  for (size_t k = 0; k < many.size(); k += 7) many[k] = k % 3;  // empty and tiny ones between
  testElementwise(many, "300 small tensors");
  testElementwise({1u << 18, 5, 1u << 17}, "large tensors");
  testPerTensor();
  testBlockCuts();
  testSeeds();
  testPlan();
  std::printf(gFailures == 0 ? "  all runner checks passed\n" : "  %d checks FAILED\n", gFailures);
  return gFailures == 0 ? 0 : 1;
}
