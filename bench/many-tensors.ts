// Question: what do many small tensors cost against one large one?
//
// Models have hundreds of bias and norm vectors. 1,024 tensors of 1,024 elements and one tensor of
// 1M (2^20) elements hold the same parameters and move the same bytes; both are stepped through
// AdamW.step() on one thread, interleaved, so the ratio is what the per-tensor work of a step costs
// (issue 10's target: >= 0.8x).
import type { IsaName } from '../lib/index';
import { classApiContender, type TensorShape } from './model-step';
import type { Contender } from './measure';

export const MANY_TENSORS = 1024;
export const MANY_TENSOR_LENGTH = 1024;
export const MANY_TENSORS_TOTAL = MANY_TENSORS * MANY_TENSOR_LENGTH;

export function manyTensorContenders(isa: IsaName): Contender[] {
  const many: TensorShape[] = Array.from({ length: MANY_TENSORS }, (_, k) => ({
    name: `tensor${k}`,
    length: MANY_TENSOR_LENGTH,
  }));
  const one: TensorShape[] = [{ name: 'all', length: MANY_TENSORS_TOTAL }];
  return [
    classApiContender(
      'many-tensors/many',
      `AdamW.step(), ${MANY_TENSORS} tensors of ${MANY_TENSOR_LENGTH}`,
      many,
      isa,
      1,
    ),
    classApiContender('many-tensors/one', 'AdamW.step(), 1 tensor of 1M', one, isa, 1),
  ];
}
