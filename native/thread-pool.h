// A persistent pool of worker threads for splitting one step across cores.
//
// Threads are created on first use and live for the whole process: starting and joining a thread
// costs microseconds, as much as updating tens of thousands of parameters, so a per-step
// std::thread would make threaded steps slower than single-threaded ones.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace simd_adamw {

class ThreadPool {
 public:
  // The process-wide pool. Never destroyed: workers sleep until the process exits.
  static ThreadPool& instance();

  // Calls part(i) for every i in [0, parts), part 0 on the calling thread and the others on
  // workers, and returns when all have finished. If another run holds the pool (an async step on
  // a libuv thread while the main thread steps another optimizer), the caller runs every part
  // itself instead of waiting: the result is the same, only slower.
  void run(unsigned parts, const std::function<void(unsigned)>& part);

  // The most parts one run may ask for.
  static constexpr unsigned kMaxThreads = 256;

 private:
  ThreadPool() = default;
  void ensureWorkers(unsigned count);  // called with runMutex_ held
  void workerLoop(unsigned workerIndex, uint64_t seen);

  std::mutex runMutex_;  // one run at a time

  std::mutex wakeMutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;

  // The current run, published by bumping generation_.
  const std::function<void(unsigned)>* task_ = nullptr;
  unsigned parts_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<unsigned> remaining_{0};
};

}  // namespace simd_adamw
