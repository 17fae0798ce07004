// The one door through which checkpoint/ reaches an optimizer's live state (better-sqlite3's
// util.cppdb idea): the spec, the groups and each param's slot. Types only, so checkpoint/ imports
// nothing of optim/optimizer.ts and there is no import cycle.
import type { ScheduleState } from '../train/schedules';
import type { LiveGroup } from './param-groups';
import type { AnyParam } from './params';
import type { AnyOptimizerSpec, StateDtype } from './spec';
import type { StateArray } from './state-storage';

/** What the optimizer keeps about one param, as checkpoint/ sees it. */
export interface SlotView {
  readonly param: AnyParam;
  /** "params[3]" or the param's name, for messages. */
  readonly label: string;
  readonly groupIndex: number;
  readonly length: number;
  /** Its shape as read when the optimizer was created (Param.shape, or [length]). */
  readonly shape: readonly number[];
  /** The length of each of its state tensors in spec.state order; null where it keeps none. */
  readonly stateLengths: readonly (number | null)[];
  /** Steps taken by this param. */
  step: number;
  /** How its state is kept: its group's stateDtype, or float32 for a blockwise8 param under
   * min8bitSize. */
  readonly dtype: StateDtype;
  /** The state tensors in spec.state order; null where the param's group keeps none. */
  readonly state: readonly (StateArray | null)[];
}

/** The optimizer-wide options of lean state (optim/optimizer.ts, LeanStateOptions). */
export interface LeanStateSettings {
  readonly stochasticRounding: boolean;
  readonly seed: number;
  readonly min8bitSize: number;
}

export interface OptimizerInternals {
  readonly spec: AnyOptimizerSpec;
  readonly groups: readonly LiveGroup[];
  readonly slots: readonly SlotView[];
  /** The attached schedule, or null. */
  readonly scheduleState: ScheduleState | null;
  /** Restores a schedule state as it was saved (the groups' lrs are restored separately). */
  setScheduleState(state: ScheduleState | null): void;
  /** The options of lean state; stochasticRounding and seed are restored with the state. */
  readonly lean: LeanStateSettings;
  setStochasticRounding(stochasticRounding: boolean, seed: number): void;
  /** Elements per absmax of blockwise8 state (256), or 0 if no param has blockwise8 state. */
  readonly blockSize: number;
  /** Throws if an async step is running (`action` names what the caller was about to do). */
  assertIdle(action: string): void;
  /** A step of every param with the gradient factor given (distributed/zero.ts decides it from
   * the global norm): float32(gradFactor) multiplies every gradient as the kernel reads it. */
  stepWithGradFactor(gradFactor: number): void;
}
