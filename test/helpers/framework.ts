// What test/optimizer-spec.test.ts needs to declare an optimizer of its own: the public framework
// types and the package's own checks (internal modules, reached here as a plugin author would
// write their own).
export { Adam, Optimizer } from '../../lib';
export type { BaseParamState, OptimizerSpec, Param } from '../../lib';
export { adamStepScalars as adamStepScalarsForTest } from '../../lib/optim/adam';
export {
  checkBeta as checkBetaForTest,
  checkNonNegative as checkNonNegativeForTest,
} from '../../lib/core/checks';
