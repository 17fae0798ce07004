// The phased ops (adafactor, came: native/ops/phased.h) without Node: every SIMD ISA gives the
// scalar ISA's bits, every thread count gives one thread's bits, and every NaN stored is the
// canonical one. Cases are whole plans of several tensors (the runner's cut across tensors and
// chunks included): factored shapes [batches, R, C] with C in 1..40 and a few large ones (many
// chunks per batch, C above the chunk size), batches 1..3, unfactored lengths around the chunk
// size and the vector tails, every grad dtype, a paramBf16 copy or not, the fused gradient factor,
// both Adafactor flags, clipping that bites or not, weight decay, and NaN/Inf in the gradient,
// the param and the state. Each case runs two steps. It also checks the chunk partition (whole
// rows, at most 16 chunks per batch, the element-to-chunk cut) and the workspace size formula.
//
//   phased-agreement [--cases N] [--seed S]
//
// Prints "phased digests: <hex>", a digest of the scalar ISA's results on the fixed cases, which
// scripts/test-kernels-cross.sh compares between x86-64 and AArch64 (the same inputs: the
// generator below uses only mt19937's integers). Exit status 0 when everything agrees, 1 otherwise.
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../dispatch.h"
#include "../plan.h"

namespace simd_adamw {
namespace {

int gFailures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    if (gFailures < 20) std::printf("  FAIL: %s\n", what.c_str());
    ++gFailures;
  }
}

constexpr uint32_t kCanonicalNan = 0x7fc00000u;

uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float floatOf(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// Portable draws from mt19937's integers (the same sequence on every platform).
struct Rng {
  std::mt19937 engine;
  explicit Rng(uint32_t seed) : engine(seed) {}
  uint32_t bits() { return static_cast<uint32_t>(engine()); }
  size_t below(size_t n) { return n == 0 ? 0 : bits() % n; }
  // Uniform in [-1, 1) with 24 bits.
  float unit() {
    return static_cast<float>(static_cast<int32_t>(bits() >> 8) - (1 << 23)) / 8388608.0f;
  }
  // A value of varied magnitude, |x| < 10^(-6 .. 2), sign random.
  float scaled() {
    const float magnitudes[] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f, 10.0f, 100.0f};
    return unit() * magnitudes[below(9)];
  }
};

struct TensorSpec {
  PhasedShape shape;
  size_t length;
  GradDtype dtype;
  bool paramBf16;
};

struct Case {
  OpId op;
  std::vector<TensorSpec> tensors;
  uint32_t flags;    // public
  double gradScale;  // 0: no fused step
  bool nonFinite;    // NaN/Inf planted in the inputs
  bool tightClip;    // a clip threshold that bites
  bool weightDecay;
  uint32_t seed;
};

std::string describe(const Case& c) {
  std::string s = std::string(opLayout(c.op).name) + " flags=" + std::to_string(c.flags) +
                  " gradScale=" + std::to_string(c.gradScale) + (c.nonFinite ? " nonFinite" : "") +
                  (c.tightClip ? " tightClip" : "") + (c.weightDecay ? " wd" : "") +
                  " seed=" + std::to_string(c.seed) + " tensors:";
  for (const TensorSpec& t : c.tensors) {
    s += " [" + std::to_string(t.shape.batches) + "," + std::to_string(t.shape.rows) + "," +
         std::to_string(t.shape.cols) + "]n=" + std::to_string(t.length) + "/g" +
         std::to_string(t.dtype) + (t.paramBf16 ? "/bf16" : "");
  }
  return s;
}

bool isFactored(const PhasedShape& s) { return s.batches != 0 || s.rows != 0 || s.cols != 0; }

// One case's arrays: float32 arrays (param, state, float32 grads) and 16-bit ones (bf16/fp16
// grads, paramBf16), and the jobs pointing at them.
struct Built {
  std::vector<std::vector<float>> floats;
  std::vector<std::vector<uint16_t>> halves;
  std::vector<bool> floatWritten;  // per float array: whether the op may write it
  JobList list;
  std::vector<uint32_t> tensorFlags;
  std::vector<PhasedShape> shapes;
};

size_t arrayLength(ArrayLength kind, const TensorSpec& t) {
  switch (kind) {
    case ArrayLength::kRows:
      return t.shape.batches * t.shape.rows;
    case ArrayLength::kCols:
      return t.shape.batches * t.shape.cols;
    default:
      return t.length;
  }
}

