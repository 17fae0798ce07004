// See thread-pool.h.
#include "thread-pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace simd_adamw {
namespace {

// Tells the CPU this is a spin-wait (frees the core's resources for its hyperthread sibling).
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// A worker spins this many times for the next run before it sleeps: steps of a training loop come
// in bursts (one per parameter group or micro-batch), and waking a sleeping thread costs several
// microseconds. A pause took about 15 ns on the development machine, so this is about 45 us: long
// enough to catch back-to-back steps, short enough not to take a core from the caller's own work.
constexpr int kSpinsBeforeSleep = 3000;

constexpr uint64_t claimOf(uint64_t generation, unsigned part) { return (generation << 32) | part; }

}  // namespace

ThreadPool& ThreadPool::instance() {
  // Leaked on purpose: joining workers from a static destructor at process exit races with the
  // runtime's own teardown.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

void ThreadPool::ensureWorkers(unsigned count) {
  while (workers_.size() < count) {
    // The worker starts from the generation before the run that needs it, which the caller
    // publishes only after this returns; reading it in the new thread could see that run already
    // published and wait for the next one.
    const uint64_t startGeneration = generation_.load(std::memory_order_acquire);
    workers_.emplace_back([this, startGeneration] { workerLoop(startGeneration); });
    workers_.back().detach();
  }
}

void ThreadPool::runParts(uint64_t generation, const PartFn& part, unsigned parts) {
  const uint64_t tag = generation & 0xffffffffu;
  uint64_t claim = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((claim >> 32) != tag || (claim & 0xffffffffu) >= parts) return;
    if (!claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel)) continue;
    part(static_cast<unsigned>(claim & 0xffffffffu));
    finished_.fetch_add(1, std::memory_order_acq_rel);
    claim = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(unsigned parts, unsigned threads, PartFn part) {
  std::unique_lock<std::mutex> runLock(runMutex_, std::defer_lock);
  if (parts <= 1 || threads <= 1 || !runLock.try_lock()) {
    for (unsigned i = 0; i < parts; ++i) part(i);
    return;
  }
  const unsigned helpers = std::min(threads, parts) - 1;
  ensureWorkers(helpers);
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(wakeMutex_);
    generation = generation_.load(std::memory_order_relaxed) + 1;
    task_ = &part;
    parts_ = parts;
    wanted_ = helpers;
    finished_.store(0, std::memory_order_relaxed);
    // Part 0 is the caller's: with one part per thread, the caller then works on the same range
    // every step and a worker on the same other range, which stays in that core's cache.
    claim_.store(claimOf(generation & 0xffffffffu, 1), std::memory_order_release);
    generation_.store(generation, std::memory_order_release);
  }
  wake_.notify_all();
  part(0);
  finished_.fetch_add(1, std::memory_order_acq_rel);
  runParts(generation, part, parts);
  // Every part is claimed; wait for the ones other threads are still running.
  for (int spins = 0; finished_.load(std::memory_order_acquire) != parts; ++spins) {
    if (spins < kSpinsBeforeSleep) {
      cpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::workerLoop(uint64_t seen) {
  // Workers are numbered by creation; a run wants the first `wanted_` of them.
  static std::atomic<unsigned> nextIndex{0};
  const unsigned index = nextIndex.fetch_add(1);
  for (;;) {
    for (int spins = 0; spins < kSpinsBeforeSleep; ++spins) {
      if (generation_.load(std::memory_order_acquire) != seen) break;
      cpuRelax();
    }
    const PartFn* task = nullptr;
    unsigned parts = 0;
    unsigned wanted = 0;
    {
      // Generation, task and sizes are read together under the lock they were published under.
      std::unique_lock<std::mutex> lock(wakeMutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
      seen = generation_.load(std::memory_order_relaxed);
      task = task_;
      parts = parts_;
      wanted = wanted_;
    }
    if (index < wanted) runParts(seen, *task, parts);
  }
}

}  // namespace simd_adamw
