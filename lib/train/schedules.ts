// Learning-rate schedules: plain, immutable descriptions (so a checkpoint can store them), the
// multiplier each gives at a step, and the state an attached schedule keeps.
//
// A schedule multiplies each group's base lr, like torch.optim.lr_scheduler.LambdaLR: the optimizer
// records the groups' lrs when the schedule is attached and sets lr = baseLr * factor, where the
// factor follows from the position (the steps taken since, skipped steps not counted) for every
// schedule but reduceOnPlateau, whose factor follows from the metrics the caller reports. The
// formulas are those of Hugging Face transformers' schedules (warmup from 0) and of torch's
// LambdaLR, StepLR, MultiStepLR, ExponentialLR, OneCycleLR and ReduceLROnPlateau, in their closed
// forms, with position = torch's last_epoch; a schedule that ends (cosine, one-cycle) holds its
// last value afterwards.
//
// Every factor is in [0, 1] (a lambda's is checked each time it is called), so a scheduled lr is
// always a valid lr: the base lr is the peak, as torch's max_lr is for OneCycleLR.

import { checkInteger, checkNumber, checkObject } from '../core/checks';
import { checkKnownKeys, countOf, rangeError, typeError } from '../core/errors';

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

/**
 * factor(t) = lrLambda(t), the caller's function (torch's LambdaLR), which must return a number in
 * [0, 1]. A checkpoint records the position, not the function: loading one requires the same
 * lambda schedule attached to the optimizer already (see {@link lambdaSchedule}).
 */
export interface LambdaSchedule {
  readonly type: 'lambda';
  readonly lrLambda: (step: number) => number;
}

/** lr is multiplied by gamma (in [0, 1]) every step (torch's ExponentialLR): factor(t) = gamma^t. */
export interface ExponentialSchedule {
  readonly type: 'exponential';
  readonly gamma: number;
}

/** lr is multiplied by gamma (in [0, 1]) at each milestone (torch's MultiStepLR):
 * factor(t) = gamma^(the number of milestones <= t). Milestones increase strictly. */
export interface MultiStepSchedule {
  readonly type: 'multiStep';
  readonly milestones: readonly number[];
  readonly gamma: number;
}

/**
 * torch's OneCycleLR (two phases, three_phase=False, no momentum cycling) with max_lr = the base
 * lr, as factors of it. With initial = 1 / divFactor, final = initial / finalDivFactor,
 * e1 = pctStart * totalSteps - 1 and e2 = totalSteps - 1:
 *   t <= e1:  anneal(initial, 1, t / e1)
 *   t <= e2:  anneal(1, final, (t - e1) / (e2 - e1))
 *   t > e2:   final (torch raises past totalSteps)
 * where anneal(a, b, p) is b + (a - b) / 2 * (cos(pi * p) + 1) for 'cos' and (b - a) * p + a for
 * 'linear'.
 */
export interface OneCycleSchedule {
  readonly type: 'oneCycle';
  readonly totalSteps: number;
  readonly pctStart: number;
  readonly anneal: 'cos' | 'linear';
  readonly divFactor: number;
  readonly finalDivFactor: number;
}

/**
 * torch's ReduceLROnPlateau in factors of the base lr: the caller reports a metric once per epoch
 * (optimizer.reportMetric); after more than `patience` reports in a row without improvement on the
 * best (in 'min' mode, rel: metric < best * (1 - threshold), abs: metric < best - threshold; in
 * 'max' mode, rel: metric > best * (1 + threshold), abs: metric > best + threshold) the factor
 * becomes max(factor * this.factor, minLrRatio), then `cooldown` reports are not counted as bad.
 */
export interface ReduceOnPlateauSchedule {
  readonly type: 'reduceOnPlateau';
  readonly mode: 'min' | 'max';
  readonly factor: number;
  readonly patience: number;
  readonly threshold: number;
  readonly thresholdMode: 'rel' | 'abs';
  readonly cooldown: number;
  readonly minLrRatio: number;
}

/** A learning-rate schedule; create one with {@link constant}, {@link linearWarmup},
 * {@link cosineWithWarmup}, {@link stepDecay}, {@link lambdaSchedule}, {@link exponential},
 * {@link multiStep}, {@link oneCycle} or {@link reduceOnPlateau}. */