Built build(const Case& c) {
  const OpLayout& l = opLayout(c.op);
  Rng rng(c.seed);
  Built b;
  // Reserve so the data pointers stay put.
  b.floats.reserve(c.tensors.size() * l.arrayCount);
  b.halves.reserve(c.tensors.size() * 2);
  for (const TensorSpec& t : c.tensors) {
    Job job{};
    job.op = c.op;
    job.length = t.length;
    job.blockSize = 1;
    job.gradDtype = t.dtype;
    uint32_t tensorFlags = static_cast<uint32_t>(t.dtype) << l.gradDtypeShift;
    const bool factored = isFactored(t.shape);
    for (size_t a = 0; a < l.arrayCount; ++a) {
      const OpOptionalArray* optional = nullptr;
      for (size_t o = 0; o < l.optionalCount; ++o) {
        if (l.optionalArrays[o].array == a) optional = &l.optionalArrays[o];
      }
      bool present = true;
      if (optional != nullptr) {
        if (optional->shape == ShapePresence::kFactored) present = factored;
        if (optional->shape == ShapePresence::kUnfactored) present = !factored;
        if (optional->shape == ShapePresence::kAny && optional->perTensor) present = t.paramBf16;
        if (!optional->perTensor) present = (c.flags & optional->flag) != 0 || rng.below(2) == 0;
        if (present && optional->perTensor) tensorFlags |= optional->flag;
      }
      if (!present) continue;
      const size_t n = arrayLength(l.arrayLengths[a], t);
      const bool isGrad = l.arrayTypes[a] == ArrayType::kGrad;
      if (l.arrayTypes[a] == ArrayType::kBfloat16 || (isGrad && t.dtype != kGradFloat32)) {
        // An empty array still has an address (null means "no array"), as the binding gives it.
        std::vector<uint16_t> h(std::max<size_t>(n, 1));
        for (size_t e = 0; e < n; ++e) {
          uint16_t& x = h[e];
          const float g = rng.scaled() * 0.01f;
          // bf16: the top half of the float; fp16: IEEE half bits of a modest value.
          x = t.dtype == kGradFloat16 && isGrad
                  ? static_cast<uint16_t>((rng.bits() & 0x8000u) | (0x1800u + rng.below(0x3000)))
                  : static_cast<uint16_t>(bitsOf(g) >> 16);
          if (rng.below(50) == 0) x = 0;
        }
        if (c.nonFinite && isGrad && n > 0 && rng.below(2) == 0) {
          h[rng.below(n)] = t.dtype == kGradFloat16 ? 0x7e01 : 0x7f81;  // NaNs with payloads
          h[rng.below(n)] = t.dtype == kGradFloat16 ? 0xfc00 : 0xff80;  // -Inf
        }
        b.halves.push_back(std::move(h));
        job.arrays[a] = b.halves.back().data();
        job.arrayBytes[a] = n * 2;
        continue;
      }
      std::vector<float> f(std::max<size_t>(n, 1));
      const std::string name = l.arrays[a];
      const bool positive =
          name.find("Sq") != std::string::npos || name.find("Res") != std::string::npos;
      for (size_t e = 0; e < n; ++e) {
        float& x = f[e];
        if (isGrad) {
          x = rng.below(40) == 0 ? 0.0f : rng.scaled() * 0.01f;
        } else if (positive) {
          x = rng.below(3) == 0 ? 0.0f : std::fabs(rng.scaled()) * 1e-4f + 1e-30f;
        } else {
          x = rng.unit() * 0.05f;
        }
      }
      if (c.nonFinite && n > 0 && rng.below(3) == 0) {
        const uint32_t kinds[] = {0x7f800001u, 0xffc12345u, 0x7f800000u, 0xff800000u};
        f[rng.below(n)] = floatOf(kinds[rng.below(4)]);
      }
      b.floats.push_back(std::move(f));
      // The grad is only read, and so is an expAvg whose flag (firstMoment) is off.
      b.floatWritten.push_back(!isGrad && (optional == nullptr || optional->perTensor ||
                                           (c.flags & optional->flag) != 0));
      job.arrays[a] = b.floats.back().data();
      job.arrayBytes[a] = n * 4;
    }
    b.list.jobs.push_back(job);
    b.tensorFlags.push_back(tensorFlags);
    b.shapes.push_back(t.shape);
  }
  return b;
}

