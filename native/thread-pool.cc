// See thread-pool.h.
#include "thread-pool.h"

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
// microseconds. About 20-50 us on current x86 cores.
constexpr int kSpinsBeforeSleep = 20000;

}  // namespace

ThreadPool& ThreadPool::instance() {
  // Leaked on purpose: joining workers from a static destructor at process exit races with the
  // runtime's own teardown.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

void ThreadPool::ensureWorkers(unsigned count) {
  while (workers_.size() < count) {
    const unsigned index = static_cast<unsigned>(workers_.size());
    // The worker starts from the generation before the run that needs it, which the caller
    // publishes only after this returns; reading it in the new thread could see that run already
    // published and wait for the next one forever.
    const uint64_t startGeneration = generation_.load(std::memory_order_acquire);
    workers_.emplace_back([this, index, startGeneration] { workerLoop(index, startGeneration); });
    workers_.back().detach();
  }
}

void ThreadPool::run(unsigned parts, const std::function<void(unsigned)>& part) {
  if (parts <= 1) {
    if (parts == 1) part(0);
    return;
  }
  std::unique_lock<std::mutex> runLock(runMutex_, std::try_to_lock);
  if (!runLock.owns_lock()) {
    for (unsigned i = 0; i < parts; ++i) part(i);
    return;
  }
  ensureWorkers(parts - 1);
  {
    std::lock_guard<std::mutex> lock(wakeMutex_);
    task_ = &part;
    parts_ = parts;
    remaining_.store(parts - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  part(0);
  // The other parts are about the same size as ours, so this wait is short.
  for (int spins = 0; remaining_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinsBeforeSleep) {
      cpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::workerLoop(unsigned workerIndex, uint64_t seen) {
  for (;;) {
    for (int spins = 0; spins < kSpinsBeforeSleep; ++spins) {
      if (generation_.load(std::memory_order_acquire) != seen) break;
      cpuRelax();
    }
    const std::function<void(unsigned)>* task = nullptr;
    unsigned parts = 0;
    {
      // Generation, task and part count are read together under the lock they were published
      // under, so a worker that wakes late never mixes one run's generation with another's task.
      std::unique_lock<std::mutex> lock(wakeMutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
      seen = generation_.load(std::memory_order_relaxed);
      task = task_;
      parts = parts_;
    }
    // Worker i runs part i + 1 (the caller runs part 0); runs with fewer parts leave it idle.
    const unsigned partIndex = workerIndex + 1;
    if (partIndex < parts) {
      (*task)(partIndex);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace simd_adamw