export type LrSchedule =
  | ConstantSchedule
  | LinearWarmupSchedule
  | CosineWithWarmupSchedule
  | StepDecaySchedule
  | LambdaSchedule
  | ExponentialSchedule
  | MultiStepSchedule
  | OneCycleSchedule
  | ReduceOnPlateauSchedule;

/** A schedule as a state dict or checkpoint file holds it: a lambda schedule without its function. */
export type SavedLrSchedule = Exclude<LrSchedule, LambdaSchedule> | { readonly type: 'lambda' };

const SCHEDULE_KEYS: Record<LrSchedule['type'], readonly string[]> = {
  constant: ['type'],
  linearWarmup: ['type', 'warmupSteps'],
  cosineWithWarmup: ['type', 'warmupSteps', 'totalSteps', 'minLrRatio'],
  stepDecay: ['type', 'stepSize', 'gamma'],
  lambda: ['type', 'lrLambda'],
  exponential: ['type', 'gamma'],
  multiStep: ['type', 'milestones', 'gamma'],
  oneCycle: ['type', 'totalSteps', 'pctStart', 'anneal', 'divFactor', 'finalDivFactor'],
  reduceOnPlateau: [
    'type',
    'mode',
    'factor',
    'patience',
    'threshold',
    'thresholdMode',
    'cooldown',
    'minLrRatio',
  ],
};

function checkUnitInterval(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n >= 0 && n <= 1)) throw rangeError(name, 'a number in [0, 1]', value);
  return n;
}

function checkChoice<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw typeError(name, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, value);
  }
  return value as T;
}

// A finite number >= minimum (divFactor, finalDivFactor, threshold).
function checkAtLeast(name: string, value: unknown, minimum: number): number {
  const n = checkNumber(name, value);
  if (!(n >= minimum && n < Infinity)) throw rangeError(name, `a finite number >= ${minimum}`, n);
  return n;
}

// The caller's options (an object) as a schedule of `type`, with `defaults` for absent options.
function scheduleFrom(
  type: LrSchedule['type'],
  options: unknown,
  defaults: Record<string, unknown> = {},
): LrSchedule {
  const given = checkObject('options', options);
  const o: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(given)) if (value !== undefined) o[key] = value;
  return checkSchedule('options', { ...o, type });
}

/** The constant schedule: the lr never changes. */
export function constant(): ConstantSchedule {
  return Object.freeze({ type: 'constant' });
}

/** Linear warmup over `warmupSteps` steps (an integer >= 0), then constant. */
export function linearWarmup(options: { warmupSteps: number }): LinearWarmupSchedule {
  return scheduleFrom('linearWarmup', options) as LinearWarmupSchedule;
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
  return scheduleFrom('cosineWithWarmup', options, { minLrRatio: 0 }) as CosineWithWarmupSchedule;
}

/** Multiply the lr by `gamma` (in [0, 1]) every `stepSize` (integer >= 1) steps. */
export function stepDecay(options: { stepSize: number; gamma: number }): StepDecaySchedule {
  return scheduleFrom('stepDecay', options) as StepDecaySchedule;
}

/**
 * factor(t) = lrLambda(t) (torch's LambdaLR), t the steps taken so far (0 for the first step). The
 * function must return a number in [0, 1] (the base lr is the peak); it is called before each step
 * for the lr of the step after, so a bad value is an error of that step with nothing changed. It
 * should be pure: it may be called more than once for a position. A checkpoint records the
 * schedule's kind and position but not the function: to resume, attach the same lambdaSchedule to
 * the optimizer, then loadFrom/loadStateDict (the static load cannot, and says so).
 */
export function lambdaSchedule(lrLambda: (step: number) => number): LambdaSchedule {
  if (typeof lrLambda !== 'function') {
    throw typeError('lrLambda', 'a function (step) => factor', lrLambda);
  }
  return Object.freeze({ type: 'lambda', lrLambda });
}

/** Multiply the lr by `gamma` (in [0, 1]) every step (torch's ExponentialLR). */
export function exponential(options: { gamma: number }): ExponentialSchedule {
  return scheduleFrom('exponential', options) as ExponentialSchedule;
}

/** Multiply the lr by `gamma` (in [0, 1]) at each of `milestones` (strictly increasing integers
 * >= 1, in steps; torch's MultiStepLR). */