std::vector<double> scalarsOf(const Case& c, int step) {
  const double wd = c.weightDecay ? 0.1 : 0.0;
  const double clip = c.tightClip ? 0.05 : 1.0;
  if (c.op == kOpAdafactor) {
    const double t = step + 1;
    const double beta2t = 1.0 - std::pow(t, -0.8);
    const double stepSize = std::fmin(1e-2, 1.0 / std::sqrt(t));
    return {beta2t, 1.0 - beta2t, 1e-30, 1e-3, clip, stepSize, 0.9, 0.1, wd};
  }
  const double lr = 2e-4;
  return {0.9, 0.1, 0.999, 0.001, 0.9999, 0.0001, 1e-30, 1e-16, clip, 1.0 - lr * wd, -lr};
}

// Every float of every array (grads included: they must be left alone) and every 16-bit value, as
// bits; and a count of non-canonical NaNs among the written floats.
std::vector<uint32_t> run(const Case& c, const IsaInfo& isa, unsigned threads, size_t* badNans) {
  Built b = build(c);
  Plan plan(c.op, b.list, b.tensorFlags, b.shapes);
  for (int step = 0; step < 2; ++step) {
    const std::vector<double> scalars = scalarsOf(c, step);
    const uint32_t flags[1] = {c.flags};
    const std::vector<uint32_t> sets(c.tensors.size(), 0);
    PlanRun r{scalars.data(), scalars.size(), flags, 1, sets.data(), sets.size(), nullptr, 0};
    const std::string problem = plan.check(r);
    expect(problem.empty(), describe(c) + ": check: " + problem);
    plan.load(r);
    TrainStepRequest request{INFINITY, c.gradScale, false, false};
    plan.run(isa, threads, c.gradScale > 0 ? &request : nullptr);
  }
  std::vector<uint32_t> bits;
  *badNans = 0;
  for (size_t i = 0; i < b.floats.size(); ++i) {
    for (float x : b.floats[i]) {
      bits.push_back(bitsOf(x));
      if (b.floatWritten[i] && std::isnan(x) && bitsOf(x) != kCanonicalNan) ++*badNans;
    }
  }
  for (const auto& h : b.halves) {
    for (uint16_t x : h) bits.push_back(x);
  }
  return bits;
}

// A random plan of a few tensors; `large` adds the big shapes (many chunks, threads).
Case randomCase(Rng& rng, uint32_t seed, bool large) {
  Case c{};
  c.op = rng.below(2) == 0 ? kOpAdafactor : kOpCame;
  c.flags = c.op == kOpAdafactor ? static_cast<uint32_t>(rng.below(4)) : 0;
  c.gradScale = rng.below(3) == 0 ? 0.0 : (rng.below(2) == 0 ? 3.0 : 0.25);
  c.nonFinite = rng.below(6) == 0;
  c.tightClip = rng.below(2) == 0;
  c.weightDecay = rng.below(2) == 0;
  c.seed = seed;
  const size_t count = 1 + rng.below(4);
  for (size_t k = 0; k < count; ++k) {
    TensorSpec t{};
    t.dtype = static_cast<GradDtype>(rng.below(3));
    t.paramBf16 = rng.below(3) == 0;
    const size_t kind = rng.below(large ? 7 : 4);
    if (kind == 0) {  // unfactored, short (vector tails)
      t.length = rng.below(41);
    } else if (kind == 1 || kind == 2) {  // factored, small C
      t.shape = {1 + rng.below(3), 1 + rng.below(50), 1 + rng.below(40)};
    } else if (kind == 3) {  // unfactored around the chunk size
      const size_t around[] = {kPhasedChunk - 1, kPhasedChunk, kPhasedChunk + 1,
                               3 * kPhasedChunk + 7, 1000};
      t.length = around[rng.below(5)];
    } else if (kind == 4) {  // factored, many rows: several chunks per batch
      t.shape = {1 + rng.below(2), 300 + rng.below(1500), 17 + rng.below(64)};
    } else if (kind == 5) {  // factored, C above the chunk size: one row per chunk
      t.shape = {1 + rng.below(2), 1 + rng.below(4), kPhasedChunk + rng.below(5000)};
    } else {  // factored, R above 16 chunks' worth
      t.shape = {1, 20 + rng.below(40), 500 + rng.below(600)};
    }
    if (isFactored(t.shape)) t.length = t.shape.batches * t.shape.rows * t.shape.cols;
    c.tensors.push_back(t);
  }
  return c;
}

