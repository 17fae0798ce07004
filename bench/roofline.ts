// Question: how fast can any AdamW step be on this machine, at this size and thread count?
//
// The bench addon's probes (native/bench/roofline-probes.cc) move exactly the step's bytes (read
// param, grad, expAvg, expAvgSq; write param, expAvg, expAvgSq) with trivial arithmetic, in eight
// loops: the kernel's access pattern and the plain `p += g; m += g; v += g*g` (unrolled), each in
// the widest vectors and in 256-bit ones (as the AVX2 kernel), with and without software prefetch. Which is fastest depends on the size and on
// what else the machine's memory is serving, so all are measured, interleaved with the step, and
// the fastest median is the roofline (results.ts); the report names the winner per size. A probe
// runs the repetitions of a sample inside one native call, so it carries no per-call JavaScript
// cost: it is the physical limit, and a step above it beyond noise means a probe is missing.
import { benchNative, type RooflineProbe } from './bench-native';
import type { ThroughputArrays } from './data';
import type { Contender } from './measure';

const LABELS: Record<RooflineProbe, string> = {
  'adamw-pattern': 'probe: AdamW pattern',
  'adamw-pattern-prefetch': 'probe: AdamW pattern + prefetch',
  'adamw-pattern-256': 'probe: AdamW pattern, 256-bit',
  'adamw-pattern-256-prefetch': 'probe: AdamW pattern, 256-bit + prefetch',
  add: 'probe: p += g, m += g, v += g*g',
  'add-prefetch': 'probe: p += g, m += g, v += g*g + prefetch',
  'add-256': 'probe: p += g, m += g, v += g*g, 256-bit',
  'add-256-prefetch': 'probe: p += g, m += g, v += g*g, 256-bit + prefetch',
  'adamw-pattern-256-prefetch-far': 'probe: AdamW pattern, 256-bit + prefetch 8 KiB ahead',
  'add-prefetch-far': 'probe: p += g, m += g, v += g*g + prefetch 8 KiB ahead',
  'add-256-prefetch-far': 'probe: p += g, m += g, v += g*g, 256-bit + prefetch 8 KiB ahead',
};

export function probeContenders(
  arrays: ThroughputArrays,
  threadCounts: readonly number[],
): Contender[] {
  return threadCounts.flatMap((threads) =>
    benchNative.rooflineProbes.map((probe): Contender => ({
      id: `probe/${probe}/t${threads}`,
      label: LABELS[probe],
      family: 'probe',
      threads,
      setup(size: number) {
        const { param, grad, expAvg, expAvgSq } = arrays.at(size);
        return {
          run(reps: number) {
            benchNative.benchRooflineProbe(param, grad, expAvg, expAvgSq, reps, threads, probe);
          },
        };
      },
    })),
  );
}
