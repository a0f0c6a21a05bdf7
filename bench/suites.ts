import type { Benchmark } from './lib.js';
import { formatBenchmarks } from './format-suite.js';
import { replicaBenchmarks } from './replica-suite.js';
import { primaryBenchmarks } from './primary-suite.js';
import { streamingBenchmarks } from './streaming-suite.js';
import { bootstrapBenchmarks } from './bootstrap-suite.js';
import { operationsBenchmarks } from './operations-suite.js';
import { blobBenchmarks } from './blob-suite.js';
import { lagBenchmarks } from './lag-suite.js';

/** Every suite `npm run bench` runs, in order. Add new suites here. */
export const SUITES: readonly Benchmark[] = [formatBenchmarks, replicaBenchmarks, primaryBenchmarks, streamingBenchmarks, bootstrapBenchmarks, operationsBenchmarks, blobBenchmarks, lagBenchmarks];