export function multiStep(options: {
  milestones: readonly number[];
  gamma: number;
}): MultiStepSchedule {
  return scheduleFrom('multiStep', options) as MultiStepSchedule;
}

/**
 * torch's OneCycleLR over `totalSteps` steps with max_lr = the base lr: from baseLr / divFactor
 * (default 25) up to baseLr over the first pctStart (default 0.3) of the steps, then down to
 * baseLr / (divFactor * finalDivFactor) (default 1e4) at step totalSteps - 1, held afterwards;
 * `anneal` 'cos' (default) or 'linear'. Momentum is not cycled (torch's cycle_momentum=False).
 */
export function oneCycle(options: {
  totalSteps: number;
  pctStart?: number;
  anneal?: 'cos' | 'linear';
  divFactor?: number;
  finalDivFactor?: number;
}): OneCycleSchedule {
  return scheduleFrom('oneCycle', options, {
    pctStart: 0.3,
    anneal: 'cos',
    divFactor: 25,
    finalDivFactor: 1e4,
  }) as OneCycleSchedule;
}

/**
 * torch's ReduceLROnPlateau, driven by optimizer.reportMetric(value) once per epoch: `mode` 'min'
 * (default) or 'max', `factor` in [0, 1) (default 0.1), `patience` (default 10) and `cooldown`
 * (default 0) integers >= 0, `threshold` (default 1e-4; finite >= 0, and < 1 under
 * `thresholdMode` 'rel', the default; 'abs' takes any), `minLrRatio` in [0, 1] (default 0: torch's min_lr as a factor
 * of the base lr). Its best metric, bad-epoch and cooldown counts and factor are checkpointed.
 */
export function reduceOnPlateau(
  options: {
    mode?: 'min' | 'max';
    factor?: number;
    patience?: number;
    threshold?: number;
    thresholdMode?: 'rel' | 'abs';
    cooldown?: number;
    minLrRatio?: number;
  } = {},
): ReduceOnPlateauSchedule {
  return scheduleFrom('reduceOnPlateau', options, {
    mode: 'min',
    factor: 0.1,
    patience: 10,
    threshold: 1e-4,
    thresholdMode: 'rel',
    cooldown: 0,
    minLrRatio: 0,
  }) as ReduceOnPlateauSchedule;
}

/**
 * Validates a schedule description from a caller and returns a frozen copy. `where` follows every
 * name in messages (" of checkpoint 'x'").
 */
export function checkSchedule(name: string, value: unknown, where = ''): LrSchedule {
  return checkAnySchedule(name, value, where, false) as LrSchedule;
}

