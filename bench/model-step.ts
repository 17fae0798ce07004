// Question: does a real model's many small tensors cost throughput?
//
// A model is not one big tensor: a small GPT-style transformer has a few large matrices and many
// bias and norm vectors. AdamW.step() updates all of them in one native call; this compares it with
// one tensor of the same total size, both through the class API, interleaved.
import { AdamW, backend, type IsaName, type Param } from '../lib/index';
import { fillUniform, SEED } from './data';
import type { Contender } from './measure';

export interface TensorShape {
  readonly name: string;
  readonly length: number;
  /** The tensor's dimensions as PyTorch has them (Linear weights [out, in]), product = length;
   * absent: [length]. Adafactor and CAME factor the 2-D ones (bench/lean-optimizers.ts). */
  readonly dims?: readonly number[];
}

/**
 * The parameters of a small decoder-only transformer: vocabulary 4096, context 512, width 512,
 * 8 layers with separate q/k/v/o projections and a 4x MLP, LayerNorms with bias. 132 tensors,
 * 27,579,392 parameters (26.3M in the report's units of 2^20), of which 100 tensors have at most
 * 2048 elements.
 */
export function smallTransformerShapes(): TensorShape[] {
  const vocabulary = 4096;
  const context = 512;
  const width = 512;
  const layers = 8;
  const hidden = 4 * width;
  const tensor = (name: string, ...dims: number[]): TensorShape => ({
    name,
    length: dims.reduce((product, d) => product * d, 1),
    dims,
  });
  const shapes: TensorShape[] = [
    tensor('tokenEmbedding', vocabulary, width),
    tensor('positionEmbedding', context, width),
  ];
  for (let layer = 0; layer < layers; layer++) {
    const block = (name: string, ...dims: number[]): void => {
      shapes.push(tensor(`layer${layer}.${name}`, ...dims));
    };
    block('norm1.weight', width);
    block('norm1.bias', width);
    for (const projection of ['q', 'k', 'v', 'o']) {
      block(`attention.${projection}.weight`, width, width);
      block(`attention.${projection}.bias`, width);
    }
    block('norm2.weight', width);
    block('norm2.bias', width);
    block('mlp.up.weight', hidden, width);
    block('mlp.up.bias', hidden);
    block('mlp.down.weight', width, hidden);
    block('mlp.down.bias', width);
  }
  shapes.push(tensor('finalNorm.weight', width), tensor('finalNorm.bias', width));
  return shapes;
}

export function totalLength(shapes: readonly TensorShape[]): number {
  return shapes.reduce((sum, shape) => sum + shape.length, 0);
}

function makeParams(shapes: readonly TensorShape[]): Param[] {
  return shapes.map((shape, index) => {
    const data = new Float32Array(shape.length);
    const grad = new Float32Array(shape.length);
    fillUniform(data, SEED + 2 * index, -0.1, 0.1);
    fillUniform(grad, SEED + 2 * index + 1, -1e-2, 1e-2);
    return { name: shape.name, data, grad };
  });
}

/** One AdamW.step() over fresh tensors of `shapes` (filled from the seed), one call per step. */
export function classApiContender(
  id: string,
  label: string,
  shapes: readonly TensorShape[],
  isa: IsaName,
  threads: number,
): Contender {
  return {
    id: `${id}/t${threads}`,
    label,
    family: 'simd-adamw',
    threads,
    isa,
    setup() {
      const optimizer = new AdamW(makeParams(shapes), {
        lr: 1e-3,
        weightDecay: 0.01,
        threads,
      });
      return {
        run(reps: number) {
          backend.setIsa(isa);
          for (let r = 0; r < reps; r++) optimizer.step();
        },
      };
    },
  };
}

/** The model-shaped step and one tensor of the same total size, per thread count. */
export function modelStepContenders(
  shapes: readonly TensorShape[],
  isa: IsaName,
  threadCounts: readonly number[],
): Contender[] {
  const single: TensorShape[] = [{ name: 'all', length: totalLength(shapes) }];
  return threadCounts.flatMap((threads) => [
    classApiContender(
      'model-step/model',
      `AdamW.step(), ${shapes.length} tensors`,
      shapes,
      isa,
      threads,
    ),
    classApiContender('model-step/one-tensor', 'AdamW.step(), 1 tensor', single, isa, threads),
  ]);
}