uint64_t fnv(uint64_t h, const std::vector<uint32_t>& bits) {
  for (uint32_t x : bits) {
    for (int i = 0; i < 4; ++i) {
      h ^= (x >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

void testAgreement(size_t cases, uint32_t seed) {
  const IsaInfo& scalar = compiledIsas().back();
  Rng rng(seed);
  uint64_t digest = 1469598103934665603ull;
  size_t compared = 0, nanCases = 0;
  for (size_t i = 0; i < cases; ++i) {
    const bool large = i % 5 == 4;
    const Case c = randomCase(rng, seed * 1000003u + static_cast<uint32_t>(i), large);
    size_t badNans = 0;
    const std::vector<uint32_t> reference = run(c, scalar, 1, &badNans);
    expect(badNans == 0,
           describe(c) + ": scalar stored " + std::to_string(badNans) + " non-canonical NaNs");
    digest = fnv(digest, reference);
    for (uint32_t x : reference) {
      if (x == kCanonicalNan) {
        ++nanCases;
        break;
      }
    }
    for (const IsaInfo& isa : compiledIsas()) {
      if (&isa == &scalar) continue;
      if (!isa.supported()) continue;
      const std::vector<uint32_t> bits = run(c, isa, 1, &badNans);
      expect(bits == reference, describe(c) + ": " + isa.name + " differs from scalar");
      expect(badNans == 0, describe(c) + ": " + isa.name + " stored non-canonical NaNs");
      ++compared;
    }
    for (unsigned threads : large ? std::vector<unsigned>{2, 3, 8} : std::vector<unsigned>{2}) {
      const std::vector<uint32_t> bits = run(c, activeIsa(), threads, &badNans);
      const std::vector<uint32_t> one = run(c, activeIsa(), 1, &badNans);
      expect(bits == one, describe(c) + ": " + std::to_string(threads) + " threads on " +
                              activeIsa().name + " differ from 1 thread");
    }
  }
  std::printf("  %zu cases (%zu with NaNs stored), %zu ISA comparisons\n", cases, nanCases,
              compared);
  std::printf("  phased digests: %016" PRIx64 "\n", digest);
}

// The chunks of a tensor: whole rows of one batch, at most 16 per batch, covering it once; the
// element cut (firstChunkAtOrAfter) is the first chunk starting at or after each element.
void testPartition() {
  const PhasedShape shapes[] = {{1, 1, 1},     {3, 16, 24},   {1, 33, 1},   {2, 1000, 70},
                                {1, 3, 20000}, {1, 17, 1000}, {4, 5, 3333}, {2, 7, 16384},
                                {0, 0, 0},     {1, 100, 0}};
  const size_t unfactoredLength = 3 * kPhasedChunk + 5;
  for (const PhasedShape& shape : shapes) {
    const size_t length =
        isFactored(shape) ? shape.batches * shape.rows * shape.cols : unfactoredLength;
    const PhasedWork w = phasedGeometry(shape, length);
    std::vector<size_t> starts;
    for (size_t c = 0; c < w.chunkCount; ++c) {
      if (w.factored) {
        const ChunkRows rows = chunkRows(w, c);
        expect(rows.firstRow < rows.endRow && rows.endRow <= shape.rows,
               "partition: chunk rows in range");
        starts.push_back((rows.batch * shape.rows + rows.firstRow) * shape.cols);
      } else {
        starts.push_back(c * kPhasedChunk);
      }
    }
    if (w.factored && length > 0) {
      expect(w.chunksPerBatch <= kMaxChunksPerBatch, "partition: at most 16 chunks per batch");
      expect(w.chunkCount == shape.batches * w.chunksPerBatch, "partition: chunk count");
    }
    if (length == 0) expect(w.chunkCount == 0, "partition: an empty tensor has no chunks");
    for (size_t at = 0; at <= length; at += (length > 5000 ? 97 : 1)) {
      size_t expected = w.chunkCount;
      for (size_t c = 0; c < starts.size(); ++c) {
        if (starts[c] >= at) {
          expected = c;
          break;
        }
      }
      if (at == length) expected = w.chunkCount;
      expect(firstChunkAtOrAfter(w, at) == expected,
             "partition: firstChunkAtOrAfter(" + std::to_string(at) + ")");
    }
  }
}

// The plan's workspace: per factored tensor chunkCount * C + 2 * chunkCount + batches doubles and
// batches * C floats, per unfactored one 2 * ceil(n / 16384) doubles, nothing for an empty one.
void testWorkspace() {
  const TensorSpec specs[] = {{{2, 1000, 70}, 140000, kGradFloat32, false},
                              {{0, 0, 0}, 40000, kGradFloat32, false},
                              {{1, 5, 0}, 0, kGradFloat32, false},
                              {{1, 1, 1}, 1, kGradFloat32, false}};
  Case c{kOpCame, {}, 0, 0, false, false, false, 5};
  for (const TensorSpec& s : specs) c.tensors.push_back(s);
  Built b = build(c);
  Plan plan(c.op, b.list, b.tensorFlags, b.shapes);
  // [2, 1000, 70]: rowsPerChunk = max(ceil(16384/70) = 235, ceil(1000/16) = 63) = 235, 5 chunks
  // per batch, 10 chunks: 10*70 + 20 + 2 doubles, 140 floats. 40000: 3 chunks, 6 doubles.
  // [1, 1, 1]: 1 chunk: 1 + 2 + 1 doubles, 1 float.
  const size_t expected = (10 * 70 + 20 + 2 + 6 + 4) * 8 + (140 + 1) * 4;
  expect(plan.workspaceBytes() == expected, "workspace: " + std::to_string(plan.workspaceBytes()) +
                                                " bytes, expected " + std::to_string(expected));
  // A step changes nothing of the empty factored tensor (tensor 2: its five-element row states).
  std::vector<std::vector<float>> before = b.floats;
  std::vector<double> scalars = scalarsOf(c, 0);
  const uint32_t flags[1] = {0};
  const uint32_t sets[4] = {0, 0, 0, 0};
  PlanRun r{scalars.data(), scalars.size(), flags, 1, sets, 4, nullptr, 0};
  expect(plan.check(r).empty(), "workspace: the run is valid");
  plan.load(r);
  plan.run(activeIsa(), 2, nullptr);
  size_t unchanged = 0;
  for (size_t i = 0; i < b.floats.size(); ++i) {
    if (b.floats[i].size() == 5 && b.list.jobs[2].length == 0) {
      expect(std::memcmp(b.floats[i].data(), before[i].data(), 5 * sizeof(float)) == 0,
             "workspace: an empty factored tensor's row state is left alone");
      ++unchanged;
    }
  }
  expect(unchanged == 2, "workspace: the empty tensor has its two row states");
}

// A plan of the came family refuses a flag (it has none); adafactor without expAvg refuses
// firstMoment.
void testChecks() {
  Case c{kOpAdafactor, {{{1, 4, 4}, 16, kGradFloat32, false}}, 0, 0, false, false, false, 9};
  Built b = build(c);
  b.list.jobs[0].arrays[AdafactorOp::kExpAvg] = nullptr;
  Plan plan(c.op, b.list, b.tensorFlags, b.shapes);
  std::vector<double> scalars = scalarsOf(c, 0);
  const uint32_t flags[1] = {AdafactorOp::kFirstMoment};
  const uint32_t sets[1] = {0};
  PlanRun r{scalars.data(), scalars.size(), flags, 1, sets, 1, nullptr, 0};
  expect(plan.check(r).find("tensor 0 has no expAvg") != std::string::npos,
         "checks: firstMoment without expAvg is refused: " + plan.check(r));
  const uint32_t internal[1] = {AdafactorOp::kScaleGrad};
  r.flags = internal;
  expect(!plan.check(r).empty(), "checks: internal bits are refused");

  Case came{kOpCame, {{{0, 0, 0}, 16, kGradFloat32, false}}, 0, 0, false, false, false, 9};
  Built cb = build(came);
  Plan camePlan(came.op, cb.list, cb.tensorFlags, cb.shapes);
  std::vector<double> cameScalars = scalarsOf(came, 0);
  const uint32_t one[1] = {1};
  PlanRun cr{cameScalars.data(), cameScalars.size(), one, 1, sets, 1, nullptr, 0};
  expect(!camePlan.check(cr).empty(), "checks: came has no public flags");
}

}  // namespace
}  // namespace simd_adamw

int main(int argc, char** argv) {
  using namespace simd_adamw;
  size_t cases = 160;
  uint32_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--cases") == 0) {
      cases = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (std::strcmp(argv[i], "--seed") == 0) {
      seed = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: phased-agreement [--cases N] [--seed S]\n");
      return 2;
    }
  }
  std::printf("phased-agreement (ISAs:");
  for (const IsaInfo& isa : compiledIsas()) {
    std::printf(" %s%s", isa.name, isa.supported() ? "" : " (skipped: not supported here)");
  }
  std::printf(")\n");
  testPartition();
  testWorkspace();
  testChecks();
  testAgreement(cases, seed);
  std::printf(gFailures == 0 ? "  all phased checks passed\n" : "  %d checks FAILED\n", gFailures);
  return gFailures == 0 ? 0 : 1;
}