// Saved schedules differ only in a lambda's function: absent from a saved one, required otherwise.
function checkAnySchedule(
  name: string,
  value: unknown,
  where: string,
  saved: boolean,
): LrSchedule | SavedLrSchedule {
  const o = checkObject(name + where, value);
  const type = o.type;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEDULE_KEYS, type)) {
    const types = Object.keys(SCHEDULE_KEYS).map((t) => `'${t}'`);
    throw typeError(`${name}.type${where}`, `one of ${types.join(', ')}`, type);
  }
  const kind = type as LrSchedule['type'];
  checkKnownKeys(name, o, saved && kind === 'lambda' ? ['type'] : SCHEDULE_KEYS[kind], where);
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
    case 'lambda': {
      if (saved) return Object.freeze({ type: kind });
      const lrLambda = o.lrLambda;
      if (typeof lrLambda !== 'function') {
        throw typeError(field('lrLambda'), 'a function (step) => factor', lrLambda);
      }
      return Object.freeze({ type: kind, lrLambda: lrLambda as (step: number) => number });
    }
    case 'exponential':
      return Object.freeze({ type: kind, gamma: checkUnitInterval(field('gamma'), o.gamma) });
    case 'multiStep': {
      const given = o.milestones;
      if (!Array.isArray(given)) {
        throw typeError(field('milestones'), 'an array of integers (steps)', given);
      }
      const milestones: number[] = [];
      for (const [i, entry] of (given as unknown[]).entries()) {
        const minimum = i === 0 ? 1 : (milestones[i - 1] ?? 0) + 1;
        const milestone = checkNumber(field(`milestones[${i}]`), entry);
        if (!Number.isSafeInteger(milestone) || milestone < minimum) {
          const why = i === 0 ? '' : ' (milestones increase strictly)';
          throw rangeError(field(`milestones[${i}]`), `an integer >= ${minimum}${why}`, entry);
        }
        milestones.push(milestone);
      }
      const gamma = checkUnitInterval(field('gamma'), o.gamma);
      return Object.freeze({ type: kind, milestones: Object.freeze(milestones), gamma });
    }
    case 'oneCycle': {
      const totalSteps = checkInteger(field('totalSteps'), o.totalSteps, 2);
      const pctStart = checkNumber(field('pctStart'), o.pctStart);
      if (!(pctStart > 0 && pctStart < 1)) {
        throw rangeError(field('pctStart'), 'a number in (0, 1)', pctStart);
      }
      // torch divides by its first phase's end step, pctStart * totalSteps - 1.
      if (!(pctStart * totalSteps - 1 > 0)) {
        throw rangeError(
          field('pctStart'),
          `a number > 1 / totalSteps = ${1 / totalSteps} (the warm-up must end after step 0)`,
          pctStart,
        );
      }
      const anneal = checkChoice(field('anneal'), o.anneal, ['cos', 'linear'] as const);
      const divFactor = checkAtLeast(field('divFactor'), o.divFactor, 1);
      const finalDivFactor = checkAtLeast(field('finalDivFactor'), o.finalDivFactor, 1);
      return Object.freeze({ type: kind, totalSteps, pctStart, anneal, divFactor, finalDivFactor });
    }
    case 'reduceOnPlateau': {
      const mode = checkChoice(field('mode'), o.mode, ['min', 'max'] as const);
      const factor = checkNumber(field('factor'), o.factor);
      if (!(factor >= 0 && factor < 1)) {
        throw rangeError(field('factor'), 'a number in [0, 1)', factor);
      }
      const patience = checkInteger(field('patience'), o.patience, 0);
      const thresholdMode = checkChoice(field('thresholdMode'), o.thresholdMode, [
        'rel',
        'abs',
      ] as const);
      const threshold = checkAtLeast(field('threshold'), o.threshold, 0);
      if (thresholdMode === 'rel' && !(threshold < 1)) {
        throw rangeError(
          field('threshold'),
          "a number in [0, 1) under thresholdMode 'rel'",
          threshold,
        );
      }
      const cooldown = checkInteger(field('cooldown'), o.cooldown, 0);
      const minLrRatio = checkUnitInterval(field('minLrRatio'), o.minLrRatio);
      return Object.freeze({
        type: kind,
        mode,
        factor,
        patience,
        threshold,
        thresholdMode,
        cooldown,
        minLrRatio,
      });
    }
  }
}

// OneCycleLR's annealing from `start` to `end` as `pct` goes from 0 to 1, as torch computes it.
function anneal(kind: 'cos' | 'linear', start: number, end: number, pct: number): number {
  if (kind === 'linear') return (end - start) * pct + start;
  return end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
}

function oneCycleFactor(schedule: OneCycleSchedule, position: number): number {
  const { totalSteps, pctStart, divFactor, finalDivFactor } = schedule;
  const initial = 1 / divFactor;
  const final = initial / finalDivFactor;
  const warmupEnd = pctStart * totalSteps - 1;
  const end = totalSteps - 1;
  const t = Math.min(position, end);
  const value =
    t <= warmupEnd
      ? anneal(schedule.anneal, initial, 1, t / warmupEnd)
      : anneal(schedule.anneal, 1, final, (t - warmupEnd) / (end - warmupEnd));
  // In exact arithmetic it lies between the phase's ends; the clamp keeps rounding in [0, 1].
  return Math.min(1, Math.max(0, value));
}

/** A lambda schedule's factor for `position`: lrLambda(position), which must be in [0, 1]. */
function lambdaFactor(schedule: LambdaSchedule, position: number): number {
  const name = `schedule.lrLambda(${position})`;
  const value: unknown = schedule.lrLambda(position);
  if (typeof value !== 'number') throw typeError(name, 'a number (a factor of the base lr)', value);
  if (!(value >= 0 && value <= 1)) {
    throw rangeError(
      name,
      'a number in [0, 1] (a factor of the base lr; make the base lr the peak)',
      value,
    );
  }
  return value;
}

