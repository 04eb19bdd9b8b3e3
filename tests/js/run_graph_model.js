// Run a TF.js graph model (a jaxyolo `*_web_model/` export) in Node with pure-JS @tensorflow/tfjs.
//
//   node run_graph_model.js <web_model_dir> <input.f32> <n,h,w,c> <output.f32>
//
// Pure @tensorflow/tfjs has no file:// loader in Node (that is @tensorflow/tfjs-node, a native add-on), so the model is
// loaded through an IOHandler whose load() reads model.json and the weight shards with fs. The input is raw
// little-endian float32 NHWC; the model has a static batch of 1, so images are run one at a time and the outputs are
// concatenated. Prints {"outputShape": [...], "metadata": {...}} to stdout.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function fsHandler(dir) {
  return {
    load: async () => {
      const mj = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      const weightSpecs = [];
      const buffers = [];
      for (const group of mj.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: mj.modelTopology,
        format: mj.format,
        generatedBy: mj.generatedBy,
        convertedBy: mj.convertedBy,
        signature: mj.signature,
        userDefinedMetadata: mj.userDefinedMetadata,
        weightSpecs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}

async function main() {
  const [dir, inFile, shapeArg, outFile] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await tf.loadGraphModel(fsHandler(dir));
  const shape = shapeArg.split(',').map(Number);
  const raw = fs.readFileSync(inFile);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const outs = [];
  let outShape = null;
  for (let i = 0; i < shape[0]; i++) {
    const x = tf.tensor(data.subarray(i * per, (i + 1) * per), [1, ...shape.slice(1)], 'float32');
    const y = model.predict(x);
    outShape = y.shape;
    outs.push(await y.data());
    x.dispose();
    y.dispose();
  }
  const total = outs.reduce((a, o) => a + o.length, 0);
  const flat = new Float32Array(total);
  let off = 0;
  for (const o of outs) { flat.set(o, off); off += o.length; }
  fs.writeFileSync(outFile, Buffer.from(flat.buffer));
  console.log(JSON.stringify({outputShape: [shape[0], ...outShape.slice(1)], metadata: model.metadata}));
}

main().catch((e) => { console.error(e); process.exit(1); });
