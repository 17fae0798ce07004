// Fuzz target over the kernel entry points: bytes in, one fully described case out, every SIMD
// kernel this CPU runs compared with the scalar kernel by native/tests/kernel-agreement.cc's
// compareKernels (every float of every array bit for bit, margins around the range included, and
// every stored NaN the canonical 0x7fc00000), and the scalar kernel itself checked to write nothing
// outside its range and only canonical NaNs. Any failure aborts, after printing the case.
//
// Two builds of this one file (scripts/fuzz-kernels.sh makes both):
//  - with clang and -fsanitize=fuzzer (-DSIMD_ADAMW_LIBFUZZER): libFuzzer drives
//    LLVMFuzzerTestOneInput, guided by coverage;
//  - with any compiler: the deterministic driver below replays a corpus and then feeds inputs
//    mutated from it by a seeded generator, for a number of runs or seconds. This is what CI runs
//    (g++ -fsanitize=address,undefined; no clang needed).
// Both are built with AddressSanitizer and UBSan. ASan does not see AVX2/AVX-512 masked loads and
// stores (they are not instrumented), so every array also carries margins before and after the
// range whose bits must survive: that catches a stray masked store however it got there.
//
// Input layout (every field is read front to back; a short input reads as zeros past its end):
//   flags        1 byte, low 3 bits: amsgrad, maximize, coupled; the high 5 bits, when not all
//                0, also run a lean-state case (native/tests/lean-ops.h): op (bits 3-4: 0-2 the
//                adamw family's lean ops, 3 a Lion op, (bit 0 | bit 2 >> 1) mod 3 picking lion,
//                lionBfloat16 or lionBlockwise8, with bit 1 as its maximize),
//                grad dtype (bits 5-6, mod 3), stochasticRounding (bit 7), the length below
//                (at most 5000), the rest of the case drawn from a generator seeded by a hash of
//                the whole input, checked against lean-ops.h's reference on every ISA and 1, 2, 3
//                and 8 threads
//   length       1 byte kind (< 192: 0..100, < 240: 0..5000, else 0..100000), then the value
//   padding      0..17 floats before the tensor (alignment)
//   range        1 byte (< 128: the whole tensor), else begin and end within it
//   splits       0..3 cut points where the SIMD run is split into separate calls
//   scalars      1 byte mode (< 128: from plausible hyperparameters, as lib/ does,
//                seeded by 8 bytes), else each of the 8 scalars picked from kInterestingFloats or
//                taken as raw bits
//   fill         1 byte mode: 0-3 kernel-agreement's fills (ordinary, mixed, extreme, small pool),
//                seeded by 8 bytes; 4: the remaining input bytes, cyclically, as raw float bits
//
//   fuzz-kernels [--runs N] [--seconds S] [--seed S] [--max-bytes B] [corpus file or dir ...]
//   fuzz-kernels --write-seeds DIR      writes the hand-made seeds (see writeSeeds) into DIR
#define SIMD_ADAMW_KERNEL_AGREEMENT_NO_MAIN
// The agreement program's command-line runner comes along unused.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "kernel-agreement.cc"
#pragma GCC diagnostic pop

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>

#if !defined(SIMD_ADAMW_LIBFUZZER)
#include <dirent.h>
#include <sys/stat.h>
#endif

namespace simd_adamw {
namespace {

// Floats where IEEE rules get interesting, for the scalars.
const float kInterestingFloats[] = {
    0.0f,
    -0.0f,
    1.0f,
    -1.0f,
    0.5f,
    0.9f,
    0.1f,
    0.999f,
    0.001f,
    1e-8f,
    -1e-3f,
    1.0f - 0x1p-24f,  // the float just below 1
    std::numeric_limits<float>::min(),
    std::numeric_limits<float>::denorm_min(),
    std::numeric_limits<float>::max(),
    -std::numeric_limits<float>::max(),
    std::numeric_limits<float>::infinity(),
    -std::numeric_limits<float>::infinity(),
    std::numeric_limits<float>::quiet_NaN(),
    std::numeric_limits<float>::signaling_NaN(),
};
constexpr size_t kInterestingCount = sizeof kInterestingFloats / sizeof kInterestingFloats[0];

// Reads the input front to back; past its end every read is zero.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t byte() { return offset_ < size_ ? data_[offset_++] : 0; }