/**
 * The multiplier of the base lr for the step taken after `position` steps (0 for the first). A
 * reduceOnPlateau schedule's factor follows the reported metrics, not the position: it has none
 * here (RangeError; an optimizer's lrs show it).
 */
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
    case 'lambda':
      return lambdaFactor(schedule, position);
    case 'exponential':
      return schedule.gamma ** position;
    case 'multiStep': {
      let reached = 0;
      while (
        reached < schedule.milestones.length &&
        (schedule.milestones[reached] ?? 0) <= position
      )
        reached++;
      return schedule.gamma ** reached;
    }
    case 'oneCycle':
      return oneCycleFactor(schedule, position);
    case 'reduceOnPlateau':
      throw rangeError(
        'schedule',
        'a schedule whose factor follows from the position (a reduceOnPlateau schedule’s follows ' +
          'the metrics reported to its optimizer)',
        schedule,
      );
  }
}

/** What a reduceOnPlateau schedule has learnt from the reported metrics (torch's best,
 * num_bad_epochs, cooldown_counter, and the lr as a factor of the base lr). */
export interface PlateauState {
  /** The factor of the base lr now, in [0, 1]. */
  readonly factor: number;
  /** The best metric reported; Infinity ('min') or -Infinity ('max') before the first. */
  readonly best: number;
  readonly numBadEpochs: number;
  readonly cooldownCounter: number;
}

/** A schedule attached to an optimizer: what it is, the groups' base lrs, and how far it is. */
export interface ScheduleState {
  readonly schedule: LrSchedule;
  /** Steps taken since the schedule was attached (skipped steps do not count). */
  readonly position: number;
  /** Each group's lr when the schedule was attached; lr = baseLrs[g] * factor. */
  readonly baseLrs: readonly number[];
  /** A reduceOnPlateau schedule's state; null for the others. */
  readonly plateau: PlateauState | null;
}

/** A schedule state as validated from a state dict or file, before it meets the optimizer: a
 * lambda schedule's function is not saved. */
export interface SavedScheduleState extends Omit<ScheduleState, 'schedule'> {
  readonly schedule: SavedLrSchedule;
}

/** A reduceOnPlateau schedule's state in a state dict or file: `best` is null before the first
 * metric (JSON has no Infinity). */
export interface PlateauStateDict {
  factor: number;
  best: number | null;
  numBadEpochs: number;
  cooldownCounter: number;
}

/** A newly attached schedule's state at position 0. */
export function newScheduleState(schedule: LrSchedule, baseLrs: readonly number[]): ScheduleState {
  const plateau =
    schedule.type === 'reduceOnPlateau'
      ? Object.freeze({
          factor: 1,
          best: schedule.mode === 'min' ? Infinity : -Infinity,
          numBadEpochs: 0,
          cooldownCounter: 0,
        })
      : null;
  return Object.freeze({ schedule, position: 0, baseLrs, plateau });
}

/** The factor of an attached schedule at `position` (a lambda's is checked; see lrFactor). */
export function scheduleFactor(state: ScheduleState, position: number): number {
  return state.plateau === null ? lrFactor(state.schedule, position) : state.plateau.factor;
}

/** The state after a metric reported to a reduceOnPlateau schedule, as torch's
 * ReduceLROnPlateau.step(metric) changes its own (`metric` is finite). */
export function afterMetric(
  schedule: ReduceOnPlateauSchedule,
  plateau: PlateauState,
  metric: number,
): PlateauState {
  const { mode, threshold, thresholdMode } = schedule;
  const best = plateau.best;
  let better: boolean;
  if (mode === 'min') {
    better = thresholdMode === 'rel' ? metric < best * (1 - threshold) : metric < best - threshold;
  } else {
    better = thresholdMode === 'rel' ? metric > best * (threshold + 1) : metric > best + threshold;
  }
  let numBadEpochs = better ? 0 : plateau.numBadEpochs + 1;
  let cooldownCounter = plateau.cooldownCounter;
  if (cooldownCounter > 0) {
    cooldownCounter -= 1;
    numBadEpochs = 0; // bad epochs in cooldown are ignored
  }
  let factor = plateau.factor;
  if (numBadEpochs > schedule.patience) {
    factor = Math.max(factor * schedule.factor, schedule.minLrRatio);
    cooldownCounter = schedule.cooldown;
    numBadEpochs = 0;
  }
  return Object.freeze({ factor, best: better ? metric : best, numBadEpochs, cooldownCounter });
}

