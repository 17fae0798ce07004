// getConfig refuses what a config cannot hold, instead of writing a config that fromConfig (and so
// tf.loadLayersModel) would fail on: a lambda schedule's function, a noDecay function before the
// first step.
import '@tensorflow/tfjs-backend-cpu';

import { lambdaSchedule } from '../lib';
import { SimdAdamW } from '../lib/tfjs';

test('a lambdaSchedule cannot be saved in a config', () => {
  const optimizer = new SimdAdamW({ lr: 1e-3, schedule: lambdaSchedule((step) => 1 / (step + 1)) });
  expect(() => optimizer.getConfig()).toThrow(
    'SimdAdamW.getConfig(): a lambdaSchedule cannot be saved in a config',
  );
  optimizer.dispose();
});

test('a noDecay function cannot be saved before the first step', () => {
  const optimizer = new SimdAdamW({ noDecay: (name) => name.endsWith('bias') });
  expect(() => optimizer.getConfig()).toThrow(
    'SimdAdamW.getConfig(): a noDecay function cannot be saved before the first step',
  );
  optimizer.dispose();
});

test('the other schedules round-trip through getConfig and fromConfig', () => {
  const optimizer = new SimdAdamW({
    lr: 2e-3,
    schedule: { type: 'stepDecay', stepSize: 3, gamma: 0.5 },
  });
  const config = optimizer.getConfig();
  expect(config.schedule).toEqual({ type: 'stepDecay', stepSize: 3, gamma: 0.5 });
  const again = SimdAdamW.fromConfig<SimdAdamW>(SimdAdamW, config);
  expect(again.getConfig()).toEqual(config);
  optimizer.dispose();
  again.dispose();
});
