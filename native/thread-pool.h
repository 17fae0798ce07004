// A persistent pool of worker threads for splitting one pass across cores.
//
// Threads are created on first use and live for the whole process: starting and joining a thread
// costs microseconds, as much as updating tens of thousands of parameters, so a per-step
// std::thread would make threaded steps slower than single-threaded ones.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace simd_adamw {

// A non-owning reference to a callable taking a part index: two pointers, no allocation (a
// std::function of a lambda with several captures allocates on the heap, once per step).
class PartFn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same<std::decay_t<F>, PartFn>::value>>
  PartFn(const F& f)  // NOLINT: implicit, like std::function
      : object_(&f),
        call_([](const void* o, unsigned part) { (*static_cast<const F*>(o))(part); }) {}
  void operator()(unsigned part) const { call_(object_, part); }

 private:
  const void* object_;
  void (*call_)(const void*, unsigned);
};

class ThreadPool {
 public:
  // The process-wide pool. Never destroyed: workers sleep until the process exits.
  static ThreadPool& instance();

  // Calls part(i) exactly once for every i in [0, parts), using the calling thread and up to
  // `threads` - 1 workers, and returns when all calls have finished. The caller runs part 0; the
  // others are claimed one at a time by whoever is free, so a worker the OS does not schedule (a
  // busy or shared machine) only means the caller does more of the parts itself; it never waits
  // for a worker that has not started. If another run holds the pool (an async step on a libuv
  // thread while the main thread steps another optimizer), the caller runs every part itself.
  void run(unsigned parts, unsigned threads, PartFn part);

  // The most threads one run may use.
  static constexpr unsigned kMaxThreads = 256;

 private:
  ThreadPool() = default;
  void ensureWorkers(unsigned count);  // called with runMutex_ held
  void workerLoop(uint64_t seen);
  // Claims and runs parts of run `generation` until none are left.
  void runParts(uint64_t generation, const PartFn& part, unsigned parts);

  std::mutex runMutex_;  // one run at a time

  std::mutex wakeMutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;

  // The current run, published under wakeMutex_ by bumping generation_.
  const PartFn* task_ = nullptr;
  unsigned parts_ = 0;
  unsigned wanted_ = 0;  // workers that should join the run (threads - 1)
  std::atomic<uint64_t> generation_{0};
  // (low 32 bits of the generation << 32) | next unclaimed part. Tying claims to the generation
  // keeps a worker that wakes after its run ended from claiming a part of the next run with the
  // old run's task.
  std::atomic<uint64_t> claim_{0};
  std::atomic<unsigned> finished_{0};  // parts of the current run that have completed
};

}  // namespace simd_adamw