/** The state dict form of a plateau state. */
export function plateauStateDict(plateau: PlateauState): PlateauStateDict {
  const { factor, best, numBadEpochs, cooldownCounter } = plateau;
  return { factor, best: Number.isFinite(best) ? best : null, numBadEpochs, cooldownCounter };
}

/** A saved schedule: a lambda schedule without its function (a copy otherwise shares the frozen
 * description). */
export function savedSchedule(schedule: LrSchedule): SavedLrSchedule {
  return schedule.type === 'lambda' ? { type: 'lambda' } : schedule;
}

/** Validates a schedule state from a state dict or checkpoint for an optimizer of `groupCount`
 * groups; `where` as for {@link checkSchedule}. */
export function checkScheduleState(
  name: string,
  value: unknown,
  groupCount: number,
  where = '',
): SavedScheduleState {
  const o = checkObject(name + where, value);
  checkKnownKeys(name, o, ['schedule', 'position', 'baseLrs', 'plateau'], where);
  const { schedule, position, baseLrs, plateau } = o;
  const field = (key: string) => `${name}.${key}${where}`;
  const checkedSchedule = checkAnySchedule(`${name}.schedule`, schedule, where, true);
  const checkedPosition = checkInteger(field('position'), position, 0);
  if (!Array.isArray(baseLrs)) throw typeError(field('baseLrs'), 'an array of numbers', baseLrs);
  if (baseLrs.length !== groupCount) {
    throw rangeError(
      field('baseLrs'),
      `an array of ${countOf(groupCount, 'lr')} (one per param group of this optimizer)`,
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
  let checkedPlateau: PlateauState | null = null;
  if (checkedSchedule.type === 'reduceOnPlateau') {
    checkedPlateau = checkPlateauState(`${name}.plateau`, plateau, checkedSchedule, where);
  } else if (plateau !== undefined) {
    throw typeError(
      field('plateau'),
      'undefined (only a reduceOnPlateau schedule has one)',
      plateau,
    );
  }
  return Object.freeze({
    schedule: checkedSchedule,
    position: checkedPosition,
    baseLrs: Object.freeze(checkedBaseLrs),
    plateau: checkedPlateau,
  });
}

function checkPlateauState(
  name: string,
  value: unknown,
  schedule: ReduceOnPlateauSchedule,
  where: string,
): PlateauState {
  const o = checkObject(name + where, value);
  checkKnownKeys(name, o, ['factor', 'best', 'numBadEpochs', 'cooldownCounter'], where);
  const field = (key: string) => `${name}.${key}${where}`;
  const factor = checkUnitInterval(field('factor'), o.factor);
  const bestValue = o.best;
  let best: number;
  if (bestValue === null) {
    best = schedule.mode === 'min' ? Infinity : -Infinity;
  } else {
    best = checkNumber(field('best'), bestValue);
    if (!Number.isFinite(best)) {
      throw rangeError(field('best'), 'a finite number, or null before the first metric', best);
    }
  }
  const numBadEpochs = checkInteger(field('numBadEpochs'), o.numBadEpochs, 0);
  const cooldownCounter = checkInteger(field('cooldownCounter'), o.cooldownCounter, 0);
  return Object.freeze({ factor, best, numBadEpochs, cooldownCounter });
}

/**
 * The schedule state to load: the saved one, with a lambda schedule's function taken from the
 * lambda schedule attached to the optimizer (`current`), which must exist. `name` names the saved
 * state in the message.
 */
export function scheduleToLoad(
  name: string,
  saved: SavedScheduleState | null,
  current: ScheduleState | null,
): ScheduleState | null {
  if (saved === null) return null;
  const { schedule } = saved;
  if (schedule.type !== 'lambda') return Object.freeze({ ...saved, schedule });
  if (current?.schedule.type !== 'lambda') {
    const attached = current === null ? 'none' : `'${current.schedule.type}'`;
    throw new RangeError(
      `Expected a lambdaSchedule attached to this optimizer for ${name} (a checkpoint holds a ` +
        "lambda schedule's position, not its function: create the optimizer with the same " +
        '{ schedule: lambdaSchedule(fn) }, then call loadFrom or loadStateDict; the static load ' +
        `cannot) but received an optimizer whose schedule is ${attached}`,
    );
  }
  return Object.freeze({ ...saved, schedule: current.schedule });
}
