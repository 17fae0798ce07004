// Float64 reference Adam/AdamW step in plain TypeScript, for tests only: the formula of PyTorch
// 1.13 `_single_tensor_adamw` / `_single_tensor_adam` (foreach=False) as written in
// shared/golden/README.md, evaluated in double on Float64Array state (round to float32 to compare).
import type { GoldenCase } from './golden';

// Math is read once here: a global lookup inside a hot loop is ~8x slower in jest's vm
// sandbox (measured on the 65537-element case).
const { max, sqrt } = Math;

/** Hyperparameters; `decoupled` = AdamW decay (p *= 1 - lr*wd), otherwise Adam L2 (g += wd*p). */
export interface RefHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  decoupled: boolean;
}

/** The hyperparameters of a golden case (`adamw` = decoupled decay). */
export function refHyperFromGolden(c: GoldenCase): RefHyper {
  const h = c.hyperparameters;
  return {
    lr: h.lr,
    beta1: h.beta1,
    beta2: h.beta2,
    eps: h.eps,
    weightDecay: h.weight_decay,
    amsgrad: h.amsgrad,
    maximize: h.maximize,
    decoupled: c.optimizer === 'adamw',
  };
}

/** One parameter tensor under Adam/AdamW, all state in float64; state starts at m = v = vmax = 0. */
export class ReferenceAdam {
  /** A copy of the constructor's hyperparameters. */
  readonly hyper: RefHyper;
  readonly params: Float64Array;
  /** m */
  readonly expAvg: Float64Array;
  /** v */
  readonly expAvgSq: Float64Array;
  /** Running max of the raw v (amsgrad only; stays 0 otherwise). */
  readonly maxExpAvgSq: Float64Array;
  /** Number of steps taken; the bias corrections of step k use t = k (1 at the first step). */
  stepCount = 0;

  constructor(params0: ArrayLike<number>, h: RefHyper) {
    this.hyper = { ...h };
    this.params = Float64Array.from(params0);
    this.expAvg = new Float64Array(this.params.length);
    this.expAvgSq = new Float64Array(this.params.length);
    this.maxExpAvgSq = new Float64Array(this.params.length);
  }

  /** One optimizer step with gradient `grad` and this step's `lr` (default: the constructor's). */
  step(grad: ArrayLike<number>, lr: number = this.hyper.lr): void {
    const { beta1, beta2, eps, weightDecay, amsgrad, maximize, decoupled } = this.hyper;
    const n = this.params.length;
    if (grad.length !== n) throw new Error(`grad has ${grad.length} elements, expected ${n}`);
    this.stepCount += 1;
    const t = this.stepCount;
    const biasCorrection1 = 1 - beta1 ** t;
    const biasCorrection2Sqrt = sqrt(1 - beta2 ** t);
    const stepSize = lr / biasCorrection1;
    const decayFactor = 1 - lr * weightDecay;
    for (let i = 0; i < n; i++) {
      let g = maximize ? -grad[i] : grad[i];
      let p = this.params[i];
      if (decoupled) p *= decayFactor;
      else if (weightDecay !== 0) g += weightDecay * p;
      const m = beta1 * this.expAvg[i] + (1 - beta1) * g;
      const v = beta2 * this.expAvgSq[i] + (1 - beta2) * g * g;
      let s = v;
      if (amsgrad) {
        s = max(this.maxExpAvgSq[i], v); // propagates NaN, like torch.maximum
        this.maxExpAvgSq[i] = s;
      }
      const denom = sqrt(s) / biasCorrection2Sqrt + eps;
      this.expAvg[i] = m;
      this.expAvgSq[i] = v;
      this.params[i] = p - stepSize * (m / denom); // torch: p.addcdiv_(m, denom, value=-lr/bc1)
    }
  }
}