  uint64_t bytes(int count) {
    uint64_t value = 0;
    for (int i = 0; i < count; ++i) value |= uint64_t{byte()} << (8 * i);
    return value;
  }

  // A value in [0, max], from as few bytes as cover max.
  uint64_t upTo(uint64_t max) {
    if (max == 0) return 0;
    int count = 1;
    while (count < 8 && (max >> (8 * count)) != 0) ++count;
    return bytes(count) % (max + 1);
  }

  const uint8_t* rest() const { return data_ + offset_; }
  size_t restSize() const { return size_ - offset_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

Case decodeCase(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  Case c;
  c.flags = in.byte() & 7u;
  const uint8_t lengthKind = in.byte();
  c.length = in.upTo(lengthKind < 192 ? 100 : lengthKind < 240 ? 5000 : 100000);
  c.padding = in.upTo(17);
  if (in.byte() < 128) {
    c.begin = 0;
    c.end = c.length;
  } else {
    c.begin = in.upTo(c.length);
    c.end = c.begin + in.upTo(c.length - c.begin);
  }
  const uint8_t splits = in.byte() % 4;
  for (uint8_t s = 0; s < splits; ++s) c.splits.push_back(c.begin + in.upTo(c.end - c.begin));
  std::sort(c.splits.begin(), c.splits.end());

  if (in.byte() < 128) {
    Rng rng(in.bytes(8));
    c.scalars = randomScalars(rng, c.flags);
  } else {
    float* fields[] = {&c.scalars.beta1,         &c.scalars.oneMinusBeta1, &c.scalars.beta2,
                       &c.scalars.oneMinusBeta2, &c.scalars.decay,         &c.scalars.l2,
                       &c.scalars.negStepSize,   &c.scalars.epsHat};
    for (float* field : fields) {
      const uint8_t pick = in.byte();
      *field = pick < 160 ? kInterestingFloats[pick % kInterestingCount]
                          : floatOf(static_cast<uint32_t>(in.bytes(4)));
    }
  }

  const uint8_t fillMode = in.byte() % 5;
  for (std::vector<float>& array : c.arrays) array.resize(c.padding + c.length + kTrailer);
  if (fillMode == 4) {
    // Raw bits from the rest of the input, repeated; the offset differs per array.
    const uint8_t* rest = in.rest();
    const size_t restSize = in.restSize();
    for (size_t a = 0; a < kArrays; ++a) {
      for (size_t i = 0; i < c.arrays[a].size(); ++i) {
        uint32_t bits = 0;
        for (size_t b = 0; b < 4 && restSize > 0; ++b) {
          bits |= uint32_t{rest[(4 * (i + 7 * a) + b) % restSize]} << (8 * b);
        }
        c.arrays[a][i] = floatOf(bits);
      }
    }
  } else {
    // As kernel-agreement's randomCase fills its arrays.
    Rng rng(in.bytes(8));
    const Fill fill = static_cast<Fill>(fillMode);
    std::vector<float> pool;
    for (int k = 0; k < 4; ++k) pool.push_back(extremeFloat(rng));
    pool.push_back(0.0f);
    pool.push_back(-0.0f);
    for (size_t a = 0; a < kArrays; ++a) {
      for (float& x : c.arrays[a]) x = fillValue(rng, fill, pool);
      if (fill != Fill::kExtreme && (a == 3 || a == 4)) {
        for (float& x : c.arrays[a]) x = floatOf(bitsOf(x) & 0x7fffffffu);
      }
    }
  }
  return c;
}

// The scalar kernel, run over the range in the case's pieces, leaves every float it must not write
// as it was and stores only canonical NaNs (compareKernels holds the SIMD kernels to the scalar
// kernel's bits; this holds the scalar kernel itself to the contract).
bool checkScalar(const Case& c, uint64_t caseIndex) {
  std::vector<float> arrays[kArrays];
  for (size_t a = 0; a < kArrays; ++a) arrays[a] = c.arrays[a];
  const AdamwTensor tensor = tensorOf(arrays, c);
  size_t from = c.begin;
  for (size_t to : c.splits) {
    adamwScalar(tensor, c.scalars, c.flags, from, to);
    from = to;
  }
  adamwScalar(tensor, c.scalars, c.flags, from, c.end);
  for (size_t a = 0; a < kArrays; ++a) {
    for (size_t i = 0; i < arrays[a].size(); ++i) {
      const uint32_t bits = bitsOf(arrays[a][i]);
      if (isWritten(c, a, i)) {
        if (!isNanBits(bits) || bits == kCanonicalNanBits) continue;
        printNonCanonicalNan("scalar", c, caseIndex, a, i, arrays[a][i]);
        return false;
      }
      if (bits == bitsOf(c.arrays[a][i])) continue;
      std::printf("SCALAR WROTE OUT OF RANGE, case %" PRIu64 ": %s[%ld]\n", caseIndex,
                  kArrayNames[a], elementOf(c, i));
      printInputsAt(c, i);
      return false;
    }
  }
  return true;
}

struct FuzzStats {
  uint64_t inputs = 0;
  uint64_t elements = 0;
  Totals totals;      // over every ISA
  lean::Totals lean;  // the lean-state cases, every ISA and thread count against the reference
};

FuzzStats gStats;

// A failure aborts, so that libFuzzer saves the input; the report is flushed first.
[[noreturn]] void fail() {
  std::fflush(stdout);
  std::abort();
}

// The lean-state case the input's first byte asks for, if any (see the input layout above).
void runLeanInput(const uint8_t* data, size_t size, const Case& c) {
  if (size == 0 || (data[0] >> 3) == 0) return;
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 1099511628211ull;
  lean::Rng rng(hash);
  const unsigned opBits = (data[0] >> 3) & 3u;
  const bool stochastic = (data[0] & 0x80u) != 0;
  const GradDtype dtype = static_cast<GradDtype>(((data[0] >> 5) & 3u) % kGradDtypeCount);
  OpId op = static_cast<OpId>(kOpAdamw + opBits);
  uint32_t flags = c.flags | (stochastic ? AdamwFamily::kStochasticRounding : 0u);
  if (opBits == 3) {
    const unsigned lionOp = ((data[0] & 1u) | ((data[0] >> 1) & 2u)) % 3;
    op = static_cast<OpId>(kOpLion + lionOp);
    flags = ((c.flags & AdamwFamily::kMaximize) != 0 ? LionFamily::kMaximize : 0u) |
            (stochastic ? LionFamily::kStochasticRounding : 0u);
  }
  const bool scale = !(c.scalars.gradFactor == 1.0f);
  const uint64_t problemsBefore = gStats.lean.mismatches;
  lean::checkCase(lean::randomCase(rng, op, dtype, flags, scale, std::min<size_t>(c.length, 5000)),
                  gStats.lean);
  if (gStats.lean.mismatches != problemsBefore) fail();
}

void runInput(const uint8_t* data, size_t size) {
  const Case c = decodeCase(data, size);
  runLeanInput(data, size, c);
  if (!checkScalar(c, gStats.inputs)) fail();
  for (const IsaInfo& isa : compiledIsas()) {
    if (isScalarIsa(isa) || !isa.supported()) continue;
    const uint64_t problemsBefore = gStats.totals.mismatches + gStats.totals.nonCanonicalNans;
    compareKernels(isa, c, gStats.inputs, gStats.totals);
    if (gStats.totals.mismatches + gStats.totals.nonCanonicalNans != problemsBefore) fail();
  }
  ++gStats.inputs;
  gStats.elements += c.end - c.begin;
}

}  // namespace
}  // namespace simd_adamw

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  simd_adamw::runInput(data, size);
  return 0;
}

