// The one door through which checkpoint/ reaches an optimizer's live state (better-sqlite3's
// util.cppdb idea): the spec, the groups and each param's slot. Types only, so checkpoint/ imports
// nothing of optim/optimizer.ts and there is no import cycle.
import type { ScheduleState } from '../train/schedules';
import type { LiveGroup } from './param-groups';
import type { Param } from './params';
import type { AnyOptimizerSpec } from './spec';

/** What the optimizer keeps about one param, as checkpoint/ sees it. */
export interface SlotView {
  readonly param: Param;
  /** "params[3]" or the param's name, for messages. */
  readonly label: string;
  readonly groupIndex: number;
  readonly length: number;
  /** Steps taken by this param. */
  step: number;
  /** The state tensors in spec.state order; null where the param's group keeps none. */
  readonly state: readonly (Float32Array | null)[];
}

export interface OptimizerInternals {
  readonly spec: AnyOptimizerSpec;
  readonly groups: readonly LiveGroup[];
  readonly slots: readonly SlotView[];
  /** The attached schedule, or null. */
  readonly scheduleState: ScheduleState | null;
  /** Restores a schedule state as it was saved (the groups' lrs are restored separately). */
  setScheduleState(state: ScheduleState | null): void;
}
