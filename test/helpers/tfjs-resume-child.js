// The second leg of test/tfjs-model.test.ts's fresh-process resume, as its own Node process against
// the built package (dist/lib/tfjs): loads a model saved (with its optimizer) by the test, trains it
// on the given batches and prints its weights as base64, one JSON line.
//
//   node tfjs-resume-child.js input.json
//
// input.json: { backend, artifacts (model.save's, weightData as base64), batches: [{ xs, ys }],
// xsShape / ysShape of one batch }.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
require('@tensorflow/tfjs-backend-wasm');
const tfl = require('@tensorflow/tfjs-layers');
// Registers SimdAdamW and the others with tf.serialization, so tf.loadLayersModel finds them.
require(path.join(__dirname, '..', '..', 'dist', 'lib', 'tfjs', 'index.js'));

async function main() {
  const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  if (!(await tf.setBackend(input.backend))) throw new Error(`no ${input.backend} backend`);
  await tf.ready();
  const weightData = new Uint8Array(Buffer.from(input.artifacts.weightData, 'base64')).buffer;
  const model = await tfl.loadLayersModel(tf.io.fromMemory({ ...input.artifacts, weightData }));
  for (const batch of input.batches) {
    const x = tf.tensor2d(batch.xs, input.xsShape);
    const y = tf.tensor2d(batch.ys, input.ysShape);
    await model.trainOnBatch(x, y);
    tf.dispose([x, y]);
  }
  const weights = model.getWeights().map((w) => {
    const values = w.dataSync();
    return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
  });
  console.log(
    JSON.stringify({
      className: model.optimizer.getClassName(),
      iterations: model.optimizer.iterations,
      updatePath: model.optimizer.updatePath,
      weights,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
