// A step plan: the tensors of one op family (each tensor with its own op), gathered and checked
// once (native/binding.cc's createPlan), run every step with new scalars and flags (runPlan) at a
// cost of a few nanoseconds per tensor on top of the arithmetic. No N-API here: the binding turns
// JavaScript values into a Plan and a PlanRun.
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
  const uint32_t* tensorSeeds;  // null, or tensorSeedCount per-tensor stochastic rounding keys
  size_t tensorSeedCount;
};

class Plan {
 public:
  // `jobs`' ops, arrays and lengths are the plan's; their scalars, flags and seeds are set by each
  // run. Every job's op is of the family of `familyOp` (whose scalars and flags the runs use).
  // tensorFlags[k]: the internal flag bits of tensor k (its grad dtype, its per-tensor arrays),
  // ORed into its job's flags on every run. shapes[k]: tensor k's [batches, R, C] for a phased
  // family (empty: every tensor unfactored; createPlan checked them against the lengths and
  // arrays); a phased plan allocates its workspace here, once.
  Plan(OpId familyOp, JobList jobs, std::vector<uint32_t> tensorFlags,
       std::vector<PhasedShape> shapes = {});

  // The family's scalars and public flags.
  const OpLayout& layout() const { return opLayout(familyOp_); }
  size_t tensorCount() const { return list_.jobs.size(); }

  // Checks a run against the plan: counts, set indices, flag bits, optional arrays, seeds (needed
  // when a tensor's op uses a set flag that needs one). Returns an empty string when it may run,
  // else the RangeError's message. Touches nothing.
  std::string check(const PlanRun& run) const;

  // Takes a checked run's values: rounds each set's scalars to float32 once and points every job
  // at its set. After this the run's arrays are no longer needed (runPlanAsync's copy).
  void load(const PlanRun& run);

  // Runs the loaded step with `isa`'s kernel, fused with `request` when given: the elementwise
  // pass, or every pass of a phased family (native/ops/phased.h).
  TrainStepResult run(const IsaInfo& isa, unsigned threads, const TrainStepRequest* request);

  // The phased workspace's size in bytes (0 for an elementwise family).
  size_t workspaceBytes() const {
    return workDoubles_.size() * sizeof(double) + workFloats_.size() * sizeof(float);
  }

  // True while an asynchronous run holds the plan (set and cleared on the JavaScript thread).
  bool inFlight = false;

 private:
  OpId familyOp_;
  JobList list_;
  std::vector<uint32_t> tensorFlags_;   // per tensor: internal bits ORed into its flags
  std::vector<uint32_t> missingFlags_;  // per tensor: the flags whose optional array it lacks
  std::vector<uint32_t> seededFlags_;   // per tensor: the flags with which its op needs a seed
  std::vector<uint32_t> setFlags_;      // per set, as loaded
  std::vector<float> setScalars_;       // per set: the op's scalars, then the gradient factor
  // Phased families only: each tensor's chunks and workspace (into the two buffers), and each
  // pass's tensors.
  std::vector<PhasedWork> works_;
  std::vector<double> workDoubles_;
  std::vector<float> workFloats_;
  std::vector<PhasedPass> passes_;
};

}  // namespace simd_adamw
