// A description of the machine and build that produced the numbers, for the report: numbers
// without the machine mean little.
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';

import { backend } from '../lib/index';
import type { MachineInfo } from './results';

// The flags that matter to this kernel, in the order shown.
const FLAGS_OF_INTEREST = [
  'sse2',
  'avx',
  'avx2',
  'fma',
  'avx512f',
  'avx512dq',
  'avx512bw',
  'avx512vl',
  'avx512_fp16',
];

// CPU families and models to microarchitecture names, for the machine's name in the report (lscpu
// of a KVM guest often says only "AMD EPYC"). Anything else is named by its model string alone.
function microarchitecture(vendor: string, family: number, model: number): string | undefined {
  if (vendor === 'AuthenticAMD') {
    if (family === 26) return 'Zen 5';
    if (family === 25) return model < 0x10 || (model >= 0x20 && model < 0x60) ? 'Zen 3' : 'Zen 4';
    if (family === 23) return model >= 0x30 ? 'Zen 2' : 'Zen';
    return undefined;
  }
  if (vendor === 'GenuineIntel' && family === 6) {
    const intel: Record<number, string> = {
      85: 'Skylake/Cascade Lake',
      106: 'Ice Lake',
      143: 'Sapphire Rapids',
      173: 'Granite Rapids',
      207: 'Emerald Rapids',
    };
    return intel[model];
  }
  return undefined;
}

/** "2-core AMD EPYC (Zen 5) KVM guest, AVX-512": who measured, in one phrase. */
export function machineName(
  lscpu: ReadonlyMap<string, string>,
  cpuModel: string,
  logicalCpus: number,
): string {
  const arch = microarchitecture(
    lscpu.get('Vendor ID') ?? '',
    Number(lscpu.get('CPU family')),
    Number(lscpu.get('Model')),
  );
  const flags = new Set((lscpu.get('Flags') ?? '').split(/\s+/));
  const widest = flags.has('avx512f')
    ? 'AVX-512'
    : flags.has('avx2')
      ? 'AVX2'
      : flags.has('asimd')
        ? 'NEON'
        : undefined;
  const guest = lscpu.get('Hypervisor vendor');
  return [
    `${logicalCpus}-CPU ${cpuModel}${arch === undefined || cpuModel.includes(arch) ? '' : ` (${arch})`}`,
    guest === undefined ? '' : ` ${guest} guest`,
    widest === undefined ? '' : `, ${widest}`,
  ].join('');
}

function run(command: string, args: readonly string[]): string | undefined {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      cwd: path.resolve(__dirname, '..', '..'),
    }).trim();
  } catch {
    return undefined;
  }
}

function lscpuFields(): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of (run('lscpu', []) ?? '').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return fields;
}

export function describeMachine(): MachineInfo {
  const lscpu = lscpuFields();
  const flags = new Set((lscpu.get('Flags') ?? '').split(/\s+/));
  const cpuFlags = FLAGS_OF_INTEREST.filter((flag) => flags.has(flag)).join(' ');
  const caches = ['L1d', 'L2', 'L3']
    .map((level) => {
      const value = lscpu.get(`${level} cache`);
      return value === undefined ? undefined : `${level} ${value}`;
    })
    .filter((value) => value !== undefined)
    .join(', ');
  const familyModel = ['CPU family', 'Model', 'Stepping']
    .map((key) => `${key.replace('CPU ', '').toLowerCase()} ${lscpu.get(key) ?? '?'}`)
    .join(', ');
  const hypervisor = lscpu.get('Hypervisor vendor');
  const commit = run('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = (run('git', ['status', '--porcelain', '--untracked-files=no']) ?? '') !== '';
  const cpuModel = lscpu.get('Model name') ?? os.cpus().at(0)?.model ?? 'unknown';
  return {
    name: machineName(lscpu, cpuModel, os.availableParallelism()),
    cpuModel,
    cpuFamilyModel: hypervisor === undefined ? familyModel : `${familyModel}, ${hypervisor} guest`,
    cpuFlags: cpuFlags === '' ? 'unknown' : cpuFlags,
    caches: caches === '' ? 'unknown' : caches,
    logicalCpus: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: `${process.version} (V8 ${process.versions.v8})`,
    compiler: run('c++', ['--version'])?.split('\n')[0] ?? 'unknown',
    kernels: backend.available,
    gitCommit:
      commit === undefined ? 'unknown' : `${commit}${dirty ? ' (with local changes)' : ''}`,
  };
}

export function loadAverage(): number {
  return os.loadavg()[0] ?? 0;
}
