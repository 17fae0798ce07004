// See plan.h.
#include "plan.h"

#include <utility>

namespace simd_adamw {

Plan::Plan(OpId familyOp, JobList jobs, std::vector<uint32_t> tensorFlags,
           std::vector<PhasedShape> shapes)
    : familyOp_(familyOp), list_(std::move(jobs)), tensorFlags_(std::move(tensorFlags)) {
  list_.layOut();
  const OpLayout& family = layout();
  if (family.passCount > 0) {
    const size_t count = list_.jobs.size();
    works_.resize(count);
    size_t doubles = 0, floats = 0;
    for (size_t k = 0; k < count; ++k) {
      const PhasedShape shape = k < shapes.size() ? shapes[k] : PhasedShape{0, 0, 0};
      works_[k] = phasedGeometry(shape, list_.jobs[k].length);
      doubles += phasedWorkDoubles(works_[k]);
      floats += phasedWorkFloats(works_[k]);
    }
    workDoubles_.assign(doubles, 0.0);
    workFloats_.assign(floats, 0.0f);
    doubles = floats = 0;
    for (PhasedWork& work : works_) {
      placePhasedWork(work, workDoubles_.data() + doubles, workFloats_.data() + floats);
      doubles += phasedWorkDoubles(work);
      floats += phasedWorkFloats(work);
    }
    for (unsigned p = 0; p < family.passCount; ++p) {
      PhasedPass pass{p, {}, {0}};
      for (size_t k = 0; k < count; ++k) {
        const OpLayout& l = opLayout(static_cast<OpId>(list_.jobs[k].op));
        const uint32_t passes = works_[k].factored ? l.factoredPasses : l.unfactoredPasses;
        if (works_[k].chunkCount == 0 || (passes & (1u << p)) == 0) continue;
        pass.tensors.push_back(k);
        pass.firstElement.push_back(pass.firstElement.back() + list_.jobs[k].length);
      }
      passes_.push_back(std::move(pass));
    }
  }
  missingFlags_.assign(list_.jobs.size(), 0);
  seededFlags_.assign(list_.jobs.size(), 0);
  for (size_t k = 0; k < list_.jobs.size(); ++k) {
    const OpLayout& l = opLayout(static_cast<OpId>(list_.jobs[k].op));
    seededFlags_[k] = l.seededFlag;
    for (size_t o = 0; o < l.optionalCount; ++o) {
      const OpOptionalArray& optional = l.optionalArrays[o];
      if (!optional.perTensor && list_.jobs[k].arrays[optional.array] == nullptr) {
        missingFlags_[k] |= optional.flag;
      }
    }
  }
}

std::string Plan::check(const PlanRun& run) const {
  const OpLayout& l = layout();
  if (run.tensorCount != list_.jobs.size()) {
    return "runPlan(): tensorSet has " + std::to_string(run.tensorCount) +
           " elements but the plan has " + std::to_string(list_.jobs.size()) + " tensors";
  }
  if (run.scalarCount != run.setCount * l.scalarCount) {
    return "runPlan(): scalars has " + std::to_string(run.scalarCount) + " elements but " +
           std::to_string(run.setCount) + " sets of " + std::to_string(l.scalarCount) +
           " scalars need " + std::to_string(run.setCount * l.scalarCount);
  }
  for (size_t s = 0; s < run.setCount; ++s) {
    if ((run.flags[s] & ~l.publicFlags) != 0) {
      return "runPlan(): flags[" + std::to_string(s) + "] has unknown bits (" +
             std::to_string(run.flags[s]) + ")";
    }
  }
  if (run.tensorSeeds != nullptr && run.tensorSeedCount != list_.jobs.size()) {
    return "runPlan(): tensorSeeds has " + std::to_string(run.tensorSeedCount) +
           " elements but the plan has " + std::to_string(list_.jobs.size()) + " tensors";
  }
  for (size_t k = 0; k < run.tensorCount; ++k) {
    const uint32_t set = run.tensorSet[k];
    if (set >= run.setCount) {
      return "runPlan(): tensorSet[" + std::to_string(k) + "] is " + std::to_string(set) +
             " but there are " + std::to_string(run.setCount) + " sets";
    }
    const uint32_t missing = run.flags[set] & missingFlags_[k];
    if (missing != 0) {
      const OpLayout& tensorLayout = opLayout(static_cast<OpId>(list_.jobs[k].op));
      for (size_t o = 0; o < tensorLayout.optionalCount; ++o) {
        const OpOptionalArray& optional = tensorLayout.optionalArrays[o];
        if (!optional.perTensor && (missing & optional.flag) != 0) {
          return "runPlan(): tensor " + std::to_string(k) + " has no " +
                 tensorLayout.arrays[optional.array] + " but its set " + std::to_string(set) +
                 " needs it";
        }
      }
    }
    if ((run.flags[set] & seededFlags_[k]) != 0 && run.tensorSeeds == nullptr) {
      return "runPlan(): tensor " + std::to_string(k) + " is " +
             opLayout(static_cast<OpId>(list_.jobs[k].op)).name + " with stochasticRounding in " +
             "its set " + std::to_string(set) + ", which needs tensorSeeds";
    }
  }
  return std::string();
}

void Plan::load(const PlanRun& run) {
  const OpLayout& l = layout();
  const size_t stride = l.scalarCount + 1;
  setScalars_.resize(run.setCount * stride);
  setFlags_.assign(run.flags, run.flags + run.setCount);
  for (size_t s = 0; s < run.setCount; ++s) {
    float* out = setScalars_.data() + s * stride;
    for (size_t i = 0; i < l.scalarCount; ++i) {
      out[i] = static_cast<float>(run.scalars[s * l.scalarCount + i]);
    }
    // A negated gradient (maximize) is a gradient factor of -1: see OpLayout::negateGradFlag.
    const bool negate = (setFlags_[s] & l.negateGradFlag) != 0;
    out[l.scalarCount] = negate ? -1.0f : 1.0f;
    if (negate) setFlags_[s] |= l.scaleGradFlag;
  }
  Job* jobs = list_.jobs.data();
  for (size_t k = 0; k < run.tensorCount; ++k) {
    const uint32_t set = run.tensorSet[k];
    jobs[k].scalars = setScalars_.data() + set * stride;
    jobs[k].flags = setFlags_[set] | tensorFlags_[k];
    jobs[k].seed = run.tensorSeeds != nullptr ? run.tensorSeeds[k] : 0;
  }
}

TrainStepResult Plan::run(const IsaInfo& isa, unsigned threads, const TrainStepRequest* request) {
  TrainStepResult result{0.0, 1.0f, false, false, -1};
  if (request != nullptr) {
    result = decideTrainStep(list_, isa.kernels->sumSquares, threads, *request);
    if (result.skipped) return result;
    // A factor of exactly 1 leaves the plain kernel, bit for bit the unfused step.
    if (!(result.gradFactor == 1.0f)) {
      const OpLayout& l = layout();
      const size_t stride = l.scalarCount + 1;
      for (size_t s = 0; s < setFlags_.size(); ++s) {
        const bool negate = (setFlags_[s] & l.negateGradFlag) != 0;
        setScalars_[s * stride + l.scalarCount] = negate ? -result.gradFactor : result.gradFactor;
      }
      for (Job& job : list_.jobs) job.flags |= l.scaleGradFlag;
    }
  }
  if (passes_.empty()) {
    runElementwise(list_, isa.kernels->ops, threads);
  } else {
    for (const PhasedPass& pass : passes_) {
      runPhasedPass(list_, works_.data(), pass, isa.kernels->phased, kOpCount, threads);
    }
  }
  return result;
}

}  // namespace simd_adamw