#if !defined(SIMD_ADAMW_LIBFUZZER)
namespace simd_adamw {
namespace {

using Input = std::vector<uint8_t>;

bool readFile(const std::string& path, Input& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  return true;
}

// Files of a directory (not recursive), sorted so that the replay order is fixed.
std::vector<std::string> corpusFiles(const std::string& path) {
  std::vector<std::string> files;
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) return files;
  if (!S_ISDIR(info.st_mode)) {
    files.push_back(path);
    return files;
  }
  if (DIR* dir = opendir(path.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (name.empty() || name[0] == '.') continue;
      const std::string file = path + "/" + name;
      if (stat(file.c_str(), &info) == 0 && S_ISREG(info.st_mode)) files.push_back(file);
    }
    closedir(dir);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// A few of libFuzzer's mutations, without coverage guidance: flip a bit, set a byte to an
// interesting value, overwrite 4 bytes with an interesting float, insert, erase, splice.
Input mutate(Rng& rng, const std::vector<Input>& corpus, size_t maxBytes) {
  Input input;
  if (corpus.empty() || uniform(rng, 0, 7) == 0) {
    input.resize(uniform(rng, 0, maxBytes));
    for (uint8_t& b : input) b = static_cast<uint8_t>(uniform(rng, 0, 255));
    return input;
  }
  input = corpus[uniform(rng, 0, corpus.size() - 1)];
  const uint64_t mutations = uniform(rng, 1, 8);
  for (uint64_t m = 0; m < mutations; ++m) {
    const uint64_t kind = uniform(rng, 0, 5);
    if (input.empty() && kind != 3) continue;
    const size_t at = input.empty() ? 0 : uniform(rng, 0, input.size() - 1);
    switch (kind) {
      case 0:
        input[at] ^= static_cast<uint8_t>(1u << uniform(rng, 0, 7));
        break;
      case 1: {
        const uint8_t values[] = {0, 1, 127, 128, 191, 192, 239, 240, 255};
        input[at] = values[uniform(rng, 0, sizeof values - 1)];
        break;
      }
      case 2: {
        const uint32_t bits = bitsOf(kInterestingFloats[uniform(rng, 0, kInterestingCount - 1)]);
        for (size_t b = 0; b < 4 && at + b < input.size(); ++b) {
          input[at + b] = static_cast<uint8_t>(bits >> (8 * b));
        }
        break;
      }
      case 3:
        if (input.size() < maxBytes) {
          input.insert(input.begin() + static_cast<std::ptrdiff_t>(input.empty() ? 0 : at),
                       static_cast<uint8_t>(uniform(rng, 0, 255)));
        }
        break;
      case 4:
        input.erase(input.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      default: {
        const Input& other = corpus[uniform(rng, 0, corpus.size() - 1)];
        if (other.empty()) break;
        const size_t from = uniform(rng, 0, other.size() - 1);
        input.resize(at);
        input.insert(input.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
        if (input.size() > maxBytes) input.resize(maxBytes);
        break;
      }
    }
  }
  return input;
}

// Hand-made seeds: one input per corner worth keeping in the corpus, named by what it is.
struct Seed {
  std::string name;
  Input bytes;
};

Input seedBytes(uint8_t flags, uint8_t lengthKind, std::vector<uint8_t> lengthBytes,
                uint8_t padding, uint8_t scalarsMode, std::vector<uint8_t> scalarBytes,
                uint8_t fillMode, std::vector<uint8_t> fillBytes) {
  Input input = {flags, lengthKind};
  input.insert(input.end(), lengthBytes.begin(), lengthBytes.end());
  input.push_back(padding);
  input.push_back(0);  // whole range
  input.push_back(0);  // no splits
  input.push_back(scalarsMode);
  input.insert(input.end(), scalarBytes.begin(), scalarBytes.end());
  input.push_back(fillMode);
  input.insert(input.end(), fillBytes.begin(), fillBytes.end());
  return input;
}

std::vector<Seed> handMadeSeeds() {
  const std::vector<uint8_t> seed8 = {1, 2, 3, 4, 5, 6, 7, 8};
  // Scalars picked from kInterestingFloats by index: 0.9, 0.1, 0.999, 0.001, 1, 0, -1e-3, 1e-8.
  const std::vector<uint8_t> adamw = {5, 6, 7, 8, 2, 0, 10, 9};
  const std::vector<uint8_t> infinite = {16, 16, 16, 16, 16, 16, 16, 16};
  const std::vector<uint8_t> nan = {18, 18, 18, 18, 18, 18, 18, 18};
  const std::vector<uint8_t> huge = {14, 14, 14, 14, 14, 14, 15, 14};
  std::vector<Seed> named;
  // Every flag combination at lengths around the vector widths (1, 4, 8 and 16 floats).
  for (uint8_t flags = 0; flags < 8; ++flags) {
    for (uint8_t length : {0, 1, 15, 16, 17, 31, 33, 100}) {
      named.push_back(
          {"flags" + std::to_string(flags) + "-length" + std::to_string(length),
           seedBytes(flags, 0, {length}, static_cast<uint8_t>(flags % 3), 0, seed8, 1, seed8)});
    }
  }
  // 100,000 elements (the largest the decoder makes), every flag.
  named.push_back(
      {"length100000-all-flags", seedBytes(7, 255, {0xa0, 0x86, 0x01}, 3, 0, seed8, 1, seed8)});
  named.push_back({"length4999-unaligned", seedBytes(0, 200, {0x87, 0x13}, 5, 0, seed8, 0, seed8)});
  named.push_back({"scalars-infinite", seedBytes(1, 0, {40}, 0, 200, infinite, 0, seed8)});
  named.push_back({"scalars-nan", seedBytes(6, 0, {40}, 0, 200, nan, 0, seed8)});
  named.push_back({"scalars-float-max", seedBytes(5, 0, {40}, 0, 200, huge, 2, seed8)});
  named.push_back({"scalars-adamw-extreme-arrays", seedBytes(3, 0, {47}, 1, 200, adamw, 2, seed8)});
  named.push_back({"arrays-small-pool", seedBytes(1, 0, {64}, 2, 0, seed8, 3, seed8)});
  // Raw array bits: +-0, +-Inf, quiet and signalling NaN, FLT_MAX, a subnormal.
  named.push_back({"arrays-raw-specials",
                   seedBytes(7, 0, {50}, 0, 200, adamw, 4,
                             {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x80,
                              0x7f, 0x00, 0x00, 0x80, 0xff, 0x00, 0x00, 0xc0, 0x7f, 0x01, 0x00,
                              0x80, 0x7f, 0xff, 0xff, 0x7f, 0x7f, 0x01, 0x00, 0x00, 0x00})});
  // A range inside the tensor, cut in three.
  Input ranged = seedBytes(2, 0, {90}, 7, 0, seed8, 1, seed8);
  ranged[4] = 200;  // range byte: begin and end follow
  ranged.insert(ranged.begin() + 5, {13, 60});
  ranged[7] = 3;  // three splits follow
  ranged.insert(ranged.begin() + 8, {5, 20, 40});
  named.push_back({"range-13-73-three-splits", ranged});
  // The lean-state ops (the first byte's high bits): every op x grad dtype, stochastic rounding on
  // and off, the low flag bits and lengths varied, around the vector widths and a block (256).
  for (uint8_t op = 0; op < 3; ++op) {
    for (uint8_t dtype = 0; dtype < 3; ++dtype) {
      for (uint8_t stochastic = 0; stochastic < 2; ++stochastic) {
        const uint8_t flags = static_cast<uint8_t>((op + dtype + stochastic) % 8);
        const uint8_t first =
            static_cast<uint8_t>(flags | (op << 3) | (dtype << 5) | (stochastic << 7));
        const uint8_t length = static_cast<uint8_t>(17 + 40 * op + 13 * dtype + stochastic);
        named.push_back({"lean-op" + std::to_string(op) + "-grad" + std::to_string(dtype) +
                             (stochastic ? "-sr" : "") + "-length" + std::to_string(length),
                         seedBytes(first, 0, {length}, 1, 0, seed8, 1, seed8)});
      }
    }
  }
  // The Lion ops (op bits 3; bits 0 and 2 pick the op, bit 1 is maximize): every op x grad dtype,
  // stochastic rounding and maximize varied, lengths around the vector widths and a block.
  for (uint8_t lionOp = 0; lionOp < 3; ++lionOp) {
    for (uint8_t dtype = 0; dtype < 3; ++dtype) {
      for (uint8_t stochastic = 0; stochastic < 2; ++stochastic) {
        const uint8_t maximize = static_cast<uint8_t>((lionOp + dtype + stochastic) % 2);
        const uint8_t first =
            static_cast<uint8_t>((lionOp & 1u) | ((lionOp & 2u) << 1) | (maximize << 1) |
                                 (3u << 3) | (dtype << 5) | (stochastic << 7));
        const uint8_t length = static_cast<uint8_t>(15 + 41 * lionOp + 17 * dtype + stochastic);
        named.push_back({"lion-op" + std::to_string(lionOp) + "-grad" + std::to_string(dtype) +
                             (stochastic ? "-sr" : "") + (maximize ? "-max" : "") + "-length" +
                             std::to_string(length),
                         seedBytes(first, 0, {length}, 1, 0, seed8, 1, seed8)});
      }
    }
  }
  // A 5000-element blockwise8 tensor (the lean cases' largest): 20 blocks, the last partial.
  named.push_back({"lean-blockwise8-length4999", seedBytes(static_cast<uint8_t>(2u << 3 | 1u), 200,
                                                           {0x87, 0x13}, 3, 0, seed8, 1, seed8)});
  return named;
}

int writeSeeds(const std::string& dir) {
  for (const Seed& seed : handMadeSeeds()) {
    const std::string path = dir + "/" + seed.name;
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(seed.bytes.data()),
               static_cast<std::streamsize>(seed.bytes.size()));
    if (!file) {
      std::fprintf(stderr, "fuzz-kernels: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("fuzz-kernels: wrote %zu seeds to %s\n", handMadeSeeds().size(), dir.c_str());
  return 0;
}

int driver(int argc, char** argv) {
  uint64_t runs = 0;
  uint64_t seconds = 0;
  uint64_t seed = 1;
  uint64_t maxBytes = 96;
  std::vector<std::string> corpusPaths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool hasValue = i + 1 < argc;
    if (arg == "--runs" && hasValue && parseCount(argv[i + 1], runs)) {
      ++i;
    } else if (arg == "--seconds" && hasValue && parseCount(argv[i + 1], seconds)) {
      ++i;
    } else if (arg == "--seed" && hasValue && parseCount(argv[i + 1], seed)) {
      ++i;
    } else if (arg == "--max-bytes" && hasValue && parseCount(argv[i + 1], maxBytes)) {
      ++i;
    } else if (arg == "--write-seeds" && hasValue) {
      return writeSeeds(argv[i + 1]);
    } else if (!arg.empty() && arg[0] != '-') {
      corpusPaths.push_back(arg);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--runs N] [--seconds S] [--seed S] [--max-bytes B] [corpus ...]\n"
                   "       %s --write-seeds DIR\n",
                   argv[0], argv[0]);
      return 2;
    }
  }

  const auto started = std::chrono::steady_clock::now();
  const auto elapsedSeconds = [&started] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  std::vector<Input> corpus;
  for (const std::string& path : corpusPaths) {
    const std::vector<std::string> files = corpusFiles(path);
    if (files.empty()) {
      std::fprintf(stderr, "fuzz-kernels: no corpus files at %s\n", path.c_str());
      return 2;
    }
    for (const std::string& file : files) {
      Input input;
      if (!readFile(file, input)) {
        std::fprintf(stderr, "fuzz-kernels: cannot read %s\n", file.c_str());
        return 2;
      }
      corpus.push_back(std::move(input));
    }
  }
  for (const Input& input : corpus) runInput(input.data(), input.size());
  const uint64_t replayed = gStats.inputs;

  Rng rng(seed);
  uint64_t generated = 0;
  while ((runs != 0 && generated < runs) || (seconds != 0 && elapsedSeconds() < seconds)) {
    const Input input = mutate(rng, corpus, maxBytes);
    runInput(input.data(), input.size());
    ++generated;
  }

  std::string isas;
  for (const IsaInfo& isa : compiledIsas()) {
    if (!isScalarIsa(isa) && isa.supported())
      isas += std::string(isas.empty() ? "" : ", ") + isa.name;
  }
  const Totals& t = gStats.totals;
  std::printf("fuzz-kernels: %" PRIu64 " inputs (%" PRIu64 " corpus, %" PRIu64
              " generated, seed %" PRIu64 ") in %.1f s; %" PRIu64
              " elements per kernel; compared %s with scalar: outputs %" PRIu64 " finite / %" PRIu64
              " inf / %" PRIu64 " NaN, %" PRIu64 " bit mismatches, %" PRIu64
              " non-canonical NaNs\n",
              gStats.inputs, replayed, generated, seed, elapsedSeconds(), gStats.elements,
              isas.empty() ? "no SIMD kernel" : isas.c_str(), t.finiteOutputs, t.infiniteOutputs,
              t.nanOutputs, t.mismatches, t.nonCanonicalNans);
  std::printf("fuzz-kernels: lean-state ops: %" PRIu64
              " runs (kernels and plans, every ISA) of %" PRIu64
              " elements against the reference, %" PRIu64 " mismatches\n",
              gStats.lean.runs, gStats.lean.elements, gStats.lean.mismatches);
  return t.mismatches == 0 && t.nonCanonicalNans == 0 && gStats.lean.mismatches == 0 ? 0 : 1;
}

}  // namespace
}  // namespace simd_adamw

int main(int argc, char** argv) { return simd_adamw::driver(argc, argv); }
#endif
