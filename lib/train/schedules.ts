// Learning-rate schedules: plain, immutable descriptions (so a checkpoint can store them) and the
// multiplier each gives at a step.
//
// A schedule multiplies each group's base lr, like torch.optim.lr_scheduler.LambdaLR: the optimizer
// records the groups' lrs when the schedule is attached and sets lr = baseLr * lrFactor(schedule,
// position), where position counts the steps taken since (skipped steps do not count). The
// formulas are those of Hugging Face transformers' schedules (warmup from 0) and of torch's StepLR,
// with the cosine held at its floor after totalSteps instead of rising again.

import { checkInteger, checkNumber, checkObject } from '../core/checks';
import { checkKnownKeys, rangeError, typeError } from '../core/errors';

/** lr = baseLr at every step. */
export interface ConstantSchedule {
  readonly type: 'constant';
}

/** lr rises linearly from 0 to baseLr over warmupSteps steps, then stays (HF's
 * get_constant_schedule_with_warmup): factor(t) = t < warmupSteps ? t / warmupSteps : 1. */
export interface LinearWarmupSchedule {
  readonly type: 'linearWarmup';
  readonly warmupSteps: number;
}

/**
 * Linear warmup from 0, then a half cosine from baseLr down to minLrRatio * baseLr at totalSteps,
 * held there afterwards (HF's get_cosine_with_min_lr_schedule_with_warmup, with min_lr_rate):
 *   t < warmupSteps:  t / warmupSteps
 *   otherwise:        p = min(1, (t - warmupSteps) / max(1, totalSteps - warmupSteps))
 *                     minLrRatio + (1 - minLrRatio) * (1 + cos(pi * p)) / 2
 */
export interface CosineWithWarmupSchedule {
  readonly type: 'cosineWithWarmup';
  readonly warmupSteps: number;
  readonly totalSteps: number;
  readonly minLrRatio: number;
}

/** lr is multiplied by gamma (in [0, 1]) every stepSize steps (torch's StepLR):
 * factor(t) = gamma^floor(t / stepSize). */
export interface StepDecaySchedule {
  readonly type: 'stepDecay';
  readonly stepSize: number;
  readonly gamma: number;
}

/** A learning-rate schedule; create one with {@link constant}, {@link linearWarmup},
 * {@link cosineWithWarmup} or {@link stepDecay}. */
export type LrSchedule =
  ConstantSchedule | LinearWarmupSchedule | CosineWithWarmupSchedule | StepDecaySchedule;

const SCHEDULE_KEYS: Record<LrSchedule['type'], readonly string[]> = {
  constant: ['type'],
  linearWarmup: ['type', 'warmupSteps'],
  cosineWithWarmup: ['type', 'warmupSteps', 'totalSteps', 'minLrRatio'],
  stepDecay: ['type', 'stepSize', 'gamma'],
};

function checkUnitInterval(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n >= 0 && n <= 1)) throw rangeError(name, 'a number in [0, 1]', value);
  return n;
}

/** The constant schedule: the lr never changes. */
export function constant(): ConstantSchedule {
  return Object.freeze({ type: 'constant' });
}

/** Linear warmup over `warmupSteps` steps (an integer >= 0), then constant. */
export function linearWarmup(options: { warmupSteps: number }): LinearWarmupSchedule {
  return checkSchedule('options', {
    type: 'linearWarmup',
    ...checkObject('options', options),
  }) as LinearWarmupSchedule;
}

/**
 * Linear warmup over `warmupSteps`, then cosine decay to `minLrRatio` (default 0) times the base lr
 * at `totalSteps` (counted from the first step, warmup included; >= warmupSteps).
 */
export function cosineWithWarmup(options: {
  warmupSteps: number;
  totalSteps: number;
  minLrRatio?: number;
}): CosineWithWarmupSchedule {
  const o = checkObject('options', options);
  return checkSchedule('options', {
    type: 'cosineWithWarmup',
    ...o,
    minLrRatio: o.minLrRatio ?? 0,
  }) as CosineWithWarmupSchedule;
}

/** Multiply the lr by `gamma` (in [0, 1]) every `stepSize` (integer >= 1) steps. */
export function stepDecay(options: { stepSize: number; gamma: number }): StepDecaySchedule {
  return checkSchedule('options', {
    type: 'stepDecay',
    ...checkObject('options', options),
  }) as StepDecaySchedule;
}

