// PyTorch agreement: every golden case (torch.optim.AdamW/Adam, test/fixtures/golden) within the
// tolerance of its README, for the class API and for adamwStep, on every kernel this CPU can run.
import { Adam, AdamW, adamwStep, backend, type Param } from '../lib';
import {
  type GoldenCase,
  type GoldenStepFn,
  loadGoldenManifest,
  runGoldenCase,
} from './helpers/golden';
import { f32 } from './helpers/float32-state';

const manifest = loadGoldenManifest();

// adamwStep on the test's own arrays.
function functionalStep(c: GoldenCase): GoldenStepFn {
  const h = c.hyperparameters;
  return (state, grad, t, lr) => {
    adamwStep(state.params, grad, state.exp_avg, state.exp_avg_sq, {
      step: t,
      lr,
      beta1: h.beta1,
      beta2: h.beta2,
      eps: h.eps,
      weightDecay: h.weight_decay,
      maximize: h.maximize,
      decoupled: c.optimizer === 'adamw',
      ...(h.amsgrad ? { maxExpAvgSq: state.max_exp_avg_sq } : {}),
    });
  };
}

// The class API: one optimizer for the whole run; the lr goes through paramGroups[0].lr and the
// gradient of each step is a new view (the optimizer must accept a replaced grad array).
function classStep(c: GoldenCase): GoldenStepFn {
  const h = c.hyperparameters;
  let optimizer: AdamW | Adam | undefined;
  let param: Param | undefined;
  return (state, grad, t, lr) => {
    if (optimizer === undefined || param === undefined) {
      param = { data: state.params, grad };
      const Optimizer = c.optimizer === 'adamw' ? AdamW : Adam;
      optimizer = new Optimizer([param], {
        lr,
        betas: [h.beta1, h.beta2],
        eps: h.eps,
        weightDecay: h.weight_decay,
        amsgrad: h.amsgrad,
        maximize: h.maximize,
      });
    }
    param.grad = grad;
    optimizer.paramGroups[0]!.lr = lr;
    optimizer.step();
    const s = f32(optimizer.state(param));
    expect(s.step).toBe(t);
    state.exp_avg.set(s.expAvg);
    state.exp_avg_sq.set(s.expAvgSq);
    if (s.maxExpAvgSq !== undefined) state.max_exp_avg_sq.set(s.maxExpAvgSq);
  };
}

describe.each(backend.available.map((isa) => [isa]))('golden vectors on %s', (isa) => {
  beforeAll(() => backend.setIsa(isa));
  afterAll(() => backend.setIsa(backend.available[0]!));

  test.each(manifest.cases.map((c) => [c.name, c]))('%s: adamwStep', (_name, c) => {
    const { worst, where } = runGoldenCase(c, functionalStep(c));
    expect({ worst: worst <= 1 ? 'within tolerance' : worst, where }).toEqual({
      worst: 'within tolerance',
      where,
    });
  });

  test.each(manifest.cases.map((c) => [c.name, c]))('%s: class API', (_name, c) => {
    const { worst, where } = runGoldenCase(c, classStep(c));
    expect({ worst: worst <= 1 ? 'within tolerance' : worst, where }).toEqual({
      worst: 'within tolerance',
      where,
    });
  });
});
