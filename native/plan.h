// A step plan: one op's tensors, gathered and checked once (native/binding.cc's createPlan), run
// every step with new scalars and flags (runPlan) at a cost of a few nanoseconds per tensor on top
// of the arithmetic. No N-API here: the binding turns JavaScript values into a Plan and a PlanRun.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dispatch.h"
#include "runner.h"
#include "train-step.h"

namespace simd_adamw {

// One run's arguments (runPlan's scalars, flags, tensorSet), as plain arrays.
struct PlanRun {
  const double* scalars;
  size_t scalarCount;
  const uint32_t* flags;
  size_t setCount;
  const uint32_t* tensorSet;
  size_t tensorCount;
};

class Plan {
 public:
  // `jobs`' arrays and lengths are the plan's; their scalars and flags are set by each run.
  Plan(OpId op, JobList jobs);

  OpId op() const { return op_; }
  const OpLayout& layout() const { return opLayout(op_); }
  size_t tensorCount() const { return list_.jobs.size(); }

  // Checks a run against the plan: counts, set indices, flag bits, optional arrays. Returns an
  // empty string when it may run, else the RangeError's message. Touches nothing.
  std::string check(const PlanRun& run) const;

  // Takes a checked run's values: rounds each set's scalars to float32 once and points every job
  // at its set. After this the run's arrays are no longer needed (runPlanAsync's copy).
  void load(const PlanRun& run);

  // Runs the loaded step with `isa`'s kernel, fused with `request` when given.
  TrainStepResult run(const IsaInfo& isa, unsigned threads, const TrainStepRequest* request);

  // True while an asynchronous run holds the plan (set and cleared on the JavaScript thread).
  bool inFlight = false;

 private:
  OpId op_;
  JobList list_;
  std::vector<uint32_t> missingFlags_;  // per tensor: the flags whose optional array it lacks
  std::vector<uint32_t> setFlags_;      // per set, as loaded
  std::vector<float> setScalars_;       // per set: the op's scalars, then the gradient factor
};

}  // namespace simd_adamw