/**
 * Validates a schedule description (from a caller or a checkpoint) and returns a frozen copy.
 * `where` follows every name in messages (" of checkpoint 'x'").
 */
export function checkSchedule(name: string, value: unknown, where = ''): LrSchedule {
  const o = checkObject(name + where, value);
  const type = o.type;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEDULE_KEYS, type)) {
    const types = Object.keys(SCHEDULE_KEYS).map((t) => `'${t}'`);
    throw typeError(`${name}.type${where}`, `one of ${types.join(', ')}`, type);
  }
  const kind = type as LrSchedule['type'];
  checkKnownKeys(name, o, SCHEDULE_KEYS[kind], where);
  const field = (key: string) => `${name}.${key}${where}`;
  switch (kind) {
    case 'constant':
      return Object.freeze({ type: kind });
    case 'linearWarmup':
      return Object.freeze({
        type: kind,
        warmupSteps: checkInteger(field('warmupSteps'), o.warmupSteps, 0),
      });
    case 'cosineWithWarmup': {
      const warmupSteps = checkInteger(field('warmupSteps'), o.warmupSteps, 0);
      const totalSteps = checkInteger(field('totalSteps'), o.totalSteps, Math.max(1, warmupSteps));
      const minLrRatio = checkUnitInterval(field('minLrRatio'), o.minLrRatio);
      return Object.freeze({ type: kind, warmupSteps, totalSteps, minLrRatio });
    }
    case 'stepDecay': {
      const stepSize = checkInteger(field('stepSize'), o.stepSize, 1);
      // At most 1, so that every factor is in [0, 1] and a scheduled lr is always valid.
      const gamma = checkUnitInterval(field('gamma'), o.gamma);
      return Object.freeze({ type: kind, stepSize, gamma });
    }
  }
}

/** The multiplier of the base lr for the step taken after `position` steps (0 for the first). */
export function lrFactor(schedule: LrSchedule, position: number): number {
  switch (schedule.type) {
    case 'constant':
      return 1;
    case 'linearWarmup':
      return position < schedule.warmupSteps ? position / schedule.warmupSteps : 1;
    case 'cosineWithWarmup': {
      const { warmupSteps, totalSteps, minLrRatio } = schedule;
      if (position < warmupSteps) return position / warmupSteps;
      const progress = Math.min(
        1,
        (position - warmupSteps) / Math.max(1, totalSteps - warmupSteps),
      );
      return minLrRatio + (1 - minLrRatio) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
    case 'stepDecay':
      return schedule.gamma ** Math.floor(position / schedule.stepSize);
  }
}

/** A schedule attached to an optimizer: what it is, the groups' base lrs, and how far it is. */
export interface ScheduleState {
  readonly schedule: LrSchedule;
  /** Steps taken since the schedule was attached (skipped steps do not count). */
  readonly position: number;
  /** Each group's lr when the schedule was attached; lr = baseLrs[g] * factor. */
  readonly baseLrs: readonly number[];
}

/** Validates a schedule state from a state dict or checkpoint for an optimizer of `groupCount`
 * groups; `where` as for {@link checkSchedule}. */
export function checkScheduleState(
  name: string,
  value: unknown,
  groupCount: number,
  where = '',
): ScheduleState {
  const o = checkObject(name + where, value);
  checkKnownKeys(name, o, ['schedule', 'position', 'baseLrs'], where);
  const { schedule, position, baseLrs } = o;
  const field = (key: string) => `${name}.${key}${where}`;
  const checkedSchedule = checkSchedule(`${name}.schedule`, schedule, where);
  const checkedPosition = checkInteger(field('position'), position, 0);
  if (!Array.isArray(baseLrs)) throw typeError(field('baseLrs'), 'an array of numbers', baseLrs);
  if (baseLrs.length !== groupCount) {
    throw rangeError(
      field('baseLrs'),
      `an array of ${groupCount} lrs (one per param group of this optimizer)`,
      baseLrs,
    );
  }
  const checkedBaseLrs = (baseLrs as unknown[]).map((lr, g) => {
    const n = checkNumber(field(`baseLrs[${g}]`), lr);
    if (!(n >= 0 && n < Infinity)) {
      throw rangeError(field(`baseLrs[${g}]`), 'a finite number >= 0', n);
    }
    return n;
  });
  return Object.freeze({
    schedule: checkedSchedule,
    position: checkedPosition,
    baseLrs: Object.freeze(checkedBaseLrs),
  });
}
