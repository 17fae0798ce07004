// CPU feature detection and the kernel table, generated from the ISA and op lists. See dispatch.h.
#include "dispatch.h"

#include <atomic>

#if defined(SIMD_ADAMW_X86_64)
#include <cpuid.h>
#endif

namespace simd_adamw {

// Each ISA's table, defined by native/kernels/kernels.cc compiled for it.
#define SIMD_ADAMW_ISA_DECLARE(id, name, arch, flags, supported) \
  SIMD_ADAMW_IF_##arch(extern const IsaKernels kIsaKernels_##id;)
SIMD_ADAMW_FOREACH_ISA(SIMD_ADAMW_ISA_DECLARE)
#undef SIMD_ADAMW_ISA_DECLARE

namespace {

#if defined(SIMD_ADAMW_X86_64)
// The CPU can have AVX or AVX-512 while the OS does not save their registers on a context switch;
// using them then corrupts state. XGETBV reads which register sets the OS enabled (XCR0).
unsigned long long osEnabledStateMask() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  const bool osxsave = (ecx & bit_OSXSAVE) != 0;
  if (!osxsave) return 0;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

constexpr unsigned long long kXmmYmmState = 0x6;   // XCR0 bits 1 (SSE) and 2 (AVX)
constexpr unsigned long long kAvx512State = 0xe0;  // XCR0 bits 5-7 (opmask, ZMM0-15 hi, ZMM16-31)

bool cpuHasAvx2() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (ebx & bit_AVX2) != 0 && (osEnabledStateMask() & kXmmYmmState) == kXmmYmmState;
}

bool cpuHasAvx512f() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned long long needed = kXmmYmmState | kAvx512State;
  return (ebx & bit_AVX512F) != 0 && (osEnabledStateMask() & needed) == needed;
}
#endif

bool always() { return true; }

constexpr OpLayout kOpLayouts[] = {
#define SIMD_ADAMW_OP_LAYOUT(id, descriptor) layoutOf<descriptor>(),
    SIMD_ADAMW_FOREACH_OP(SIMD_ADAMW_OP_LAYOUT)
#undef SIMD_ADAMW_OP_LAYOUT
#define SIMD_ADAMW_PHASED_OP_LAYOUT(id, descriptor) phasedLayoutOf<descriptor>(),
        SIMD_ADAMW_FOREACH_PHASED_OP(SIMD_ADAMW_PHASED_OP_LAYOUT)
#undef SIMD_ADAMW_PHASED_OP_LAYOUT
};
static_assert(countOf(kOpLayouts) == kAllOpCount, "one layout per op");

// One pointer, so a reader never sees the name of one kernel with the function of another.
std::atomic<const IsaInfo*> gActive{nullptr};

const IsaInfo& bestAvailable() {
  for (const IsaInfo& isa : compiledIsas()) {
    if (isa.supported()) return isa;
  }
  return compiledIsas().back();  // scalar, always supported
}

}  // namespace

const std::vector<IsaInfo>& compiledIsas() {
  static const std::vector<IsaInfo> table = {
#define SIMD_ADAMW_ISA_ROW(id, name, arch, flags, supported) \
  SIMD_ADAMW_IF_##arch({name, &kIsaKernels_##id, supported}, )
      SIMD_ADAMW_FOREACH_ISA(SIMD_ADAMW_ISA_ROW)
#undef SIMD_ADAMW_ISA_ROW
  };
  return table;
}

std::vector<std::string> availableIsaNames() {
  std::vector<std::string> names;
  for (const IsaInfo& isa : compiledIsas()) {
    if (isa.supported()) names.emplace_back(isa.name);
  }
  return names;
}

const IsaInfo& activeIsa() {
  const IsaInfo* active = gActive.load();
  if (active == nullptr) {
    // First use: pick the best, unless a concurrent setActiveIsa got there first.
    const IsaInfo* best = &bestAvailable();
    active = gActive.compare_exchange_strong(active, best) ? best : active;
  }
  return *active;
}

bool setActiveIsa(const std::string& name) {
  for (const IsaInfo& isa : compiledIsas()) {
    if (name == isa.name && isa.supported()) {
      gActive.store(&isa);
      return true;
    }
  }
  return false;
}

const OpLayout& opLayout(OpId op) { return kOpLayouts[op]; }

}  // namespace simd_adamw
